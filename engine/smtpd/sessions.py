"""The live registry of inbound connections ("Current Sessions"): who, from where, since when, doing what."""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

TRANSCRIPT_LINES = 200  # per session: Session Properties shows the latest


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
        # The last lines of the dialogue, for Session Properties: (">", client line) / ("<", reply); secrets of
        # AUTH are masked when recorded, message data is never recorded. Kept raw, formatted when asked for.
        self.transcript: deque[tuple[str, bytes | str]] = deque(maxlen=TRANSCRIPT_LINES)
        self.announced = 0.0  # monotonic time of the last SessionChanged event
        self.close = close  # sends a 421 and closes the connection
        self.committing = False  # a complete message is being committed: a shutdown waits for its reply

    def heard(self, line: bytes, authenticating: bool) -> None:
        """A command line from the client (``authenticating``: an AUTH exchange's line, all secret)."""
        if authenticating:
            line = b"*** (masked)"
        elif line[:5].upper() == b"AUTH " and line.count(b" ") >= 2:
            line = b" ".join(line.split(b" ")[:2]) + b" *** (masked)"  # the initial response is the secret
        self.transcript.append((">", line))

    def said(self, text: str) -> None:
        self.transcript.append(("<", text))

    def transcript_lines(self) -> list[str]:
        lines = []
        for way, text in self.transcript:
            said = text.decode("utf-8", "backslashreplace") if isinstance(text, bytes) else text
            lines += [f"{way}{way}{way} {line}" for line in said.split("\r\n")]  # a multi-line reply: each line
        return lines

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

    def transcript(self, session_id: str) -> list[str] | None:
        """The session's latest dialogue lines (">>> " client, "<<< " server); None once it has ended."""
        session = self._sessions.get(session_id)
        return session.transcript_lines() if session is not None else None

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
