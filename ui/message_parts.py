"""A message's bytes (from the facade) turned into what the viewer shows: headers, text, HTML, attachments, raw.

Pure (the stdlib email package, no Qt, no files). Never raises on bad input: a header or part that cannot be
decoded is shown raw, and what was wrong is listed in ``problems``. 8-bit headers are read as UTF-8 (else
Latin-1), encoded words are decoded, unknown charsets fall back to UTF-8 with replacement characters.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message

RAW_LIMIT = 4 << 20  # the Source tab shows at most this much of a huge message
# a resource the HTML would load: src=/background=... attributes, CSS url(...) and @import
RESOURCE_REFS = re.compile(r"""(?ix)
    (?: \b(?:src|background|poster|lowsrc|dynsrc)\s*=\s*["']?\s* | url\(\s*["']?\s* | @import\s+["']? )
    ([^"'\s)>]+)""")


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    data: bytes
    content_id: str = ""  # without angle brackets; inline images referenced as cid:...
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class MessageParts:
    headers: list[tuple[str, str]] = field(default_factory=list)
    subject: str = ""
    sender: str = ""  # the From header, decoded
    to: str = ""
    date: str = ""
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    raw: str = ""
    raw_truncated: bool = False
    problems: list[str] = field(default_factory=list)

    def by_content_id(self, content_id: str) -> Attachment | None:
        wanted = content_id.strip("<>").casefold()
        return next((a for a in self.attachments if a.content_id and a.content_id.casefold() == wanted), None)


def decode_header_value(value: str) -> str:
    """Encoded words decoded; undecodable bytes (8-bit headers arrive as surrogate escapes) read as UTF-8."""
    value = _repair_8bit(value)
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        return value


def _repair_8bit(text: str) -> str:
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Text of a part in its charset, else UTF-8, else Windows-1252 (8-bit mail without a charset); and the
    problem, if the declared charset did not work."""
    declared = charset or "us-ascii"
    for name in (declared, "utf-8", "cp1252"):
        try:
            text = data.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
        if name == declared or (name == "utf-8" and not charset):
            return text, None
        return text, f"not in its charset {charset!r}, read as {name.upper()}" if charset else None
    return data.decode("latin-1"), f"not in its charset {charset!r}, read as ISO-8859-1"


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    return decode_header_value(name) if name else ""


def parse_message(data: bytes) -> MessageParts:
    parts = MessageParts()
    parts.raw_truncated = len(data) > RAW_LIMIT
    parts.raw = data[:RAW_LIMIT].decode("utf-8", "replace")
    try:
        message = email.message_from_bytes(data, policy=email.policy.compat32)
    except Exception as error:
        parts.problems.append(f"the message could not be parsed: {error}")
        parts.text = parts.raw
        return parts
    for name, value in message.raw_items():  # raw: 8-bit bytes still there as surrogate escapes
        parts.headers.append((_repair_8bit(name), " ".join(decode_header_value(str(value)).split())))
    first = {name.casefold(): value for name, value in reversed(parts.headers)}
    parts.subject = first.get("subject", "")
    parts.sender = first.get("from", "")
    parts.to = first.get("to", "")
    parts.date = first.get("date", "")
    for defect in message.defects:
        parts.problems.append(_defect(defect))
    if not parts.headers:
        parts.problems.append("no header lines: this is not an RFC 5322 message")
    try:
        _walk(message, parts, message)
    except Exception as error:
        parts.problems.append(f"the MIME structure could not be read ({error}); the raw source is shown")
        parts.text = parts.raw
    if parts.text is None and parts.html is None and not parts.attachments:
        parts.text = ""
    return parts


def _defect(defect: object) -> str:
    text = type(defect).__name__
    detail = str(defect)
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", text.removesuffix("Defect")).lower()
    return f"MIME problem: {words}" + (f" ({detail})" if detail and detail != text else "")


def _walk(part: Message, parts: MessageParts, root: Message, depth: int = 0) -> None:
    """Body text and HTML (the first of each not marked as an attachment), everything else an attachment.

    An attached message (message/rfc822, a delivery-status report) is one attachment, not opened."""
    content_type = part.get_content_type()
    if part is not root:
        parts.problems.extend(_defect(d) for d in part.defects)
    if content_type.startswith("multipart/") and part.is_multipart() and depth < 50:
        for sub in part.get_payload():
            if isinstance(sub, Message):
                _walk(sub, parts, root, depth + 1)
        return
    disposition = (part.get("Content-Disposition") or "").split(";", 1)[0].strip().lower()
    name = _filename(part)
    content_id = str(part.get("Content-ID") or "").strip().strip("<>")
    # message/rfc822, message/delivery-status: their body as it is
    data = _body_bytes(part) if part.is_multipart() else _payload(part)
    if content_type in ("text/plain", "text/html") and disposition != "attachment" and not name:
        text, problem = _decode_bytes(data, part.get_content_charset())
        if problem:
            parts.problems.append(f"{content_type} part: {problem}")
        if content_type == "text/plain" and parts.text is None:
            if text.strip() or part is root:
                parts.text = text
            return
        if content_type == "text/html" and parts.html is None:
            parts.html = text
            return
    if not name:
        extension = {"text/plain": "txt", "text/html": "html", "message/rfc822": "eml",
                     "message/delivery-status": "txt", "text/rfc822-headers": "txt"}.get(
            content_type, content_type.rpartition("/")[2] or "bin")
        name = f"part{len(parts.attachments) + 1}.{extension}"
    parts.attachments.append(Attachment(name, content_type, data, content_id,
                                        inline=disposition == "inline" or bool(content_id)))


def _body_bytes(part: Message) -> bytes:
    try:
        raw = part.as_bytes()
    except Exception:
        return b""
    for separator in (b"\r\n\r\n", b"\n\n"):
        _, found, body = raw.partition(separator)
        if found:
            return body
    return raw


def remote_references(html: str) -> set[str]:
    """The resources (images, backgrounds, style sheets) the HTML would load from outside the message: anything
    but its own parts (cid:) and data: URLs — remote servers, and local files too."""
    return {ref for ref in RESOURCE_REFS.findall(html) if not ref.lower().startswith(("cid:", "data:"))}
