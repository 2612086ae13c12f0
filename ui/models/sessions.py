"""Current Sessions: one row per inbound connection, inserted and removed by engine events, refreshed by diff.

Invariant: a refresh (a list snapshot) never removes a row its snapshot could not have seen, and never
brings back a session whose close event was already handled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

from PySide6.QtGui import QIcon

from engine.smtpd.sessions import SessionInfo
from ui.icons import icon
from ui.models.table import Column, KeyedTableModel
from ui.units import size_text, span

CLOSED_MEMORY = 4096  # ids of closed sessions remembered against stale snapshots


def duration(seconds: float) -> str:
    return span(seconds)


def size(count: int) -> str:
    return size_text(count)


def _doing(session: SessionInfo) -> str:
    return session.command or session.state.capitalize()


def since_text(since: float, now: float) -> str:
    """The time of day; with the date when it was not today."""
    moment = datetime.fromtimestamp(since)
    return moment.strftime("%H:%M:%S" if moment.date() == datetime.fromtimestamp(now).date() else "%Y-%m-%d %H:%M")


class SessionsModel(KeyedTableModel[SessionInfo]):
    DURATION_COLUMN = 4

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.columns = (
            Column("User", lambda s: s.user, width=120),
            Column("From", lambda s: s.peer, sort=lambda s: (s.peer, s.peer_port), width=90),
            Column("EHLO Name", lambda s: s.helo, width=190),
            Column("Connected Since", lambda s: since_text(s.since, self._clock()), sort=lambda s: s.since,
                   width=115),
            Column("Connected For", lambda s: duration(self._clock() - s.since),
                   sort=lambda s: -s.since, right=True, width=100),
            Column("Command", _doing, width=90),
            Column("Sender", lambda s: s.sender, width=160),
            Column("TLS", lambda s: s.cipher or ("Yes" if s.tls else "—"), width=150),
            Column("Bytes In", lambda s: size(s.bytes_in), sort=lambda s: s.bytes_in, right=True, width=75),
            Column("Bytes Out", lambda s: size(s.bytes_out), sort=lambda s: s.bytes_out, right=True, width=75),
            Column("Messages", lambda s: str(s.messages), sort=lambda s: s.messages, right=True, width=70),
            Column("Listener", lambda s: s.listener, width=130),
        )
        super().__init__()
        self._generation = 0
        self._born: dict[str, int] = {}
        self._closed: dict[str, None] = {}

    def key(self, row: SessionInfo) -> str:
        return row.session_id

    def icon(self, row: SessionInfo) -> QIcon:
        return icon("session")

    def tooltip(self, row: SessionInfo) -> str:
        return (f"Session {row.session_id} from {row.peer}:{row.peer_port} to {row.listener or '?'}"
                + (f" ({row.cipher or 'TLS'})" if row.tls else "") + " — double-click for its properties")

    def opened(self, session_id: str, peer: str, at: float) -> None:
        self.apply_events([(session_id, peer, at)], [])

    def closed(self, session_id: str) -> None:
        self.apply_events([], [session_id])

    def apply_events(self, opened: list[tuple[str, str, float]], closed: list[str]) -> None:
        """Sessions opened (id, peer, since) and closed: one removal per run of rows, one block of inserts."""
        for session_id in closed:
            self._closed[session_id] = None
            self._born.pop(session_id, None)
        while len(self._closed) > CLOSED_MEMORY:
            del self._closed[next(iter(self._closed))]
        self.remove_many(closed)
        fresh = []
        for session_id, peer, at in opened:
            if session_id in self._closed or session_id in self._born:
                continue
            self._born[session_id] = self._generation
            fresh.append(SessionInfo(session_id, peer, 0, "(anonymous)", at, 0, 0, "connected", "", 0, False))
        self.append_many(fresh)

    def snapshot_started(self) -> int:
        """Call before asking the engine for a list; pass the result to ``apply_snapshot``."""
        self._generation += 1
        return self._generation

    def apply_snapshot(self, generation: int, sessions: Iterable[SessionInfo]) -> None:
        fresh = [s for s in sessions if s.session_id not in self._closed]
        for session in fresh:
            self._born.setdefault(session.session_id, generation)
        self.sync(fresh, keep=lambda key: self._born.get(key, 0) >= generation)
        for key in [key for key in self._born if self.get(key) is None]:
            del self._born[key]

    def clear(self) -> None:
        """No session: the engine stopped, or a remote one may have restarted (its next ids start again)."""
        self.remove_many([self.key(row) for row in self.rows()])
        self._born.clear()
        self._closed.clear()

    def tick(self) -> None:
        self.column_changed(self.DURATION_COLUMN)
