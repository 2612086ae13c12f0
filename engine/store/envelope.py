"""Envelope lines (``x-sender:`` / ``x-receiver:``) that start every Queue and Drop file, and the state record.

A Queue or Drop file is ``x-sender: a@b CRLF (x-receiver: c@d CRLF)+`` followed by the message,
so that a Drop file (or a Queue file) put into Pickup is delivered again identically. The mutable
delivery state of a queued message lives beside it in a small versioned JSON record (``.env``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

RECORD_VERSION = 1
MAX_ENVELOPE_BYTES = 4 << 20
_LEADING_DOT = re.compile(rb"(?m)^\.")


RecipientStatus = Literal["pending", "delivered", "failed"]  # a recipient's fate (engine.qmgr.fate moves it)
RECIPIENT_STATUSES: tuple[RecipientStatus, ...] = get_args(RecipientStatus)
_STATUSES: dict[str, RecipientStatus] = {status: status for status in RECIPIENT_STATUSES}

BODY, BINARYMIME = "body", "BINARYMIME"  # StateRecord.extra[BODY]: the message came with BODY=BINARYMIME


class EnvelopeError(ValueError):
    """The envelope lines or the state record cannot be read."""


def status_of(text: str) -> RecipientStatus:
    """A stored status read back as the typed one."""
    try:
        return _STATUSES[text]
    except (KeyError, TypeError):
        raise EnvelopeError(f"unknown recipient status {text!r}") from None


def envelope_lines(sender: str, recipients: Sequence[str]) -> bytes:
    """``x-sender``/``x-receiver`` lines; the null sender is written as ``<>``."""
    for address in (sender, *recipients):
        if any(ch in address for ch in "\r\n\0"):
            raise ValueError(f"address with a line break or NUL: {address!r}")
    lines = [f"x-sender: {sender or '<>'}\r\n"]
    lines += [f"x-receiver: {rcpt}\r\n" for rcpt in recipients]
    return "".join(lines).encode("utf-8")


def pickup_file(sender: str, recipients: Sequence[str], content: bytes) -> bytes:
    """A file that Pickup reads back as exactly this envelope and (CRLF-terminated) content.

    Plain ``envelope_lines + content`` already round-trips unless the content's last line is a lone ``.``;
    then the content is written dot-stuffed with a final ``.`` line.
    """
    head = envelope_lines(sender, recipients)
    if not content_end(content)[1]:
        return head + content
    if not content.endswith(b"\n"):
        content += b"\r\n"
    return head + _LEADING_DOT.sub(b"..", content) + b".\r\n"


def content_end(data: bytes) -> tuple[int, bool]:
    """Where the content ends, and whether the file is dot-stuffed (its last line is a lone ``.``)."""
    stop = len(data)
    if data.endswith(b"\r\n"):
        stop -= 2
    elif data.endswith(b"\n"):
        stop -= 1
    start = data.rfind(b"\n", 0, stop) + 1
    if stop - start == 1 and data[start] == 0x2E:
        return start, True
    return len(data), False


def split_envelope(data: bytes) -> tuple[str, tuple[str, ...], int]:
    """Parse the leading envelope lines of ``data``: (sender, recipients, offset of the message)."""
    offset = 0
    sender: str | None = None
    recipients: list[str] = []
    while True:
        end = data.find(b"\n", offset, offset + 4096)
        if end < 0:
            break
        line = data[offset:end].rstrip(b"\r")
        name, colon, value = line.partition(b":")
        key = name.strip().lower()
        if not colon or key not in (b"x-sender", b"x-receiver"):
            break
        text = value.strip().decode("utf-8", errors="surrogateescape")
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        if key == b"x-sender":
            if sender is not None:
                raise EnvelopeError("more than one x-sender line")
            sender = text
        else:
            recipients.append(text)
        offset = end + 1
    if sender is None or not recipients:
        raise EnvelopeError("missing x-sender or x-receiver lines")
    return sender, tuple(recipients), offset


@dataclass(slots=True)  # slotted: a queue of 100,000 messages holds one or more of each per message
class RecipientState:
    address: str
    status: RecipientStatus = "pending"
    last_error: str = ""
    attempts: int = 0
    enhanced: str = ""  # RFC 3463 status of the last outcome
    remote: str = ""  # the host that gave it
    notify: str = ""  # RFC 3461 NOTIFY (e.g. "FAILURE,DELAY"); empty = default (failure and delay)
    orcpt: str = ""  # RFC 3461 ORCPT, as received
    reported: bool = False  # its final outcome was reported to the sender (NDR / success DSN) or badmailed


@dataclass(slots=True)
class StateRecord:
    """Delivery state of one queued message, rewritten atomically on every change."""

    queue_id: str
    sender: str
    recipients: list[RecipientState]
    arrived: float
    source: str = "smtp"
    attempts: int = 0
    next_attempt: float = 0.0
    frozen: bool = False
    last_error: str = ""
    last_attempt: float = 0.0
    delay_notice_sent: bool = False
    ret: str = ""  # RFC 3461 RET: FULL | HDRS (empty = headers only)
    envid: str = ""  # RFC 3461 ENVID
    extra: dict[str, str] = field(default_factory=dict)
    version: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> StateRecord:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            version = raw.get("version")
            if version != RECORD_VERSION:
                raise EnvelopeError(f"unsupported record version {version!r}")
            recipients = [RecipientState(**item) for item in raw.pop("recipients")]
            for rcpt in recipients:  # read strictly, and as the one shared string of each status
                rcpt.status = status_of(rcpt.status)
            record = cls(recipients=recipients, **raw)
        except EnvelopeError:
            raise
        except (ValueError, TypeError, KeyError) as error:
            raise EnvelopeError(f"unreadable state record: {error}") from error
        if not isinstance(record.queue_id, str) or not isinstance(record.sender, str):
            raise EnvelopeError("unreadable state record: bad field types")
        return record
