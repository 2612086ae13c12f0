"""The header section of a message as it streams by: hop counting (Received lines), and what tracking shows."""

from __future__ import annotations

import re
from dataclasses import dataclass

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

    def tracked(self, received: bytes = b"", queue_id: str = "") -> TrackedFields:
        """Message-ID, Subject and how the message came (from our own ``received`` header) for tracking."""
        return tracked_fields(bytes(self._buffer[:HEADER_BYTES]), received, queue_id)


HEADER_BYTES = 16 * 1024  # how much of a header section tracking looks at: bounded work per message
SUBJECT_CHARS = 300
MESSAGE_ID_CHARS = 998  # a header line's limit (RFC 5322): a longer one is cut, and found by its start only


@dataclass(frozen=True)
class TrackedFields:
    """What message tracking keeps of a message's header; "" where the message has none."""

    message_id: str = ""  # normalised (``normal_message_id``)
    subject: str = ""  # unfolded, spaces collapsed, at most SUBJECT_CHARS
    via: str = ""  # ``received_summary`` of our Received header


def normal_message_id(value: str) -> str:
    return value.strip().strip("<>").strip().lower()


_RECEIVED_FROM = re.compile(r"from (\S+) \(([^)]*)\)")
_RECEIVED_WITH = re.compile(r"\bwith (\S+) id (\S+)")
_RECEIVED_NOTES = re.compile(r"\(([^)]*)\)")


def received_summary(received: str, queue_id: str) -> str:
    """From whom and over what a message came, from the Received header smtpsvc wrote for it (or "")."""
    text = " ".join(received.split())
    found_with = _RECEIVED_WITH.search(text)
    found_from = _RECEIVED_FROM.match(text)
    if found_with is None or found_from is None or found_with.group(2).rstrip(";") != queue_id:
        return ""  # not ours (a Pickup file's own, or another server's)
    notes = [n for n in _RECEIVED_NOTES.findall(text[found_from.end():found_with.start()])]
    return ", ".join([f"from {found_from.group(1)} ({found_from.group(2)}) with {found_with.group(1)}", *notes])


_WANTED = ("message-id", "subject", "received")


def first_fields(data: bytes) -> dict[str, str]:
    """The first Message-ID, Subject and Received of a header block, unfolded (a quick scan: the email
    package's parser costs ten times as much, and every message is scanned)."""
    end = data.find(b"\r\n\r\n")
    block = data if end < 0 else data[:end]
    fields: dict[str, str] = {}
    current = ""
    for line in block.decode("utf-8", "replace").splitlines():
        if line[:1] in (" ", "\t"):
            if current:
                fields[current] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        key = name.strip().lower()
        current = key if colon and key in _WANTED and key not in fields else ""
        if current:
            fields[current] = value.strip()
    return fields


def tracked_fields(header: bytes, received: bytes = b"", queue_id: str = "") -> TrackedFields:
    """Tracking's fields of a header section (no envelope lines); ``received``: our own Received header, when
    it is not part of ``header`` (a session writes it apart), else the first Received of ``header`` is used."""
    fields = first_fields(received + header if received else header)
    via = received_summary(fields.get("received", ""), queue_id) if queue_id else ""
    return TrackedFields(normal_message_id(fields.get("message-id", ""))[:MESSAGE_ID_CHARS],
                         " ".join(fields.get("subject", "").split())[:SUBJECT_CHARS], via)
