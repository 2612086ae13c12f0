"""The engine's side of the cleanup process: durable commits sent to a child process with its own interpreter lock.

Why a process: committing on threads of the engine's process had them and the event-loop thread hand one GIL
back and forth (a quarter to a third of the process's CPU in futex, bench/RESULTS.md 2026-12-07 17:50); the
child does the file work on the other core and the loop's cost per message is one send and one read.

Failure rules: the child dies → each pending commit whose file is already in place (renamed, so fsynced) is
completed here (its directory fsynced on the threads); every other fails with an OSError (the session answers
451, the client retries); the next commit starts a new child. The engine stops → the child is told by the end
of its input, finishes and answers what it was given, and exits; it exits too when the engine dies. When no
child can be started, commits run on the threads (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import engine
from engine.cleanup.commit_wire import Kind, decode_replies, encode_request
from engine.store.commit import Committer, TargetUnavailable

log = logging.getLogger(__name__)

_ROOT = str(Path(engine.__file__).resolve().parent.parent)
# -I -S: the child needs the standard library and engine/cleanup/commit_*.py only, and starts in a few
# milliseconds of CPU without site-packages.
_BOOT = ("import sys; sys.path.insert(0, sys.argv[2]); "
         "from engine.cleanup.commit_child import main; main(int(sys.argv[1]))")
_READ = 256 * 1024
_GIVE_UP_AFTER = 3  # children in a row that died without answering anything: commit on the threads from then on


class _Pending:
    __slots__ = ("future", "sync", "target")

    def __init__(self, future: asyncio.Future[None], target: Path | None, sync: bool) -> None:
        self.future = future
        self.target = target
        self.sync = sync


class _Child:
    """One cleanup process and its socket, used on the loop thread."""

    def __init__(self, owner: CleanupCommitter, loop: asyncio.AbstractEventLoop) -> None:
        self._owner = owner
        self.loop = loop
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _BOOT, str(child.fileno()), _ROOT],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        self._sock = parent
        self._pending: dict[int, _Pending] = {}
        self._next = 0
        self._out = bytearray()  # requests not sent yet
        self._flushing = False  # a send is due at the end of this turn of the loop
        self._waiting = False  # the socket is full: _writable sends the rest
        self._in = bytearray()
        self.answered = False  # at least one answer came: the child did start
        self._closing = False
        self.dead = False
        loop.add_reader(parent, self._readable)

    def request(self, kind: Kind, source: Path, target: Path | None, data: bytes | bytearray,
                sync: bool) -> asyncio.Future[None]:
        self._next = rid = (self._next + 1) & 0xFFFFFFFF
        future: asyncio.Future[None] = self.loop.create_future()
        self._pending[rid] = _Pending(future, target, sync)
        # Requests made in one turn of the loop go in one send, at its end (fewer syscalls, fewer wake-ups of the
        # child); the bytes are copied once into the buffer, cheap next to a send.
        self._out += encode_request(rid, kind, os.fsencode(source), b"" if target is None else os.fsencode(target),
                                    sync, len(data))
        self._out += data
        if not self._flushing and not self._waiting:
            self._flushing = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Send what the turn's requests left in the buffer; the rest waits for the socket (_writable)."""
        self._flushing = False
        if self._waiting or self.dead:
            return
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return  # the child is gone: its end of file reaches _readable, which fails the pending commits
        del self._out[:sent]
        if self._out:
            self._waiting = True
            self.loop.add_writer(self._sock, self._writable)
        elif self._closing:
            self._end_input()

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = 0
            self._out.clear()  # (as above: the reader sees the end)
        del self._out[:sent]
        if not self._out:
            self._waiting = False
            self.loop.remove_writer(self._sock)
            if self._closing:
                self._end_input()

    def _readable(self) -> None:
        try:
            chunk = self._sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._ended()
            return
        self._in += chunk
        try:
            replies, used = decode_replies(self._in)
        except ValueError as error:
            log.error("the cleanup process answered garbage (%s); stopping it", error)
            self.process.kill()
            return
        del self._in[:used]
        for reply in replies:
            pending = self._pending.pop(reply.rid, None)
            if pending is None or pending.future.done():
                continue  # (its session went away; the file is in place all the same)
            self.answered = True
            if reply.outcome == "durable":
                pending.future.set_result(None)
            elif reply.outcome == "unavailable":
                pending.future.set_exception(TargetUnavailable(reply.errno, reply.message))
            else:
                pending.future.set_exception(OSError(reply.errno or errno.EIO, reply.message))

    def _ended(self) -> None:
        """The child's end of the socket closed: it exited (told to, or killed)."""
        self.dead = True
        self.loop.remove_reader(self._sock)
        if self._waiting:
            self.loop.remove_writer(self._sock)
        self._sock.close()
        pending, self._pending = self._pending, {}
        status = self.process.poll()  # (reaped now, or by the next start)
        if not self._closing or pending:
            log.error("the cleanup process (pid %d) exited%s with %d commit(s) pending; the next commit starts "
                      "another", self.process.pid, "" if status is None else f" with status {status}", len(pending))
        self._owner.child_ended(self)
        for item in pending.values():
            if item.future.done():
                continue
            # In place means renamed after its fsync: only the directory's fsync may be missing.
            if item.sync and item.target is not None and item.target.exists():
                self._owner.finish_orphan(item.future, item.target)
            else:
                item.future.set_exception(OSError(errno.EIO, "the cleanup process exited before the message "
                                                             "was durable"))

    def finish(self) -> None:
        """On the loop: no more requests; the child ends once it has answered the ones it was given."""
        self._closing = True
        if not self._out and not self.dead:
            self._end_input()  # (else _flush or _writable does, after the last request)

    def release(self) -> None:
        """On the loop, once the child has exited: read its last answers and its end now (the loop may stop before
        its reader would have run)."""
        for _ in range(10_000):  # (bounded: an exited child's socket holds its answers, then the end)
            if self.dead:
                return
            self._readable()

    def _end_input(self) -> None:
        with contextlib.suppress(OSError):  # (already gone)
            self._sock.shutdown(socket.SHUT_WR)


