"""Badmail limits (badmail_max_size_mb, badmail_max_age_days): which items go, oldest first, and the pruner.

IIS lets Badmail grow until an administrator empties it; both limits are off (0) by default. An item is the
.BAD/.BDR/.BDP triple of one name; its age is when it was badmailed (the newest of its files: the .BAD
keeps the Pickup file's own time). Removal takes the .BDP and .BDR first and the .BAD last, so that a crash
in between leaves a .BAD that is still listed (reason unknown) and removed at the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.conf.config import Config
from engine.counters import Counters
from engine.events import BadmailPruned, ErrorEvent, EventBus

log = logging.getLogger(__name__)

SUFFIXES = (".BDP", ".BDR", ".BAD")  # the order of removal
PRUNE_INTERVAL = 3600.0  # the age limit is looked at hourly, and after every new item and settings change


@dataclass(frozen=True)
class Item:
    name: str
    at: float  # when it was badmailed
    size: int  # bytes of all its files


def to_remove(items: Sequence[Item], max_bytes: int, max_age: float, now: float) -> list[Item]:
    """The items to remove, oldest first: every one older than ``max_age`` seconds, then the oldest ones
    until the rest fit in ``max_bytes``. A limit of 0 is off."""
    ordered = sorted(items, key=lambda item: (item.at, item.name))
    chosen = [item for item in ordered if max_age and now - item.at > max_age]
    if max_bytes:
        total = sum(item.size for item in ordered) - sum(item.size for item in chosen)
        for item in ordered:
            if total <= max_bytes:
                break
            if item not in chosen:
                chosen.append(item)
                total -= item.size
    return chosen


def scan(folder: Path) -> list[Item]:
    """The items in a Badmail folder (files vanishing meanwhile are skipped)."""
    found: dict[str, tuple[float, int]] = {}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        stem, dot, suffix = entry.name.rpartition(".")
        if not dot or f".{suffix}" not in SUFFIXES:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        at, size = found.get(stem, (0.0, 0))
        found[stem] = (max(at, info.st_mtime), size + info.st_size)
    return [Item(name, at, size) for name, (at, size) in found.items()]


def prune(folder: Path, max_bytes: int, max_age: float, now: float) -> list[Item]:
    """Remove what the limits say from ``folder``; returns the items removed (in a worker thread)."""
    removed = []
    for item in to_remove(scan(folder), max_bytes, max_age, now):
        for suffix in SUFFIXES:
            (folder / f"{item.name}{suffix}").unlink(missing_ok=True)
        removed.append(item)
    return removed


class BadmailPruner:
    """Keeps Badmail within the limits of the live configuration; ``poke`` after a new item or a change."""

    def __init__(self, folder: Callable[[], Path], config: Callable[[], Config], bus: EventBus,
                 counters: Counters, clock: Callable[[], float] = time.time) -> None:
        self._folder = folder
        self._config = config
        self._bus = bus
        self._counters = counters
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self.prune_now()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PRUNE_INTERVAL)

    async def prune_now(self) -> list[Item]:
        server = self._config().server
        if not server.badmail_max_size_mb and not server.badmail_max_age_days:
            return []
        folder = self._folder()
        try:
            removed = await asyncio.to_thread(prune, folder, server.badmail_max_size_mb * 1024 * 1024,
                                              server.badmail_max_age_days * 86400.0, self._clock())
        except OSError as error:
            log.error("cannot keep Badmail within its limits: %s", error)
            self._bus.publish(ErrorEvent("badmail", f"cannot remove old Badmail items from {folder}: {error}"))
            return []
        if removed:
            freed = sum(item.size for item in removed)
            self._counters.badmail_items_removed += len(removed)
            log.info("Badmail limits: removed %d item(s), %d bytes, from %s", len(removed), freed, folder)
            self._bus.publish(BadmailPruned(tuple(item.name for item in removed), freed))
        return removed
