"""The event log's stable table of event IDs (like IIS's SMTPSVC IDs) and the rule engine event → entry (pure).

IDs never change meaning once published: scripts and monitoring filter on them. The numbering follows
IIS's ranges in spirit (1xxx service, 2xxx security, 3xxx messages, 4xxx listeners, 5xxx storage); IIS's
own numbers are not reproduced (unconfirmed), except that 4000 is the listener failure as in SMTPSVC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from engine.events import (
    AdminAction,
    BadmailPruned,
    CertificateLoaded,
    ConfigChanged,
    ConnectionLimitReached,
    ErrorEvent,
    Event,
    ListenerFailed,
    MessageBadmailed,
    MessageQueued,
    QueueRecovery,
    StateChanged,
)
from engine.smtpd.security import AuthFailed, AuthRefusedLocked, SecurityWarning

Level = Literal["Information", "Warning", "Error"]
LEVELS: tuple[Level, ...] = ("Information", "Warning", "Error")  # in rising severity
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class EventType:
    event_id: int
    level: Level
    source: str
    summary: str  # what the ID means, for the table in the docs and the viewer's detail


EVENT_TYPES: dict[int, EventType] = {t.event_id: t for t in (
    EventType(1000, "Information", "Service", "The virtual server started"),
    EventType(1001, "Information", "Service", "The virtual server stopped"),
    EventType(1002, "Information", "Service", "The virtual server paused (new connections refused)"),
    EventType(1003, "Information", "Service", "The virtual server continued after a pause"),
    EventType(1004, "Information", "Queue", "The queue was read back after a start"),
    EventType(1100, "Information", "Configuration", "The configuration changed"),
    EventType(1101, "Information", "Administration", "An operator changed something over the admin server"),
    EventType(2000, "Warning", "Security", "A client address was locked out after failed logins"),
    EventType(2001, "Warning", "Security", "A login was refused during a lock-out"),
    EventType(2002, "Warning", "Security", "A setting weakens security"),
    EventType(2003, "Error", "TLS", "The certificate or key cannot be used"),
    EventType(2004, "Information", "TLS", "The certificate was loaded (at start, or after its file changed)"),
    EventType(2005, "Warning", "TLS", f"The certificate expires within {EXPIRY_WARNING_DAYS} days, or has expired"),
    EventType(3000, "Warning", "Badmail", "A message was moved to Badmail"),
    EventType(3001, "Information", "NDR", "A delivery status notification was generated"),
    EventType(3002, "Error", "NDR", "A delivery status notification could not be queued"),
    EventType(3003, "Information", "Badmail", "Old Badmail items were removed (badmail_max_size_mb/_age_days)"),
    EventType(4000, "Error", "Listener", "The virtual server could not listen on an address"),
    EventType(4001, "Warning", "Listener", "The maximum number of inbound connections was reached (at most one "
                                           "entry a minute)"),
    EventType(5000, "Error", "Queue", "A queue file is damaged or a message could not be stored (disk full?)"),
    EventType(5001, "Error", "Drop", "A message could not be written to the Drop directory"),
    EventType(5002, "Error", "Pickup", "A Pickup file could not be handled"),
    EventType(5003, "Error", "Protocol log", "The protocol log cannot be written (disk full?); lines are dropped"),
    EventType(5004, "Error", "SMTP", "An unexpected error in an SMTP session"),
    EventType(5099, "Error", "Service", "Another error an operator should see"),
)}

def _certificate(event: CertificateLoaded) -> tuple[int, str]:
    until = datetime.fromtimestamp(event.not_after, UTC).strftime("%Y-%m-%d %H:%M UTC")
    days = (event.not_after - event.at) / 86400
    if days < 0:
        return 2005, f"The certificate {event.subject} ({event.path}) expired on {until}: clients will refuse it."
    if days < EXPIRY_WARNING_DAYS:
        return 2005, f"The certificate {event.subject} ({event.path}) expires in {int(days)} day(s), on {until}."
    return 2004, f"Loaded the certificate {event.subject} from {event.path}; valid until {until}."


_STATE_IDS = {("starting", "started"): 1000, ("stopping", "stopped"): 1001, ("pausing", "paused"): 1002,
              ("continuing", "started"): 1003}
_ERROR_IDS = {"queue": 5000, "drop": 5001, "pickup": 5002, "log": 5003, "smtp": 5004, "dsn": 3002, "tls": 2003}


@dataclass(frozen=True)
class EventEntry:
    at: float
    event_id: int
    level: Level
    source: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"time": datetime.fromtimestamp(self.at, UTC).isoformat(timespec="milliseconds"), "at": self.at,
                "id": self.event_id, "level": self.level, "source": self.source, "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventEntry:
        level = data["level"]
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}")
        return cls(float(data["at"]), int(data["id"]), level, str(data["source"]), str(data["text"]))


def _entry(event: Event, event_id: int, text: str) -> EventEntry:
    kind = EVENT_TYPES[event_id]
    return EventEntry(event.at, event_id, kind.level, kind.source, text)


def _state(event: StateChanged) -> tuple[int, str] | None:
    event_id = _STATE_IDS.get((event.previous, event.state))
    return (event_id, f"The virtual server is {event.state}.") if event_id else None


def _recovery(event: QueueRecovery) -> tuple[int, str] | None:
    return (1004, f"{event.recovered} queued message(s) read back.") if event.finished and event.recovered else None


def _auth_failed(event: AuthFailed) -> tuple[int, str] | None:
    if not event.locked:
        return None
    return 2000, (f"{event.peer} is locked out after {event.failures} failed logins (last name tried: "
                  f"{event.user or '(none)'}).")


_RULES: dict[type[Event], Callable[[Any], tuple[int, str] | None]] = {
    StateChanged: _state,
    QueueRecovery: _recovery,
    ConfigChanged: lambda e: (1100, (f"Changed by {e.by}: " if e.by else "Changed: ") + ", ".join(e.keys) + "."),
    AdminAction: lambda e: (1101, f"Operator {e.operator} from {e.peer}: {e.op} {e.detail}".rstrip() + "."),
    AuthFailed: _auth_failed,
    AuthRefusedLocked: lambda e: (2001, f"A login from {e.peer} was refused: locked out for "
                                        f"{int(e.seconds_left)} more seconds."),
    SecurityWarning: lambda e: (2002, e.message),
    CertificateLoaded: _certificate,
    MessageBadmailed: lambda e: (3000, f"{e.name} ({e.source}): {e.reason}"),
    BadmailPruned: lambda e: (3003, f"{len(e.names)} Badmail item(s) removed, {e.freed:,} bytes, oldest first: "
                                    + ", ".join(e.names[:5]) + (" …" if len(e.names) > 5 else "") + "."),
    MessageQueued: lambda e: (3001, f"Notification {e.queue_id} to {e.recipients[0] if e.recipients else '?'}.")
    if e.source == "dsn" else None,
    ListenerFailed: lambda e: (4000, f"Cannot listen on {e.address}: {e.reason}."),
    ConnectionLimitReached: lambda e: (4001, (f"{e.peer} has {e.limit} connections, its limit" if e.per_peer else
                                              f"The limit of {e.limit} inbound connections is reached")
                                       + f": new connections are refused with 421 (last from {e.peer})."),
    ErrorEvent: lambda e: (_ERROR_IDS.get(e.source, 5099), e.message),
}


def entry_for(event: Event) -> EventEntry | None:
    """The event-log entry for an engine event, or None for the events not worth keeping (sessions, queue moves)."""
    rule = _RULES.get(type(event))
    found = rule(event) if rule is not None else None
    return _entry(event, *found) if found is not None else None


THROTTLED: dict[int, float] = {4001: 60.0}  # IDs that may come in floods: at most one entry per so many seconds


def throttled(event_id: int, last: float | None, now: float) -> bool:
    """Whether an entry of a flooding kind is left out: one came less than its window ago."""
    window = THROTTLED.get(event_id)
    return window is not None and last is not None and now - last < window


def at_least(level: Level) -> frozenset[str]:
    """The levels as severe as ``level`` or more."""
    return frozenset(LEVELS[LEVELS.index(level):])