class CleanupCommitter(Committer):
    """A Committer whose per-message commits go to the cleanup process; ``run`` and ``sync_directory`` stay on
    the commit threads. Messages held in memory are created by the child, so no spool file is taken for them."""

    spools_at_commit = False

    def __init__(self, threads: int = 16, *, sync: bool = True) -> None:
        super().__init__(threads, sync=sync)
        self._child: _Child | None = None
        self._stopped = False
        # (A frozen build's executable is no Python that could run the child.)
        self._threads_only = sys.platform == "win32" or bool(getattr(sys, "frozen", False))
        self._silent_deaths = 0
        self._orphans: set[asyncio.Task[None]] = set()
        self._exited: list[subprocess.Popen[bytes]] = []  # children whose end was seen before they were reaped

    @property
    def child_pid(self) -> int | None:
        return None if self._child is None else self._child.process.pid

    async def commit(self, fd: int | None, source: Path, target: Path, data: bytes | bytearray = b"") -> None:
        child = None if self._threads_only else (self._child or self._start())
        if child is None:
            await super().commit(fd, source, target, data)
            return
        if fd is not None:
            # A spilled spool: its bytes so far are in the page cache; the child opens it by name and appends.
            os.close(fd)
        await child.request("create" if fd is None else "open", source, target, data, self.sync)

    async def create_spools(self, paths: list[Path]) -> list[tuple[Path, int]]:
        """The child creates the files (an inode allocation costs about half a millisecond of system time on a
        churned disk: not on the engine's threads, whose GIL the loop needs); the loop opens them (no allocation)."""
        child = None if self._threads_only else (self._child or self._start())
        if child is None:
            return await super().create_spools(paths)
        results = await asyncio.gather(*(child.request("prepare", path, None, b"", False) for path in paths),
                                       return_exceptions=True)
        made: list[tuple[Path, int]] = []
        failures: list[OSError] = []
        for path, result in zip(paths, results, strict=True):
            if isinstance(result, OSError):
                failures.append(result)
                continue
            try:
                made.append((path, os.open(path, os.O_RDWR | os.O_CLOEXEC)))
            except OSError as error:
                failures.append(error)
                path.unlink(missing_ok=True)
        if not made and failures:
            raise failures[0]
        return made

    def _start(self) -> _Child | None:
        if self._stopped:
            raise OSError(errno.ESHUTDOWN, "the engine is stopping")
        self._exited = [process for process in self._exited if process.poll() is None]
        try:
            self._child = _Child(self, asyncio.get_running_loop())
        except OSError as error:
            log.warning("the cleanup process cannot start (%s); committing on threads", error)
            self._threads_only = True
            return None
        return self._child

    def child_ended(self, child: _Child) -> None:
        if self._child is child:
            self._child = None
        if child.process.returncode is None:
            self._exited.append(child.process)
        self._silent_deaths = 0 if child.answered else self._silent_deaths + 1
        if self._silent_deaths >= _GIVE_UP_AFTER and not self._threads_only:
            log.warning("the cleanup process died %d times without answering; committing on threads",
                        self._silent_deaths)
            self._threads_only = True

    def finish_orphan(self, future: asyncio.Future[None], target: Path) -> None:
        """A pending commit whose file the dead child had put in place: fsync its directory, then it is durable."""
        task = asyncio.get_running_loop().create_task(self._finish_orphan(future, target))
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    async def _finish_orphan(self, future: asyncio.Future[None], target: Path) -> None:
        try:
            await self.sync_directory(target.parent)
        except OSError as error:
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(None)

    def close(self) -> None:
        """Let the child finish what it was given and wait for it to exit, then stop the threads (blocking: call
        it off the loop)."""
        self._stopped = True
        child = self._child
        if child is not None:
            try:
                child.loop.call_soon_threadsafe(child.finish)
            except RuntimeError:
                child.process.kill()  # the loop is closed: nobody can wait for its answers any more
            try:
                child.process.wait(60)
            except subprocess.TimeoutExpired:
                log.error("the cleanup process (pid %d) did not finish in 60 s; killed", child.process.pid)
                child.process.kill()
                child.process.wait()
            with contextlib.suppress(RuntimeError):  # (as above)
                child.loop.call_soon_threadsafe(child.release)
        super().close()
