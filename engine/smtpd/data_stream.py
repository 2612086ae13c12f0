"""The SMTP DATA stream as a pure state machine: end detection, dot-unstuffing, bare CR/LF policy.

Invariants (SMTP smuggling, RFC 5321 §4.1.1.4 / §4.5.2): only ``CRLF . CRLF`` ends DATA (or
``. CRLF`` as the very first line); ``LF . LF``, ``LF . CRLF``, ``CR . CR`` never do. Every decision
comes from the raw bytes, never from normalized output: the end marker needs a line start after a
real CRLF. A bare CR or LF is recorded in ``bare_newline``; in "normalize" mode it becomes CRLF in
the stored content, and a dot right after it is unstuffed like one after a CRLF (a client that ends
lines with LF stuffs them too), but it never starts an end marker. Chunks of any size may be fed;
the output is the same as if the whole stream came at once.
"""

from __future__ import annotations

import re

END = b"\r\n.\r\n"
_NEWLINE_DOT = re.compile(rb"(?:\r\n|\r|\n)\.?")  # normalize mode: any line end, and the stuffed dot after it


class DataStream:
    """Feed raw bytes after ``354``; get back message bytes to store, and the end of DATA."""

    def __init__(self, normalize_bare_newlines: bool = False) -> None:
        self.normalize = normalize_bare_newlines
        self.bare_newline = False  # a bare CR or LF was seen
        self.done = False
        self._carry = b""
        self._line_start = True  # the raw bytes consumed so far end with a real CRLF (or are none)
        self._after_bare = False  # normalize mode: they end with a bare CR or LF

    def feed(self, chunk: bytes) -> tuple[bytes, bytes]:
        """Returns (content, leftover); ``leftover`` is what followed the end marker, once ``done``."""
        if self.done:
            return b"", chunk
        data = self._carry + chunk if self._carry else chunk
        self._carry = b""
        if not data:
            return b"", b""
        if self._line_start:
            if data[:3] == b".\r\n":
                self.done = True
                return b"", data[3:]
            if len(data) < 3 and b".\r\n".startswith(data):
                self._carry = data  # maybe the end marker: wait for more
                return b"", b""
        if (self._line_start or self._after_bare) and data[:1] == b".":
            data = data[1:]  # a stuffed dot at a line start
        self._line_start = self._after_bare = False
        if not data:
            return b"", b""
        end = data.find(END)
        if end >= 0:
            self.done = True
            return self._process(data[: end + 2]), data[end + 5 :]
        # Keep a tail that could be the start of an end marker for the next feed; never split a CRLF.
        cut = max(len(data) - 4, 0)
        if cut and data[cut - 1 : cut] == b"\r":
            cut -= 1
        self._carry = data[cut:]
        return self._process(data[:cut]), b""

    def _process(self, raw: bytes) -> bytes:
        """Unstuff and (in normalize mode) repair a region that starts past a line start and splits no CRLF."""
        if not raw:
            return b""
        self._line_start = raw.endswith(b"\r\n")
        crlf = raw.count(b"\r\n")
        if raw.count(b"\n") == crlf and raw.count(b"\r") == crlf:
            # Every b"\r\n" in raw bytes is a real CRLF, so this unstuffs exactly the line starts.
            return raw.replace(b"\r\n.", b"\r\n") if b"\r\n." in raw else raw
        self.bare_newline = True
        if not self.normalize:
            return raw.replace(b"\r\n.", b"\r\n")
        # A region never ends inside a CRLF, so a final CR here is a bare one.
        self._after_bare = not self._line_start and raw[-1:] in (b"\r", b"\n")
        return _NEWLINE_DOT.sub(b"\r\n", raw)
