"""The header section of a message as it streams by: hop counting (Received lines) for the loop rule."""

from __future__ import annotations

import re

_RECEIVED = re.compile(rb"^received:", re.IGNORECASE | re.MULTILINE)


class HeaderScanner:
    """Collects the header section of a message as it streams by (bounded), to count Received lines."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self.complete = False

    def feed(self, content: bytes) -> None:
        if self.complete:
            return
        start = max(len(self._buffer) - 3, 0)
        self._buffer += content
        if self._buffer.startswith(b"\r\n"):
            self._buffer.clear()
            self.complete = True
            return
        end = self._buffer.find(b"\r\n\r\n", start)
        if end >= 0:
            del self._buffer[end + 2 :]
            self.complete = True
        elif len(self._buffer) > self._limit:
            del self._buffer[self._limit :]
            self.complete = True

    @property
    def header_bytes(self) -> bytes:
        return bytes(self._buffer)

    def received_count(self) -> int:
        return len(_RECEIVED.findall(self._buffer))
