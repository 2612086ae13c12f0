"""Engine events (frozen dataclasses) and the observer bus the UI, logs and counters subscribe to.

Invariant: publishing never blocks and never raises into the publisher; a failing subscriber is
logged and kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Event:
    """Base of all events; ``at`` is wall-clock seconds since the epoch."""

    at: float = field(default_factory=_now, kw_only=True)


@dataclass(frozen=True)
class StateChanged(Event):
    state: str
    previous: str


@dataclass(frozen=True)
class ListenerFailed(Event):
    address: str
    reason: str


@dataclass(frozen=True)
class SessionOpened(Event):
    session_id: str
    peer: str


@dataclass(frozen=True)
class SessionClosed(Event):
    session_id: str
    peer: str
    messages: int


@dataclass(frozen=True)
class SessionChanged(Event):
    """A session's user, state or current command changed (throttled per session by the caller)."""

    session_id: str


@dataclass(frozen=True)
class MessageQueued(Event):
    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    size: int
    source: str  # "smtp" | "pickup" | "dsn"
    # What message tracking shows, from the header scan at intake (cleanup.headers.tracked_fields): the Message-ID
    # (normalised), the Subject (unfolded, bounded), how the message came (our Received header). ``scanned``
    # False: a producer that did not scan (tracking then reads the stored file); True: "" means the message has none.
    message_id: str = ""
    subject: str = ""
    via: str = ""
    scanned: bool = False


@dataclass(frozen=True)
class MessageDropped(Event):
    queue_id: str
    path: str
    recipients: tuple[str, ...]
    ref: str = ""  # how list_drop names the file (``DropItem.ref``: ``domain/file``)


@dataclass(frozen=True)
class MessageRemoved(Event):
    """A queue entry left the queue (all recipients final, or deleted)."""

    queue_id: str
    reason: str


@dataclass(frozen=True)
class QueueChanged(Event):
    """A queued message's state changed (attempt made, frozen, thawed, retry scheduled...)."""

    queue_id: str
    what: str
    detail: str = ""  # "attempted": the recipients' last replies (for message tracking)


@dataclass(frozen=True)
class QueueRecovery(Event):
    """The queue is being read back at start (``finished`` False: listings are partial), a few times a second."""

    recovered: int  # messages read back so far
    total: int  # messages found in Queue at start (0 until the directory is listed)
    finished: bool


@dataclass(frozen=True)
class PickupTaken(Event):
    """A Pickup file became queued message ``queue_id`` (message tracking keeps the file's name)."""

    queue_id: str
    name: str


@dataclass(frozen=True)
class MessageBadmailed(Event):
    name: str  # base name of the .BAD/.BDR/.BDP triple
    reason: str
    source: str
    cause: str = ""  # the counter it counts in: a key of counters.BADMAIL_COUNTERS ("" = by source)
    queue_id: str = ""  # the id the message had, or (Pickup) was to be queued under; "" when unknown


@dataclass(frozen=True)
class BadmailPruned(Event):
    """Badmail items removed, oldest first, to keep within badmail_max_size_mb / badmail_max_age_days."""

    names: tuple[str, ...]
    freed: int  # bytes


@dataclass(frozen=True)
class ConnectionRefused(Event):
    peer: str
    reason: str


@dataclass(frozen=True)
class ConnectionLimitReached(Event):
    """A connection was refused (421) because the inbound connection limit is reached (``per_peer``: the
    limit of one client address)."""

    peer: str
    limit: int
    per_peer: bool = False


@dataclass(frozen=True)
class ConfigChanged(Event):
    keys: tuple[str, ...]
    by: str = ""  # who: engine.actor.current_actor()


@dataclass(frozen=True)
class AdminAction(Event):
    """An operator changed something through the admin server (who, from where, which op)."""

    operator: str
    peer: str
    op: str
    detail: str


@dataclass(frozen=True)
class CertificateLoaded(Event):
    """The TLS certificate was (re)loaded: at start-up, or at the first connection after its file changed."""

    path: str
    subject: str
    not_after: float  # seconds since the epoch


@dataclass(frozen=True)
class ErrorEvent(Event):
    """Something went wrong that an operator should see (corrupt queue file, unreadable Pickup file...)."""

    source: str
    message: str


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out of events to subscribers on the engine's loop thread."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it again."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # a broken observer must not break the mail path
                log.exception("event subscriber failed on %r", event)
