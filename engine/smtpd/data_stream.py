"""The SMTP DATA stream as a pure state machine: end detection, dot-unstuffing, bare CR/LF policy.

Invariants (SMTP smuggling, RFC 5321 §4.1.1.4 / §4.5.2): only ``CRLF . CRLF`` ends DATA (or
``. CRLF`` as the very first line); ``LF . LF``, ``LF . CRLF``, ``CR . CR`` never do. A bare CR or
LF is recorded in ``bare_newline``; in "normalize" mode it is turned into CRLF *after* end
detection, so it can never create an end marker. Chunks of any size may be fed; the output is the
same as if the whole stream came at once.
"""

from __future__ import annotations

import re

END = b"\r\n.\r\n"
_BARE = re.compile(rb"\r\n|\r|\n")


class DataStream:
    """Feed raw bytes after ``354``; get back message bytes to store, and the end of DATA."""

    def __init__(self, normalize_bare_newlines: bool = False) -> None:
        self.normalize = normalize_bare_newlines
        self.bare_newline = False  # a bare CR or LF was seen
        self.done = False
        self._carry = b""
        self._at_line_start = True  # the output so far ends with CRLF (or is empty)

    def feed(self, chunk: bytes) -> tuple[bytes, bytes]:
        """Returns (content, leftover); ``leftover`` is what followed the end marker, once ``done``."""
        if self.done:
            return b"", chunk
        data = self._carry + chunk if self._carry else chunk
        if self._at_line_start and data[:3] == b".\r\n":
            self.done = True
            self._carry = b""
            return b"", data[3:]
        if self._at_line_start and len(data) < 3 and b".\r\n".startswith(data):
            self._carry = data
            return b"", b""
        end = data.find(END)
        if end >= 0:
            self.done = True
            self._carry = b""
            return self._process(data[: end + 2]), data[end + 5 :]
        # Keep a tail that could be the start of an end marker (or half a CRLF) for the next feed.
        cut = max(len(data) - 4, 0)
        if cut and data[cut - 1 : cut] == b"\r":
            cut -= 1
        self._carry = data[cut:]
        return self._process(data[:cut]), b""

    def _process(self, body: bytes) -> bytes:
        if not body:
            return b""
        ends_line = body.endswith(b"\n") if self.normalize else body.endswith(b"\r\n")
        crlf = body.count(b"\r\n")
        if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
            self.bare_newline = True
            if self.normalize:
                body = _BARE.sub(b"\r\n", body)
        if self._at_line_start and body[:1] == b".":
            body = body[1:]
        if b"\r\n." in body:
            body = body.replace(b"\r\n.", b"\r\n")
        self._at_line_start = ends_line
        return body
