"""The cleanup process: makes spools durable in their final directory for the engine, over one Unix socket.

Started by engine/cleanup/commit_process.py with the engine's interpreter (pure stdlib: no site, no engine
dependencies). Per request: create or open the spool, write, fsync, close, rename into place; then the target
directories of every request finished meanwhile get one fsync each (group commit) and their answers go back in
one write. Files are committed on threads (fsyncs in parallel join one journal commit: one at a time, each
waits for its own), which share this process's interpreter lock, not the engine's.
It exits when the engine's end of the socket closes, after finishing and answering what it was given.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
from collections.abc import Callable

from engine.cleanup.commit_wire import Reply, Request, decode_requests, encode_reply

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
_THREADS = 16  # fsyncs in flight at once; more sessions than this wait for a thread
_READ = 256 * 1024

# What a commit thread hands the answering thread: the answer, and the directory to fsync before sending it
# (None: send it as it is).
_Done = tuple[Reply, bytes | None]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def commit_file(request: Request) -> _Done:
    """Create or open the spool, write, fsync, close, rename; the answer (its directory fsync still to come)."""
    if request.kind == "prepare":
        try:
            os.close(os.open(request.source, _CREATE, 0o600))
        except OSError as error:
            return Reply(request.rid, "failed", error.errno or 0, f"cannot create a spool: {error.strerror}"), None
        return Reply(request.rid, "durable", 0, ""), None
    try:
        fd = os.open(request.source, _CREATE if request.kind == "create" else _APPEND, 0o600)
        try:
            if request.data:
                _write_all(fd, request.data)
            if request.sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        return Reply(request.rid, "failed", error.errno or 0, f"cannot write the spool: {error.strerror}"), None
    try:
        os.rename(request.source, request.target)
    except OSError as error:
        return Reply(request.rid, "unavailable", error.errno or 0,
                     f"cannot move the message into {os.fsdecode(os.path.dirname(request.target))}: "
                     f"{error.strerror}"), None
    return Reply(request.rid, "durable", 0, ""), (os.path.dirname(request.target) if request.sync else None)


def fsync_directory(path: bytes) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle(batch: list[_Done], sync: Callable[[bytes], None]) -> list[Reply]:
    """The answers of a batch of finished files: each target directory fsynced once (group commit); a failed
    fsync fails every request that waited for it."""
    failures: dict[bytes, OSError | None] = {}
    answers = []
    for reply, directory in batch:
        if directory is not None:
            if directory not in failures:
                try:
                    sync(directory)
                    failures[directory] = None
                except OSError as failed:
                    failures[directory] = failed
            failure = failures[directory]
            if failure is not None:
                reply = Reply(reply.rid, "failed", failure.errno or 0,
                              f"fsync of {os.fsdecode(directory)} failed: {failure.strerror}")
        answers.append(reply)
    return answers


class _Cleanup:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._work: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Done | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._given = 0  # requests handed to the commit threads (counted by the main thread)
        self._answered = 0  # answers settled (counted by the answering thread; read racily, only to size the pool)
        self._engine_gone = False

    def run(self) -> None:
        answering = threading.Thread(target=self._answer, name="answer")
        answering.start()
        buffer = bytearray()
        try:
            while True:
                chunk = self._sock.recv(_READ)
                if not chunk:
                    break  # the engine closed its end (stopping, or gone): finish what was given
                buffer += chunk
                requests, used = decode_requests(buffer)
                del buffer[:used]
                for request in requests:
                    self._give(request)
        except (OSError, ValueError) as error:
            print(f"smtpsvc cleanup process: {error}; finishing the requests given", file=sys.stderr)
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join()
        self._done.put(None)
        answering.join()

    def _give(self, request: Request) -> None:
        self._given += 1
        if self._given - self._answered > len(self._threads) and len(self._threads) < _THREADS:
            thread = threading.Thread(target=self._commit, name=f"commit_{len(self._threads)}")
            self._threads.append(thread)
            thread.start()
        self._work.put(request)

    def _commit(self) -> None:
        while (request := self._work.get()) is not None:
            self._done.put(commit_file(request))

    def _answer(self) -> None:
        """Waits for finished files, takes every one finished meanwhile, fsyncs their directories, answers."""
        while True:
            first = self._done.get()
            if first is None:
                return
            batch = [first]
            while True:
                try:
                    more = self._done.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._done.put(None)  # (seen again by the outer get once this batch is answered)
                    break
                batch.append(more)
            answers = settle(batch, fsync_directory)
            self._answered += len(answers)
            if self._engine_gone:
                continue
            try:
                self._sock.sendall(b"".join(encode_reply(*answer) for answer in answers))
            except OSError:
                self._engine_gone = True  # the files are in place all the same; the engine's restart finds them


def main(fd: int) -> None:
    # Ctrl+C in a terminal or a TERM to the process group is for the engine: this process finishes what it was
    # given and exits when the engine closes the socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=fd) as sock:
        _Cleanup(sock).run()


if __name__ == "__main__":
    main(int(sys.argv[1]))
