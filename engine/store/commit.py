"""Durable commit of spooled files, grouped: fsyncs run in parallel off the loop, directory fsyncs are shared.

Invariant: ``commit()`` returns only after the file's data, its rename into the final directory,
and that directory's entry are on disk. Concurrent commits into one directory share one
directory fsync (group commit), which is where durable throughput comes from on these disks.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.store.mailroot import fsync_dir


class _DirectorySync:
    """Coalesces fsyncs of one directory: a waiter is released by the first fsync that began after it asked."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor) -> None:
        self._path = path
        self._executor = executor
        self._requested = 0
        self._completed = 0
        self._changed = asyncio.Condition()
        self._runner: asyncio.Task[None] | None = None

    async def sync(self) -> None:
        self._requested += 1
        ticket = self._requested
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run())
        async with self._changed:
            await self._changed.wait_for(lambda: self._completed >= ticket or self._failed(ticket))
        if self._completed < ticket:
            raise OSError(f"fsync of {self._path} failed")

    def _failed(self, ticket: int) -> bool:
        return self._runner is not None and self._runner.done() and self._completed < ticket

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._completed < self._requested:
                upto = self._requested
                await loop.run_in_executor(self._executor, fsync_dir, self._path)
                self._completed = upto
                async with self._changed:
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._changed.notify_all()


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_close_rename(fd: int, source: Path, target: Path, sync: bool, tail: bytes | bytearray) -> None:
    try:
        if tail:
            _write_all(fd, tail)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(source, target)
    except OSError as error:
        raise TargetUnavailable(error.errno, f"cannot move the message into {target.parent}: {error.strerror}") \
            from error


class TargetUnavailable(OSError):
    """The spool file is durable but could not be renamed into its target directory (missing, not a directory,
    another filesystem, no permission): the caller may commit it elsewhere."""


class Committer:
    """Moves finished spool files to their final place durably; safe to call from many sessions at once."""

    def __init__(self, threads: int = 16, *, sync: bool = True) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="smtpsvc-commit")
        self._dirs: dict[Path, _DirectorySync] = {}
        self.sync = sync  # False only for tests of logic that never crash

    async def commit(self, fd: int, source: Path, target: Path, tail: bytes | bytearray = b"") -> None:
        """Write ``tail``, fsync + close ``fd`` (the open spool file), rename ``source`` to ``target``, fsync its
        directory. Writing the tail here keeps disk writes (slow next to concurrent fsyncs) off the loop thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _sync_close_rename, fd, source, target, self.sync, tail)
        if self.sync:
            await self.sync_directory(target.parent)

    async def sync_directory(self, path: Path) -> None:
        syncer = self._dirs.get(path)
        if syncer is None:
            syncer = self._dirs[path] = _DirectorySync(path, self._executor)
        await syncer.sync()

    async def run(self, func: object, *args: object) -> object:
        """Run blocking file work on the commit threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)  # type: ignore[arg-type]

    def close(self) -> None:
        self._executor.shutdown(wait=True)
