"""The protocol-log writer: sessions hand records to ``record`` (never blocks); a task writes them in batches.

Invariants: a session never waits for the disk, and mail is never refused because of the log. The buffer
is bounded: when it is full, or the disk is full or the folder cannot be written, lines are dropped and
counted, and one ErrorEvent says so (another only after writing worked again). File handling runs in a
worker thread, one batch at a time; the rules (names, rollover, formats) are in naming.py / formats.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from engine.events import ErrorEvent, EventBus
from engine.log.formats import Stamp, format_line, w3c_fields_directive, w3c_header
from engine.log.naming import file_name, is_numbered, latest_number, needs_new_number, numbered_name
from engine.log.record import ProtocolRecord
from engine.log.settings import LogSettings

log = logging.getLogger(__name__)

CAPACITY = 50_000  # records waiting for the writer before new ones are dropped
COALESCE = 0.05  # seconds the writer lets records gather before a batch (fewer thread hops under load)


class LogFiles:
    """The open log file and its rollover; used from one worker thread at a time."""

    def __init__(self, software: str) -> None:
        self.software = software
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0
        self._fields: tuple[str, ...] = ()
        self._number: int | None = None
        self._series: tuple[Path, str] | None = None  # (folder, format) the number belongs to
        self._settings: LogSettings | None = None  # what the open file was chosen for, and in which second
        self._second = -1

    @property
    def path(self) -> Path | None:
        return self._path

    def write(self, settings: LogSettings, batch: list[tuple[float, ProtocolRecord]]) -> None:
        """Append the batch, opening and rolling files as the settings and the record times say."""
        try:
            for at, record in batch:
                stamp = Stamp(at, settings.computer, settings.local_time)
                # A command with invalid UTF-8 (kept as surrogates) is logged escaped, never a crash.
                data = (format_line(settings.fmt, record, stamp, settings.fields) + "\n").encode(
                    "utf-8", "backslashreplace")
                file = self._file_for(settings, at, len(data))
                file.write(data)
                self._size += len(data)
            if self._file is not None:
                self._file.flush()
        except OSError:
            self.close()  # start again from a clean file at the next batch
            raise

    def _file_for(self, settings: LogSettings, at: float, adding: int) -> BinaryIO:
        second = int(at)
        if (self._file is not None and settings is self._settings and second == self._second
                and not needs_new_number(settings.period, self._size, adding, settings.max_bytes)):
            return self._file  # the usual case: same batch, same second, room left (no path work per line)
        self._settings, self._second = settings, second
        if is_numbered(settings.period):
            series = (settings.directory, settings.fmt)
            if self._number is None or self._series != series:
                names = os.listdir(settings.directory) if settings.directory.is_dir() else []
                self._number, self._series = latest_number(settings.fmt, names), series
            path = settings.directory / numbered_name(settings.fmt, self._number)
            if path == self._path and needs_new_number(settings.period, self._size, adding, settings.max_bytes):
                self._number += 1
                path = settings.directory / numbered_name(settings.fmt, self._number)
        else:
            path = settings.directory / file_name(settings.fmt, settings.period, at, settings.local_time)
        if path != self._path or self._file is None:
            self._open(path, settings, at)
        elif settings.fmt == "w3c" and settings.fields != self._fields:
            self._directive(w3c_fields_directive(settings.fields))
            self._fields = settings.fields
        assert self._file is not None
        return self._file

    def _open(self, path: Path, settings: LogSettings, at: float) -> None:
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - kept open across batches, closed by close()
        self._path = path
        self._size = self._file.tell()
        if settings.fmt == "w3c":
            for line in w3c_header(self.software, at, settings.fields):
                self._directive(line)
            self._fields = settings.fields
        if settings.period == "size" and self._size > settings.max_bytes:  # reopened a full one
            self.close()
            assert self._number is not None
            self._number += 1
            self._open(settings.directory / numbered_name(settings.fmt, self._number), settings, at)

    def _directive(self, line: str) -> None:
        assert self._file is not None
        data = (line + "\n").encode("utf-8")
        self._file.write(data)
        self._size += len(data)

    def close(self) -> None:
        file, self._file, self._path, self._settings = self._file, None, None, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()


class ProtocolLog:
    """The engine side: ``record`` is the sessions' hook; ``run`` is the writer task."""

    def __init__(self, settings: Callable[[], LogSettings], bus: EventBus, clock: Callable[[], float],
                 software: str, capacity: int = CAPACITY) -> None:
        self._settings = settings
        self._bus = bus
        self._clock = clock
        self._capacity = capacity
        self._files = LogFiles(software)
        self._pending: list[tuple[float, ProtocolRecord]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failing = False
        self.enabled = settings().enabled
        self.dropped = 0  # lines lost: buffer full, disk full, folder not writable
        self.written = 0

    @property
    def path(self) -> Path | None:
        """The file being written now (None before the first line)."""
        return self._files.path

    def record(self, record: ProtocolRecord) -> None:
        if not self.enabled:
            return
        if len(self._pending) >= self._capacity:
            self._drop(1, "the log writer cannot keep up")
            return
        self._pending.append((self._clock(), record))
        self._wake.set()

    def refresh(self) -> None:
        """Take a changed configuration (the next batch uses the new format, folder and fields)."""
        self.enabled = self._settings().enabled

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="protocol-log")

    async def stop(self) -> None:
        """Write what is pending, then close the file."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task  # it ends after its last batch; never cancelled mid-write (one thread at a time)
        await self._flush()
        await asyncio.to_thread(self._files.close)

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(COALESCE)
            await self._flush()

    async def _flush(self) -> None:
        self._wake.clear()
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self._files.write, self._settings(), batch)
        except OSError as error:
            self._drop(len(batch), f"cannot write the protocol log: {error.strerror or error}")
        else:
            self.written += len(batch)
            self._failing = False

    def _drop(self, count: int, reason: str) -> None:
        self.dropped += count
        if not self._failing:
            self._failing = True
            log.error("protocol log: %s; lines are dropped (mail is not affected)", reason)
            self._bus.publish(ErrorEvent("log", f"{reason}; protocol log lines are dropped until it can be "
                                                f"written again (mail is not affected)"))
