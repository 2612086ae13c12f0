"""What became of the files put into Pickup (by any tool, in any session): from the tracking index and Badmail."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from engine.admin.tracking import Track
from engine.bounce.badmail import BadmailItem

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
