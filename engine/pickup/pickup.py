"""Pickup file rules: bytes of a Pickup file → envelope and message to deliver (pure, no I/O).

A Pickup file is RFC 5322 text. The rules, including where they differ from IIS on purpose:

- Envelope: optional lines before the headers, ``x-sender: <addr>`` (at most one: a second one is already a
  message header) and ``x-receiver: <addr>`` (one per recipient); names are case-insensitive, angle
  brackets optional, ``<>`` is the null sender. They are removed from the delivered content.
- Without x-receiver lines the recipients are every address of To, Cc and Bcc (in that order, deduplicated
  case-insensitively). Without an x-sender line the sender is the first address of Sender:, else of From:.
- A From: header is required when the sender comes from the headers (IIS rule); with an x-sender line the
  envelope is complete and a message without From: is delivered, as SMTP would. A Bcc header is never
  delivered, with or without x-receiver lines.
- Addresses without a domain get the default domain (``spamtest`` → ``spamtest@<default domain>``).
- Line endings: CRLF or bare LF; the delivered content always has CRLF line endings (binary content aside).
- Dot lines: if the file's last line is a lone ``.``, the file is dot-stuffed SMTP DATA: that line is removed
  and every line starting with ``..`` loses its first dot. Otherwise the content is taken literally: a lone
  ``.`` anywhere else is ordinary text and nothing after it is lost (IIS truncated the message there).
- Binary content (RFC 3030 BINARYMIME, e.g. a Drop file of a message that came by BDAT with BODY=BINARYMIME):
  a body with a NUL, a bare CR or a line over 998 octets, or with bare LFs in a file whose header lines end
  in CRLF and that labels a part ``Content-Transfer-Encoding: binary``. Its body is kept byte for byte (no
  line-ending change) and the message is marked binary, so that delivery converts it before it goes by DATA.
  In a file of LF lines the bare LFs are line ends even then, and become CRLF as above.
- Not a message: an empty file, NUL bytes in the header section, no ``Name: value`` header line before the
  first blank line (an mbox ``From `` line is named as such), a header section over 1 MB.

Limitation: a message whose own first header is ``X-Receiver:`` (or ``X-Sender:`` with no envelope lines
before it) is read as envelope — the file format cannot tell them apart, as in IIS.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email import errors as email_errors
from email.headerregistry import AddressHeader, HeaderRegistry
from typing import cast

from engine.errors import EngineError
from engine.smtp.binarymime import MAX_LINE
from engine.store.envelope import content_end

MAX_HEADER_BYTES = 1024 * 1024

_ENVELOPE = re.compile(rb"x-(sender|receiver)[ \t]*:[ \t]*(.*)", re.IGNORECASE | re.DOTALL)
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_WHITESPACE = re.compile(rb"[ \t\r\n]*")
_LONG_LINE = re.compile(rb"[^\r\n]{%d}" % (MAX_LINE + 1))
_BINARY_CTE = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:[ \t]*binary[ \t]*\r?$")
# One envelope address: quoted strings, or anything but whitespace, controls and address-list punctuation.
_ADDRESS = re.compile(r'(?:"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"|[^\s"<>(),;\\\x00-\x1f\x7f])+')
_REGISTRY = HeaderRegistry()


class PickupError(EngineError):
    """A Pickup file that is not a deliverable message; ``str`` is the reason written to Badmail."""

    cause = "bad_pickup_file"  # the Badmail counter it counts in


class NoRecipients(PickupError):
    """Neither x-receiver lines nor an address in To:, Cc: or Bcc:."""

    cause = "no_recipients"


@dataclass(frozen=True)
class PickupMessage:
    sender: str  # "" is the null sender
    recipients: tuple[str, ...]
    content: bytes  # CRLF lines (a binary body as it is), without envelope lines and Bcc
    binary: bool = False  # binary content (BODY=BINARYMIME): delivery converts it for DATA


def parse_pickup(data: bytes, default_domain: str) -> PickupMessage:
    """Read one Pickup file; raises PickupError with a plain-text reason when it is not a message."""
    end, stuffed = content_end(data)
    if _WHITESPACE.fullmatch(data, 0, end):
        raise PickupError("empty file")
    head_end, body_start, has_blank = _header_section(data, end)
    head = data[:head_end]
    if b"\0" in head:
        raise PickupError("binary data: NUL bytes in the header section")
    lines = head.split(b"\n")
    if lines[-1] == b"":  # the section ended with the file's final line break
        lines.pop()
    head_crlf = all(line.endswith(b"\r") for line in lines)
    lines = [line.removesuffix(b"\r") for line in lines]
    if stuffed:
        lines = [line[1:] if line.startswith(b"..") else line for line in lines]

    x_sender, x_receivers, count = _envelope(lines, default_domain)
    header_lines = lines[count:]
    if not header_lines or not _FIELD.match(header_lines[0]):
        where = "after the x-sender/x-receiver lines" if count else "before the first blank line"
        if header_lines and header_lines[0].startswith(b"From "):
            raise PickupError(f"not a message: an mbox 'From ' separator line {where}, not a header "
                              "(a mailbox file? put each message in its own file, without that line)")
        raise PickupError(f"not a message: no 'Name: value' header line {where}")
    fields, bcc_lines = _fields(header_lines)
    if x_sender is None and "from" not in {name for name, _ in fields}:
        raise PickupError("no From: header")  # the sender would come from it (no x-sender line)

    if x_sender is not None:
        sender = x_sender
    else:
        found = (
            _addresses(fields, ("sender",), default_domain)[:1]
            or _addresses(fields, ("from",), default_domain)[:1]
        )
        if not found:
            raise PickupError("the From: header has no usable address")
        sender = found[0]
    recipients = _dedupe(x_receivers or _addresses(fields, ("to", "cc", "bcc"), default_domain))
    if not recipients:
        raise NoRecipients("no recipients: no x-receiver lines and no address in To:, Cc: or Bcc:")

    binary = _binary(data, body_start, end, head_crlf)
    # A file of LF lines has its line ends made CRLF even so: there a bare LF is a line end, not content.
    body, body_changed = _body(data, body_start, end, stuffed, binary and head_crlf)
    tail = b"\r\n" if len(body) and body[-1:] != b"\n" else b""
    unchanged = count == 0 and not bcc_lines and not stuffed and head_crlf and not body_changed and not tail
    if unchanged and (not has_blank or data[head_end:body_start] == b"\n\r\n") and end == len(data):
        return PickupMessage(sender, tuple(recipients), data, binary)  # nothing to change: no copy of a big file
    kept = [line for index, line in enumerate(header_lines) if index not in bcc_lines]
    head_out = b"\r\n".join(kept) + b"\r\n" + (b"\r\n" if has_blank else b"")
    return PickupMessage(sender, tuple(recipients), b"".join((head_out, body, tail)), binary)


def _binary(data: bytes, start: int, end: int, head_crlf: bool) -> bool:
    """Whether the body is binary content that DATA cannot carry as it is (see the module's rules)."""
    if data.find(b"\0", start, end) >= 0 or _LONG_LINE.search(data, start, end) is not None:
        return True
    crlf = data.count(b"\r\n", start, end)
    if data.count(b"\r", start, end) != crlf:
        return True  # a bare CR
    bare_lf = data.count(b"\n", start, end) != crlf
    return bare_lf and head_crlf and _BINARY_CTE.search(data, 0, end) is not None


def _body(data: bytes, start: int, end: int, stuffed: bool, literal: bool) -> tuple[bytes | memoryview, bool]:
    """The body with CRLF line endings (unless ``literal``: binary) and, if stuffed, unstuffed; (body, whether
    it changed).

    bytes.replace rather than regular expressions: a body can be tens of MB of short lines.
    """
    bare_lf = not literal and data.count(b"\n", start, end) != data.count(b"\r\n", start, end)
    if not bare_lf and not (
        stuffed and (data.startswith(b"..", start) or data.find(b"\n..", start, end) >= 0)
    ):
        return memoryview(data)[start:end], False
    if stuffed and data.startswith(b"..", start):
        start += 1
    body = data[start:end]
    if stuffed:
        body = body.replace(b"\n..", b"\n.")
    if bare_lf:
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n")
        body = body.replace(b"\n", b"\r\n")
    return body, True


def _header_section(data: bytes, end: int) -> tuple[int, int, bool]:
    """(end of the header lines, start of the body, whether a blank line separates them)."""
    if data.startswith((b"\n", b"\r\n")):
        return 0, data.index(b"\n") + 1, True
    match = _BLANK_LINE.search(data, 0, min(end, MAX_HEADER_BYTES + 3))
    if match:
        head_end = match.start()
        if head_end > MAX_HEADER_BYTES:
            raise PickupError("header section larger than 1 MB")
        return head_end, match.end(), True
    if end > MAX_HEADER_BYTES:
        raise PickupError("header section larger than 1 MB")
    return end, end, False


def _envelope(lines: list[bytes], default_domain: str) -> tuple[str | None, list[str], int]:
    """The leading x-sender/x-receiver lines: (sender or None, receivers, number of lines)."""
    sender: str | None = None
    receivers: list[str] = []
    count = 0
    for line in lines:
        match = _ENVELOPE.fullmatch(line)
        if not match:
            break
        kind = match[1].lower()
        if kind == b"sender" and sender is not None:
            break  # a second x-sender is the message's own X-Sender header
        label = "x-" + kind.decode()
        address = _envelope_address(_decode(match[2]), label, default_domain)
        if kind == b"sender":
            sender = address
        else:
            receivers.append(address)
        count += 1
    return sender, receivers, count


def _envelope_address(text: str, label: str, default_domain: str) -> str:
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text:
        if label == "x-sender":
            return ""
        raise PickupError("an x-receiver line without an address")
    return _checked(text, f"{label} line", default_domain)


def _checked(address: str, where: str, default_domain: str) -> str:
    """Validate one address and give it the default domain if it has none."""
    if not _ADDRESS.fullmatch(address) or address.startswith("@") or address.endswith("@"):
        raise PickupError(f"invalid address in the {where}: {address!r}")
    if "@" not in address.rpartition('"')[2] and default_domain:
        return f"{address}@{default_domain}"
    return address


def _fields(lines: list[bytes]) -> tuple[list[tuple[str, str]], set[int]]:
    """Unfolded (lowercase name, value) header fields, and the line numbers that belong to Bcc fields."""
    fields: list[tuple[str, str]] = []
    bcc_lines: set[int] = set()
    name: str | None = None
    parts: list[bytes] = []

    def flush() -> None:
        if name is not None:
            fields.append((name, _decode(b"".join(parts)).strip()))

    for index, line in enumerate(lines):
        if line[:1] in (b" ", b"\t") and name is not None:
            parts.append(line)  # folded: unfolding just drops the line break
        else:
            flush()
            match = _FIELD.match(line)
            # A malformed line is kept in the content but ends the current field.
            name = match[0][:-1].rstrip(b" \t").decode("ascii").lower() if match else None
            parts = [line[match.end() :]] if match else []
        if name == "bcc":
            bcc_lines.add(index)
    flush()
    return fields, bcc_lines


def _addresses(fields: list[tuple[str, str]], names: Iterable[str], default_domain: str) -> list[str]:
    """All addresses of the fields with these names, in the order of ``names``, then of the header."""
    found: list[str] = []
    for wanted in names:
        for name, value in fields:
            if name == wanted:
                found += _header_addresses(name, value, default_domain)
    return found


def _header_addresses(name: str, value: str, default_domain: str) -> list[str]:
    label = f"{name.capitalize()}: header"
    try:
        header = _REGISTRY(name, value)
        defects = header.defects
        specs = [
            address.addr_spec for address in cast(AddressHeader, header).addresses
        ]  # address fields only
    except Exception as exc:  # the stdlib parser can fail in many ways on junk; all mean "unparseable"
        raise PickupError(f"cannot parse the {label}: {value!r}") from exc
    if any(
        isinstance(defect, email_errors.InvalidHeaderDefect) and "invalid address" in str(defect)
        for defect in defects
    ):
        raise PickupError(f"unparseable address in the {label}: {value!r}")
    return [_checked(spec, label, default_domain) for spec in specs if spec not in ("", "<>")]


def _dedupe(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    unique: list[str] = []
    for address in addresses:
        key = address.lower()
        if key not in seen:
            seen.add(key)
            unique.append(address)
    return unique


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # 8-bit junk in old mail: keep every byte readable
