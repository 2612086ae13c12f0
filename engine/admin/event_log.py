"""The persistent event log: one JSON line per entry in Mailroot/EventLog/events.jsonl, rotated and bounded.

The engine side subscribes to the bus, maps events with ``event_ids.entry_for`` and writes in a worker
thread (the loop never waits for the disk; a write that fails is logged to stderr and the entries are
lost, mail never is). Each entry also goes to the Python logger ``smtpsvc.events`` with its ID, which
`smtpsvc serve` sends to the journal or stderr. Readers (`smtpsvc events`, the Event Viewer) read the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from engine.admin.event_ids import THROTTLED, EventEntry, Level, at_least, entry_for, throttled
from engine.events import Event, EventBus

log = logging.getLogger("smtpsvc.events")

DIR_NAME = "EventLog"
FILE_NAME = "events.jsonl"
MAX_BYTES = 4 * 1024 * 1024  # a file is rotated past this size
KEEP = 4  # rotated files kept: events.1.jsonl (newest) .. events.4.jsonl; at most ~20 MB in all
_LOG_LEVELS = {"Information": logging.INFO, "Warning": logging.WARNING, "Error": logging.ERROR}


def event_log_dir(mailroot: Path) -> Path:
    return mailroot / DIR_NAME


def _files_oldest_first(directory: Path) -> list[Path]:
    rotated = [directory / f"events.{n}.jsonl" for n in range(KEEP, 0, -1)]
    return [p for p in (*rotated, directory / FILE_NAME) if p.exists()]


def append(directory: Path, entries: list[EventEntry], max_bytes: int = MAX_BYTES) -> None:
    """Append entries, rotating first when the current file is full (worker thread)."""
    directory.mkdir(parents=True, exist_ok=True)
    current = directory / FILE_NAME
    with contextlib.suppress(FileNotFoundError):
        if current.stat().st_size >= max_bytes:
            for n in range(KEEP, 1, -1):
                older = directory / f"events.{n - 1}.jsonl"
                if older.exists():
                    os.replace(older, directory / f"events.{n}.jsonl")
            os.replace(current, directory / "events.1.jsonl")
    data = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in entries)
    with current.open("a", encoding="utf-8") as file:
        file.write(data)


def read_entries(directory: Path, since: float | None = None, level: Level = "Information") -> Iterator[EventEntry]:
    """The entries in time order; a damaged line is skipped (the log must stay readable after a crash)."""
    wanted = at_least(level)
    for path in _files_oldest_first(directory):
        with path.open(encoding="utf-8", errors="replace") as file:
            for line in file:
                try:
                    entry = EventEntry.from_json(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    continue
                if entry.level in wanted and (since is None or entry.at >= since):
                    yield entry


class EventLog:
    """The engine side: ``publish`` is a bus subscriber; entries are written by a task in batches."""

    def __init__(self, directory: Path, bus: EventBus) -> None:
        self.directory = directory
        self._pending: list[EventEntry] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._writing = asyncio.Lock()
        self._last: dict[int, float] = {}  # flooding kinds (event_ids.THROTTLED): when each was last written
        self._suppressed: dict[int, int] = {}  # one batch at a time: the task's and a reader's ``flush``
        self._unsubscribe = bus.subscribe(self.publish)

    def publish(self, event: Event) -> None:
        entry = entry_for(event)
        if entry is None:
            return
        if throttled(entry.event_id, self._last.get(entry.event_id), entry.at):
            self._suppressed[entry.event_id] = self._suppressed.get(entry.event_id, 0) + 1
            return
        if entry.event_id in THROTTLED:
            self._last[entry.event_id] = entry.at
            more = self._suppressed.pop(entry.event_id, 0)
            if more:
                entry = replace(entry, text=f"{entry.text} ({more} more since the last entry)")
        log.log(_LOG_LEVELS[entry.level], "[%d] %s: %s", entry.event_id, entry.source, entry.text)
        self._pending.append(entry)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="event-log")

    async def stop(self) -> None:
        """Write what is pending (the "stopped" entry included) and stop listening."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        await self.flush()
        self._unsubscribe()

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            await self.flush()

    async def flush(self) -> None:
        """Write the pending entries now (a reader wants to see them)."""
        async with self._writing:
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await asyncio.to_thread(append, self.directory, batch)
            except OSError as error:  # the entries went to the logger above; the file misses them
                logging.getLogger(__name__).error("cannot write the event log in %s: %s", self.directory, error)
