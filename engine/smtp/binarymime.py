"""RFC 3030 §3: a BINARYMIME message made fit for a hop without it (binary parts base64), or why it cannot be.

Only what must change changes: a part's body is re-encoded and its Content-Transfer-Encoding field rewritten;
every other header line, every boundary line, preamble and epilogue stays byte for byte. Parts are found with
the boundaries that the stdlib ``email`` package reads from each part's header fields; parsing is per part, on
bytes, so that a binary body is never decoded as text. A multipart/signed whose signed content would have to
change is refused: converting it would break its signature (RFC 3030 §3, RFC 1847).
"""

from __future__ import annotations

import re
from email import policy
from email.base64mime import body_encode
from email.message import Message
from email.parser import BytesHeaderParser

MAX_LINE = 998  # RFC 5321 §4.5.3.1.6: octets in a line, without its CRLF
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LONG_LINE = re.compile(rb"[^\r\n]{%d}" % (MAX_LINE + 1))
_CTE_FIELD = re.compile(rb"content-transfer-encoding[ \t]*:", re.IGNORECASE)
_PARSER = BytesHeaderParser(policy=policy.compat32)


class Unconvertible(ValueError):
    """The message needs a conversion that would damage it (the reason is for the sender's NDR)."""


def line_safe(body: bytes) -> bool:
    """Whether ``body`` can travel as 8bit: no NUL, CR and LF only as CRLF, no line longer than 998 octets."""
    if b"\0" in body:
        return False
    pairs = body.count(b"\r\n")
    return body.count(b"\r") == pairs == body.count(b"\n") and _LONG_LINE.search(body) is None


def convert(message: bytes) -> bytes:
    """``message`` (a BINARYMIME message, header and body) as a message that DATA can carry unchanged.

    Raises Unconvertible when the conversion would change a part that a multipart/signed signs.
    """
    converted = _entity(message, "text/plain")
    return converted if converted.endswith(b"\r\n") else converted + b"\r\n"


def _entity(entity: bytes, default_type: str) -> bytes:
    """One MIME entity (a message or a body part), converted."""
    head, blank, body = _split(entity)
    fields = _PARSER.parsebytes(head)
    if default_type != "text/plain":
        fields.set_default_type(default_type)
    ctype = fields.get_content_type()
    cte = str(fields.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte in ("base64", "quoted-printable"):
        return entity  # already encoded (a message/* or multipart so labelled is broken, and left as it is)
    boundary = fields.get_boundary() if ctype.startswith("multipart/") else None
    if boundary:
        new_body = _multipart(body, boundary.encode("utf-8", "surrogateescape"), ctype)
        return _relabelled(head, blank, new_body, cte)
    if ctype in ("message/rfc822", "message/global"):
        return _relabelled(head, blank, _entity(body, "text/plain"), cte)
    return _leaf(entity, head, blank, body, fields, cte)


def _split(entity: bytes) -> tuple[bytes, bytes, bytes]:
    """Header lines (each with its line end), the blank line, and the body."""
    if entity.startswith((b"\r\n", b"\n")):  # no header fields at all
        blank = entity[: 2 if entity.startswith(b"\r\n") else 1]
        return b"", blank, entity[len(blank):]
    match = _HEADER_END.search(entity)
    if match is None:
        return entity, b"", b""
    first_end = match.start() + (2 if entity[match.start():match.start() + 2] == b"\r\n" else 1)
    return entity[:first_end], entity[first_end:match.end()], entity[match.end():]


def _multipart(body: bytes, boundary: bytes, ctype: str) -> bytes:
    """The body of a multipart: its parts converted between the original delimiter lines."""
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    child_type = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
    out: list[bytes] = []
    position = 0
    inside = False  # between a delimiter and the next: a body part
    for match in delimiter.finditer(body):
        text = body[position:match.start()]
        out.append(_part(text, child_type, ctype) if inside else text)
        out.append(match.group(0))
        position = match.end()
        inside = match.group(1) is None
        if not inside:
            break
    rest = body[position:]
    out.append(_part(rest, child_type, ctype) if inside else rest)
    return b"".join(out)


def _part(part: bytes, child_type: str, parent: str) -> bytes:
    converted = _entity(part, child_type)
    if parent == "multipart/signed" and converted != part:
        raise Unconvertible("a signed part (multipart/signed) would have to be re-encoded, breaking its signature")
    return converted


def _leaf(entity: bytes, head: bytes, blank: bytes, body: bytes, fields: Message, cte: str) -> bytes:
    if cte not in ("binary", "", "7bit", "8bit") or (cte != "binary" and line_safe(body)):
        return entity  # an encoding we do not know is passed on as it is; a line-safe body needs nothing
    if fields.get_content_maintype() == "text" and line_safe(body):
        return _with_cte(head, _plain_label(body)) + blank + body  # binary in name only: a label suffices
    encoded = body_encode(body, maxlinelen=76, eol="\r\n").rstrip("\r\n").encode("ascii") if body else b""
    return _with_cte(head, b"base64") + (blank or b"\r\n") + encoded


def _relabelled(head: bytes, blank: bytes, body: bytes, cte: str) -> bytes:
    """A multipart or message/* entity around converted content: "binary" is no longer true of it."""
    if cte == "binary":
        head = _with_cte(head, _plain_label(body))
    return head + blank + body


def _plain_label(body: bytes) -> bytes:
    return b"7bit" if body.isascii() else b"8bit"


def _with_cte(head: bytes, value: bytes) -> bytes:
    """``head`` with its Content-Transfer-Encoding field (folded lines and all) replaced by ``value``."""
    line = b"Content-Transfer-Encoding: " + value + b"\r\n"
    out: list[bytes] = []
    placed = skipping = False
    for raw in head.splitlines(keepends=True):
        if raw[:1] in (b" ", b"\t") and skipping:
            continue  # a folded continuation of the field being replaced
        skipping = _CTE_FIELD.match(raw) is not None
        if skipping:
            if not placed:
                out.append(line)
                placed = True
            continue
        out.append(raw)
    if not placed:
        out.append(line)
    return b"".join(out)
