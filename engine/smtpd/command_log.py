"""The protocol log's hook in an inbound session: one record per command, made once its last reply is out."""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.log.record import ProtocolRecord


class CommandLog:
    """Remembers the command being answered (verb, argument, start, the byte counts before it) until its end."""

    def __init__(self, record: Callable[[ProtocolRecord], None], peer: str, local: tuple[str, int] | None) -> None:
        self._record = record
        self._peer = peer
        self._local_ip, self._local_port = (str(local[0]), int(local[1])) if local else ("", 0)
        self._open: tuple[str, str, float, int, int] | None = None

    @property
    def pending(self) -> bool:
        return self._open is not None

    def start(self, line: bytes, sent: int, consumed: int) -> None:
        """A command line; ``sent``: bytes written so far, ``consumed``: bytes read before this line."""
        verb, _, arg = line.decode("utf-8", "replace").partition(" ")
        self._open = (verb.upper(), arg.strip(), time.monotonic(), sent, consumed)

    def end(self, helo: str, reply: str, sent: int, consumed: int) -> None:
        """The command is answered: ``reply`` was its last reply; ``consumed`` counts the bytes it took."""
        opened, self._open = self._open, None
        if opened is None:
            return
        verb, arg, started, sent_before, consumed_before = opened
        self._record(ProtocolRecord(
            "in", self._peer, helo, self._local_ip, self._local_port, verb, arg, reply, sent - sent_before,
            consumed - consumed_before, int((time.monotonic() - started) * 1000)))
