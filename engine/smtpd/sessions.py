"""The live registry of inbound connections ("Current Sessions"): who, from where, since when, doing what."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionInfo:
    """A snapshot of one session for the facade."""

    session_id: str
    peer: str
    peer_port: int
    user: str
    since: float
    bytes_in: int
    bytes_out: int
    state: str
    command: str
    messages: int
    tls: bool
    helo: str = ""  # the name the client gave in EHLO/HELO
    cipher: str = ""  # with TLS: protocol and cipher, "TLSv1.3 TLS_AES_256_GCM_SHA384"
    sender: str = ""  # MAIL FROM of the open transaction ("<>" for the null sender), "" when none
    listener: str = ""  # the local address:port the client connected to


class LiveSession:
    """Mutable per-connection record, updated by the protocol on the loop thread."""

    def __init__(self, session_id: str, peer: str, peer_port: int, close: Callable[[str], None]) -> None:
        self.session_id = session_id
        self.peer = peer
        self.peer_port = peer_port
        self.user = ""
        self.since = time.time()
        self.bytes_in = 0
        self.bytes_out = 0
        self.state = "connected"
        self.command = ""
        self.messages = 0
        self.tls = False
        self.helo = ""
        self.cipher = ""
        self.sender = ""
        self.listener = ""
        self.announced = 0.0  # monotonic time of the last SessionChanged event
        self.close = close  # sends a 421 and closes the connection
        self.committing = False  # a complete message is being committed: a shutdown waits for its reply

    def snapshot(self) -> SessionInfo:
        return SessionInfo(self.session_id, self.peer, self.peer_port, self.user or "(anonymous)",
                           self.since, self.bytes_in, self.bytes_out, self.state, self.command,
                           self.messages, self.tls, self.helo, self.cipher, self.sender, self.listener)


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, LiveSession] = {}
        self._per_peer: Counter[str] = Counter()
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, peer: str, peer_port: int, close: Callable[[str], None]) -> LiveSession:
        session = LiveSession(f"S{next(self._ids)}", peer, peer_port, close)
        self._sessions[session.session_id] = session
        self._per_peer[peer] += 1
        return session

    def close(self, session: LiveSession) -> None:
        if self._sessions.pop(session.session_id, None) is not None:
            self._per_peer[session.peer] -= 1
            if self._per_peer[session.peer] <= 0:
                del self._per_peer[session.peer]

    def from_peer(self, peer: str) -> int:
        return self._per_peer.get(peer, 0)

    def get(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    def list(self) -> list[SessionInfo]:
        return [session.snapshot() for session in self._sessions.values()]

    def committing(self) -> int:
        """Sessions whose complete message is being committed (their 250 is still to be sent)."""
        return sum(1 for session in self._sessions.values() if session.committing)

    def terminate_all(self, reply: str) -> int:
        sessions = list(self._sessions.values())
        for session in sessions:
            session.close(reply)
        return len(sessions)
