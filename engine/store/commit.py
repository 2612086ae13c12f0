"""Durable commit of spooled files: one trip to a commit thread per file, directory fsyncs shared (group commit).

Invariant: ``commit()`` returns only after the file's data, its rename into the final directory,
and that directory's entry are on disk. Concurrent commits into one directory share one
directory fsync (group commit), which is where durable throughput comes from on these disks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.store.mailroot import fsync_dir

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class _DirectorySync:
    """Coalesces fsyncs of one directory (group commit): a caller is released by the first fsync that began
    after it asked. Kept on the loop: waiting costs a future, not a sleeping thread woken with all the others."""

    def __init__(self, path: Path, workers: _Workers) -> None:
        self._path = path
        self._workers = workers
        self._waiting: list[asyncio.Future[None]] = []  # callers the next fsync covers
        self._running = False

    def sync(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        if not self._running:
            self._start()
        return future

    def _start(self) -> None:
        covered, self._waiting = self._waiting, []
        self._running = True
        self._workers.call(fsync_dir, self._path).add_done_callback(
            lambda done: self._finished(done, covered))

    def _finished(self, done: asyncio.Future[Any], covered: list[asyncio.Future[None]]) -> None:
        self._running = False
        error = done.exception()
        for future in covered:
            if future.done():
                continue  # (its caller went away)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(OSError(getattr(error, "errno", None), f"fsync of {self._path} failed: {error}"))
        if self._waiting:
            self._start()


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _commit_file(fd: int | None, source: Path, target: Path, data: bytes | bytearray, sync: bool) -> None:
    """On a commit thread: (create ``source`` when ``fd`` is None,) write ``data``, fsync (when ``sync``), close,
    rename."""
    if fd is None:
        fd = os.open(source, _CREATE, 0o600)
    try:
        if data:
            _write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(source, target)
    except OSError as error:
        raise TargetUnavailable(error.errno, f"cannot move the message into {target.parent}: {error.strerror}") \
            from error


def _create_files(paths: list[Path]) -> list[tuple[Path, int]]:
    """On a commit thread: create and open ``paths`` in turn, up to the first failure (raised if none was made)."""
    made: list[tuple[Path, int]] = []
    for path in paths:
        try:
            made.append((path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)))
        except OSError:
            if not made:
                raise
            break
    return made


class TargetUnavailable(OSError):
    """The spool file is durable but could not be renamed into its target directory (missing, not a directory,
    another filesystem, no permission): the caller may commit it elsewhere."""


class _Workers:
    """The commit threads: a queue of calls, each answered on the loop by resolving its future.

    Leaner than ``run_in_executor`` (no concurrent future, no work item, no chained futures): one queue put
    and one ``call_soon_threadsafe`` per call, which matters at a few thousand calls a second.
    Threads start as calls wait for one, up to ``limit``.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._calls: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[..., Any],
                                             tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._pending = 0  # calls handed over and not yet answered (counted on the loop thread)
        self._closed = False

    def call(self, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        if self._closed:
            raise RuntimeError("the commit threads are closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending += 1
        if self._pending > len(self._threads) and len(self._threads) < self._limit:
            thread = threading.Thread(target=self._work, name=f"smtpsvc-commit_{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._calls.put((loop, future, func, args))
        return future

    def _work(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            loop, future, func, args = item
            result: Any = None
            error: BaseException | None = None
            try:
                result = func(*args)
            except BaseException as failed:  # (handed to the awaiting caller, raised there)
                error = failed
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for the answer any more
                loop.call_soon_threadsafe(self._settle, future, result, error)

    def _settle(self, future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
        self._pending -= 1
        if future.cancelled():
            return  # the caller went away; the work itself was done (or failed) all the same
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def close(self) -> None:
        """Finish the calls already queued, then stop the threads (blocking: call it off the loop)."""
        self._closed = True
        for _ in self._threads:
            self._calls.put(None)
        for thread in self._threads:
            thread.join()


class Committer:
    """Moves finished spool files to their final place durably; safe to call from many sessions at once."""

    # A message held whole in memory takes a spool file made ahead (on the threads) at its commit: creating one
    # in the commit lengthens every message's wait. False where creating it costs the caller nothing.
    spools_at_commit = True

    def __init__(self, threads: int = 16, *, sync: bool = True) -> None:
        self._workers = _Workers(threads)
        self._dirs: dict[Path, _DirectorySync] = {}
        self.sync = sync  # False only for tests of logic that never crash

    async def commit(self, fd: int | None, source: Path, target: Path, data: bytes | bytearray = b"") -> None:
        """Write ``data`` to ``fd`` (the open spool file; None: create ``source`` first, for a message held whole
        in memory), fsync + close it, rename ``source`` to ``target`` (one trip to a commit thread, which keeps disk
        writes, slow next to concurrent fsyncs, off the loop thread), then fsync its directory with others."""
        await self._workers.call(_commit_file, fd, source, target, data, self.sync)
        if self.sync:
            await self._directory(target.parent).sync()

    def _directory(self, path: Path) -> _DirectorySync:
        syncer = self._dirs.get(path)
        if syncer is None:
            syncer = self._dirs[path] = _DirectorySync(path, self._workers)
        return syncer

    async def sync_directory(self, path: Path) -> None:
        """Make the entries of ``path`` durable, sharing the fsync with concurrent callers."""
        await self._directory(path).sync()

    async def create_spools(self, paths: list[Path]) -> list[tuple[Path, int]]:
        """Empty spool files made off the loop and opened for writing: (path, descriptor) for those of ``paths``
        that could be made, in order; raises OSError when none could."""
        made: list[tuple[Path, int]] = await self._workers.call(_create_files, paths)
        return made

    async def run(self, func: object, *args: object) -> object:
        """Run blocking file work on the commit threads."""
        return await self._workers.call(func, *args)  # type: ignore[arg-type]

    def close(self) -> None:
        self._workers.close()
