"""What became of the files put into Pickup (by any tool, in any session): from the tracking index and Badmail."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.admin.tracking import Track
from engine.bounce.badmail import BadmailItem, read_badmail

PICKUP_SOURCE = "pickup"
Outcome = Literal["queued", "delivered", "returned", "deleted", "lost", "refused"]
LEFT_THE_QUEUE: dict[str, Outcome] = {"delivered": "delivered", "returned": "returned", "deleted": "deleted",
                                      "lost": "lost"}  # MessageRemoved's reasons


@dataclass(frozen=True)
class PickupRecord:
    at: float  # when the message was taken from Pickup (queued) or refused
    outcome: Outcome
    queue_id: str  # "" when refused before it was queued
    badmail: str  # the Badmail item's name when refused
    file: str  # the Pickup file's name, when known (Badmail keeps it)
    sender: str
    recipients: tuple[str, ...]
    subject: str
    size: int
    detail: str  # the reason, or the latest step


def outcome_of(track: Track) -> tuple[Outcome, str, str]:
    """(outcome, detail, Badmail name) from a tracked message's timeline: the last final step decides."""
    dropped: set[str] = set()
    for step in reversed(track.steps):
        if step.what == "moved to Badmail":
            name, _, reason = step.detail.partition(": ")
            return "refused", reason, name
        if step.what == "left the queue":
            outcome = LEFT_THE_QUEUE.get(step.detail, "delivered")
            return outcome, "" if outcome == "delivered" else step.detail, ""
    for step in track.steps:
        if step.what == "delivered to Drop":
            dropped.update(address.strip().lower() for address in step.detail.split(","))
    if track.recipients and {r.lower() for r in track.recipients} <= dropped:
        return "delivered", "delivered to the Drop directory", ""
    latest = next((step for step in reversed(track.steps) if step.what not in ("received", "taken from Pickup")), None)
    return "queued", (f"{latest.what}: {latest.detail}" if latest and latest.detail else ""), ""


def pickup_records(tracks: Iterable[Track], badmail: Iterable[BadmailItem], limit: int) -> list[PickupRecord]:
    """Newest first: every tracked message that came from Pickup, and every Pickup file refused into Badmail."""
    records = []
    for track in tracks:
        if track.source != PICKUP_SOURCE:
            continue
        outcome, detail, name = outcome_of(track)
        file = next((step.detail for step in track.steps if step.what == "taken from Pickup"), "")
        records.append(PickupRecord(track.received, outcome, track.queue_id, name, file, track.sender,
                                    track.recipients, track.subject, track.size, detail))
    for item in badmail:
        if item.source != PICKUP_SOURCE or item.property("queue-id"):
            continue  # a queued message badmailed later is in its track
        records.append(PickupRecord(item.at, "refused", "", item.name, item.property("pickup-file"), item.sender,
                                    item.recipients, "", 0, " ".join(item.reason.split())))
    records.sort(key=lambda record: record.at, reverse=True)
    return records[:limit]


_Key = tuple[int, int, int, bool]  # the .BDP's inode, size and modification time; whether the .BDR is there


class BadmailCache:
    """The Badmail items, each read once: an item is read again only when its .BDP changed (inode, size or
    modification time) or its .BDR appeared (an item is listed from its .BAD, written first). Asked for the
    history again and again (the window refreshes it), the folder is listed and each .BDP stat'ed, no more."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[_Key, BadmailItem]] = {}

    def items(self, folder: Path) -> list[BadmailItem]:
        """Every item of ``folder``, by name (worker thread)."""
        try:
            files = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        present = set(files)
        kept: dict[str, tuple[_Key, BadmailItem]] = {}
        found = []
        for file in sorted(files):
            if not file.endswith(".BAD"):
                continue
            name = file.removesuffix(".BAD")
            try:
                bdp = os.stat(folder / f"{name}.BDP")
                key: _Key | None = (bdp.st_ino, bdp.st_size, bdp.st_mtime_ns, f"{name}.BDR" in present)
            except FileNotFoundError:
                key = None  # not complete yet: read, not kept
            cached = self._items.get(name)
            if cached is not None and cached[0] == key:
                item = cached[1]
            else:
                try:
                    item = read_badmail(folder, name)
                except OSError:
                    continue  # deleted meanwhile
            if key is not None:
                kept[name] = (key, item)
            found.append(item)
        self._items = kept  # what left the folder is forgotten
        return found
