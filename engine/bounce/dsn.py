"""Delivery status notifications (RFC 3464): NDRs and delay notices as multipart/report, and the loop rules.

Pure: no I/O, the clock can be injected. The message is built with the stdlib ``email`` package:
``multipart/report; report-type=delivery-status`` holding a text/plain explanation (IIS wording),
a ``message/delivery-status`` part (one per-message block, one block per recipient), and the
original header section as ``text/rfc822-headers`` (RFC 3461 RET=HDRS, our default) or the whole
original as ``message/rfc822`` (RET=FULL). Envelope sender always ``<>``; lines end in CRLF.

Non-ASCII (SMTPUTF8) addresses: the message/delivery-status part stays 7-bit and valid for readers that
know only RFC 3464. An address that is not printable ASCII is written with the RFC 6533 ``utf-8``
address type in its escaped form (``utf-8; j\\x{F6}rg@example``); other non-ASCII field text
(diagnostics) is escaped the same way. The human part and a returned header section are UTF-8
(quoted-printable); a non-ASCII original sender makes the To header UTF-8 (RFC 6532), so such a DSN
must leave with SMTPUTF8, and a returned full message with 8-bit content needs 8BITMIME.

Loop rules: a message with the null sender never gets a DSN — when it fails it goes to Badmail
(``should_badmail``); the DSN itself is sent from ``<>``, so a failed DSN ends in Badmail too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.errors import NonASCIILocalPartDefect
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesHeaderParser
from email.utils import formatdate, make_msgid
from enum import StrEnum
from io import BytesIO
from typing import Literal

Kind = Literal["failure", "delay", "success", "relay"]
Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]


class Status(StrEnum):
    """RFC 3463 enhanced status codes the engine reports (``temporary``/``permanent`` switch the class)."""

    DELIVERED = "2.0.0"
    OTHER_TEMPORARY = "4.0.0"
    OTHER_PERMANENT = "5.0.0"
    UNKNOWN_USER = "5.1.1"
    BAD_DESTINATION_SYSTEM = "5.1.2"  # NXDOMAIN
    NULL_MX = "5.1.10"  # RFC 7505
    MAILBOX_FULL = "4.2.2"
    LOCAL_ERROR = "4.3.0"  # e.g. the Drop directory cannot be written
    MESSAGE_TOO_BIG = "5.3.4"
    NO_ANSWER = "4.4.1"  # no answer from host
    BAD_CONNECTION = "4.4.2"
    DNS_FAILURE = "4.4.3"  # SERVFAIL, DNS time-out
    EXPIRED = "4.4.7"  # delivery time expired; an NDR carries it with Action: failed, as Postfix does
    ROUTING_LOOP = "5.4.6"  # hop count exceeded
    TLS_UNAVAILABLE = "4.7.4"  # TLS required, not offered; 5.7.4 once final


ACTION_CLASSES: dict[str, str] = {  # which status classes each Action may carry
    "failed": "45",  # 4 only for an expired message (4.4.7, or the last temporary status)
    "delayed": "4",
    "delivered": "2",
    "relayed": "2",
    "expanded": "2",
}

ACTION_TEXT: dict[str, str] = {  # the human part, one paragraph per action present (IIS wording style)
    "failed": "Delivery to the following recipients failed.",
    "delayed": "Delivery to the following recipients has been delayed.",
    "delivered": "Delivery to the following recipients succeeded.",
    "relayed": "The following recipients were relayed to a system that may not send delivery notifications.",
    "expanded": "Delivery to the following recipients was expanded to further addresses.",
}

SUBJECTS: dict[str, str] = {
    "failure": "Delivery Status Notification (Failure)",
    "delay": "Delivery Status Notification (Delay)",
    "success": "Delivery Status Notification (Success)",
    "relay": "Delivery Status Notification (Relay)",
}

NOTIFY_FOR_ACTION: dict[str, str] = {  # RFC 3461 NOTIFY keyword that asks for each action
    "failed": "FAILURE",
    "delayed": "DELAY",
    "delivered": "SUCCESS",
    "relayed": "SUCCESS",
    "expanded": "SUCCESS",
}

REPLY_STATUS: dict[int, str] = {  # RFC 3463 status for a reply that carried none; others: class.0.0
    421: "4.3.2",
    450: "4.2.0",
    451: "4.3.0",
    452: "4.3.1",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    521: "5.3.2",  # RFC 7504: host does not accept mail
    550: "5.0.0",
    551: "5.1.6",
    552: "5.2.2",
    553: "5.1.0",
    554: "5.0.0",
    555: "5.5.4",
    556: "5.1.10",  # RFC 7504/7505: domain does not accept mail
}

BADMAIL_REASONS: dict[str, str] = {
    "ndr_of_dsn": "This message is a delivery status notification that cannot be delivered.",
    "null_sender": "This message has a null sender (<>) and cannot be delivered; no NDR is sent for it.",
    "no_recipients": "This message has no valid recipients.",
}

INTRO = "This is an automatically generated Delivery Status Notification."
DELAY_WARNING = ("THIS IS A WARNING MESSAGE ONLY.", "YOU DO NOT NEED TO RESEND YOUR MESSAGE.")

_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")
_LEADING_STATUS = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?=\s|\Z)")
_DIAGNOSTIC_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*;")
_MSG_ID = re.compile(rb"^message-id:[ \t]*(<[!-;=?-~]+@[!-;=?-~]+>)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_FIELD_LIMIT = 900  # field text; keeps every line under RFC 5322's 998 even unfolded
_FOLD_AT = 78

# Parts are laid out with the usual 78 columns (long text lines become quoted-printable) and 7-bit
# transfer encodings; the whole is written with a 998 limit because the email package would turn an
# unbreakable token longer than 78 into RFC 2047 encoded words, which have no place in a delivery-status
# field. The delivery-status fields are folded here instead (see _folded).
_PARTS = policy.SMTP.clone(cte_type="7bit")
_WRITE = policy.SMTP.clone(max_line_length=998)
_WRITE_UTF8 = policy.SMTPUTF8.clone(max_line_length=998)


def temporary(status: str) -> str:
    return "4" + status[1:]


def permanent(status: str) -> str:
    return "5" + status[1:]


def expired_status(last_status: str) -> str:
    """The Status of an NDR sent at expiry: 4.4.7, except that a security cause (TLS required) stays 5.7.x."""
    if _STATUS.match(last_status) and last_status.split(".")[1] == "7":
        return permanent(last_status)
    return Status.EXPIRED.value


def split_enhanced(text: str) -> tuple[str | None, str]:
    """An enhanced status code at the start of a reply text, and the rest of the text."""
    match = _LEADING_STATUS.match(text)
    if match is None:
        return None, text.strip()
    return ".".join(match.groups()), text[match.end():].strip()


def enhanced_status(code: int, text: str) -> str:
    """The reply's own enhanced code when its class matches the reply code (RFC 3463), else the table."""
    klass = code // 100
    if klass not in (2, 4, 5):  # a 1xx/3xx where a final reply was due: a protocol error
        return "5.5.0"
    found, _ = split_enhanced(text)
    if found is not None and found[0] == str(klass):
        return found
    return REPLY_STATUS.get(code, f"{klass}.0.0")


def smtp_diagnostic(code: int, text: str | Sequence[str]) -> str:
    """A Diagnostic-Code value from a remote reply: ``smtp; 550 5.1.1 User unknown`` (lines joined)."""
    lines = [text] if isinstance(text, str) else list(text)
    joined = " ".join(" ".join(line.split()) for line in lines).strip()
    return f"smtp; {code} {joined}".rstrip()


def wants_notice(notify: str, action: str) -> bool:
    """RFC 3461 NOTIFY: empty means the default (failure and delay notices), NEVER means none."""
    keywords = {word.strip().upper() for word in notify.split(",") if word.strip()}
    if not keywords:
        return action in ("failed", "delayed")
    return "NEVER" not in keywords and NOTIFY_FOR_ACTION[action] in keywords


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a DSN (RFC 3464 §2.3)."""

    final_recipient: str
    action: Action
    status: str  # enhanced code, e.g. "5.1.1"
    diagnostic: str = ""  # "smtp; 550 5.1.1 User unknown"; a bare reply gets "smtp; ", other text "X-smtpsvc; "
    original_recipient: str | None = None  # ORCPT as received ("rfc822;a+2Bb@example") or a bare address
    remote_mta: str | None = None  # host name of the server that answered
    last_attempt: float | None = None
    will_retry_until: float | None = None  # for "delayed" only

    def __post_init__(self) -> None:
        if not self.final_recipient:
            raise ValueError("a recipient block needs the final recipient")
        if self.action not in ACTION_CLASSES:
            raise ValueError(f"unknown DSN action {self.action!r}")
        if not _STATUS.match(self.status) or self.status[0] not in ACTION_CLASSES[self.action]:
            raise ValueError(f"status {self.status!r} does not fit action {self.action!r}")


def should_badmail(original_sender: str) -> bool:
    """The null sender never gets a DSN: an undeliverable message from ``<>`` goes to Badmail."""
    return original_sender.strip() in ("", "<>")


def is_dsn(headers: bytes) -> bool:
    """Whether a header section is that of a delivery status notification (RFC 3464 / RFC 6533)."""
    message = BytesHeaderParser(policy=policy.compat32).parsebytes(header_section(headers))
    if message.get_content_type() != "multipart/report":
        return False
    report_type = message.get_param("report-type")
    return isinstance(report_type, str) and report_type.lower() in ("delivery-status", "global-delivery-status")


def badmail_cause(headers: bytes) -> str:
    """The BADMAIL_REASONS key for a failed message from the null sender."""
    return "ndr_of_dsn" if is_dsn(headers) else "null_sender"


def badmail_reason(cause: str, recipients: Sequence[RecipientStatus | tuple[str, str]] = ()) -> str:
    """The text of a .BDR: the IIS sentence for the cause (a BADMAIL_REASONS key, or own text), then each
    recipient with its last error — given as RecipientStatus or as (address, error) pairs."""
    lines = [BADMAIL_REASONS.get(cause, cause)]
    pairs = [(r.final_recipient, r.diagnostic or r.status) if isinstance(r, RecipientStatus) else r
             for r in recipients]
    if pairs:
        lines.append("The message was intended for the following recipients:")
        lines += [f"    {_printable(address)}: {_printable(error) or 'unknown error'}" for address, error in pairs]
    return "\n".join(lines) + "\n"


def header_section(message: bytes) -> bytes:
    """The header section of a message (without the empty line); all of it when there is no body."""
    if message.startswith((b"\r\n", b"\n")):
        return b""
    ends = [i for i in (message.find(b"\r\n\r\n"), message.find(b"\n\n")) if i >= 0]
    if not ends:
        return message
    end = min(ends)
    return message[: end + (2 if message.startswith(b"\r\n", end) else 1)]


def build_dsn(
    *,
    kind: Kind,
    reporting_mta: str,
    original_sender: str,
    original_headers: bytes,
    original_message: bytes | None,
    recipients: Sequence[RecipientStatus],
    arrival: float,
    envid: str | None,
    postmaster: str,
    ndr_copy_to: str = "",
    now: float | None = None,
) -> tuple[str, tuple[str, ...], bytes]:
    """A DSN for ``original_sender``: (envelope sender "", envelope recipients, message bytes).

    ``original_message`` is returned whole (RET=FULL) when given, else ``original_headers``; the copy
    to ``ndr_copy_to`` goes with NDRs only (IIS: "Send copy of Non-Delivery Report to"). Raises
    ValueError for the null sender (Badmail instead) and for addresses that are no valid addr-spec.
    """
    if should_badmail(original_sender):
        raise ValueError("no DSN goes to the null sender: the message belongs in Badmail")
    if not recipients:
        raise ValueError("a DSN needs at least one recipient block")
    if kind not in SUBJECTS:
        raise ValueError(f"unknown DSN kind {kind!r}")
    when = time.time() if now is None else now
    outer = EmailMessage(policy=_PARTS)
    outer["From"] = _address(postmaster, "Mail Delivery Subsystem")
    outer["To"] = _address(original_sender)
    outer["Subject"] = SUBJECTS[kind]
    outer["Date"] = formatdate(when, localtime=True)
    outer["Message-ID"] = make_msgid(domain=_host(reporting_mta))
    found = _MSG_ID.search(original_headers)
    if found is not None:  # RFC 3834 §3.1.5: the notice threads with the message it reports on
        outer["In-Reply-To"] = found.group(1).decode("ascii")
        outer["References"] = found.group(1).decode("ascii")
    outer["Auto-Submitted"] = "auto-replied"
    outer["MIME-Version"] = "1.0"
    outer["Content-Type"] = "multipart/report; report-type=delivery-status"
    parts: list[Message[str, str] | str] = [_human_part(kind, recipients),
                                            _status_part(reporting_mta, arrival, envid, recipients)]
    returned = _returned_part(original_headers, original_message)
    if returned is not None:
        parts.append(returned)
    outer.set_payload(parts)
    utf8 = not (original_sender.isascii() and postmaster.isascii())
    out = BytesIO()
    _Writer(out, policy=_WRITE_UTF8 if utf8 else _WRITE).flatten(outer)
    data = out.getvalue()
    rcpts = [original_sender]
    if kind == "failure" and ndr_copy_to and ndr_copy_to.lower() != original_sender.lower():
        rcpts.append(ndr_copy_to)
    return "", tuple(rcpts), data


class _Writer(BytesGenerator):
    """The stdlib writer, except that a message/rfc822 part kept as text goes out byte for byte.

    A returned original is stored undecoded (8-bit bytes as surrogate escapes) so that it is not
    re-folded or re-encoded; the stock BytesGenerator encodes such a payload as strict ASCII.
    """

    def _encode(self, s: str) -> bytes:
        return s.encode("ascii", "surrogateescape")


def _address(addr_spec: str, display_name: str = "") -> Address:
    try:
        return Address(display_name, addr_spec=addr_spec)
    except NonASCIILocalPartDefect:  # an SMTPUTF8 mailbox: valid in an RFC 6532 header
        local, _, domain = addr_spec.rpartition("@")
        return Address(display_name, local, domain)


def _human_part(kind: str, recipients: Sequence[RecipientStatus]) -> MIMEPart:
    lines = [INTRO, ""]
    if kind == "delay":
        lines += [DELAY_WARNING[0], "", DELAY_WARNING[1], ""]
    for action, heading in ACTION_TEXT.items():
        group = [r for r in recipients if r.action == action]
        if not group:
            continue
        lines += [heading, ""]
        for r in group:
            lines.append(f"       {_printable(r.final_recipient)}")
            reason = _printable(_DIAGNOSTIC_TYPE.sub("", r.diagnostic, count=1).strip())
            lines.append(f"           {reason or r.status}")
            if r.action == "delayed" and r.will_retry_until is not None:
                lines.append(f"           Will keep trying until {formatdate(r.will_retry_until, localtime=True)}")
        lines.append("")
    part = MIMEPart(policy=_PARTS)
    part.set_content("\n".join(lines))
    return part


def _status_part(reporting_mta: str, arrival: float, envid: str | None,
                 recipients: Sequence[RecipientStatus]) -> MIMEPart:
    head = [("Reporting-MTA", f"dns; {_host(reporting_mta)}")]
    if envid:
        head.append(("Original-Envelope-Id", _xtext_decode(envid)))
    head.append(("Arrival-Date", formatdate(arrival, localtime=True)))
    blocks: list[Message[str, str] | str] = [_block(head)]
    for r in recipients:
        fields: list[tuple[str, str]] = []
        if r.original_recipient:
            fields.append(("Original-Recipient", _orcpt_field(r.original_recipient)))
        fields += [("Final-Recipient", address_field(r.final_recipient)), ("Action", r.action), ("Status", r.status)]
        if r.remote_mta:
            fields.append(("Remote-MTA", f"dns; {_host(r.remote_mta)}"))
        if r.diagnostic.strip():
            fields.append(("Diagnostic-Code", _diagnostic_field(r.diagnostic)))
        if r.last_attempt is not None:
            fields.append(("Last-Attempt-Date", formatdate(r.last_attempt, localtime=True)))
        if r.action == "delayed" and r.will_retry_until is not None:
            fields.append(("Will-Retry-Until", formatdate(r.will_retry_until, localtime=True)))
        blocks.append(_block(fields))
    part = MIMEPart(policy=_PARTS)
    part["Content-Type"] = "message/delivery-status"
    part.set_payload(blocks)
    return part


def _block(fields: list[tuple[str, str]]) -> Message:
    # compat32 blocks keep the values exactly as given (no RFC 2047 parsing or encoding on the way out).
    block = Message(policy=policy.compat32)
    for name, value in fields:
        block[name] = _folded(name, value)
    return block


def _returned_part(headers: bytes, message: bytes | None) -> MIMEPart | None:
    part = MIMEPart(policy=_PARTS)
    if message is not None:
        part["Content-Type"] = "message/rfc822"
        body = _crlf(message)
        if not body.isascii():
            part["Content-Transfer-Encoding"] = "8bit"  # RFC 2046 §5.2.1: no other encoding for message/rfc822
        part.set_payload(body.decode("ascii", errors="surrogateescape"))  # written back byte for byte
        return part
    section = header_section(headers)
    if not section.strip():
        return None
    if section.isascii() and max(len(line) for line in section.splitlines()) <= 998:
        part.set_content(section, "text", "rfc822-headers", cte="7bit")
    else:  # RFC 6532 headers (or junk): readable UTF-8, 7-bit on the wire
        part.set_content(section.decode("utf-8", errors="replace"), subtype="rfc822-headers",
                         cte="quoted-printable")
    return part


def address_field(address: str) -> str:
    """``rfc822; addr`` for a printable ASCII address, else the RFC 6533 ``utf-8`` type, escaped."""
    if _is_printable_ascii(address):
        return f"rfc822; {address}"
    return f"utf-8; {_utf8_xtext(address)}"


def _orcpt_field(orcpt: str) -> str:
    addr_type, semicolon, value = orcpt.partition(";")
    if not semicolon:
        return address_field(orcpt)
    addr_type, value = addr_type.strip(), value.strip()
    if addr_type.lower() != "utf-8":  # RFC 3461 §4.2: the DSN carries the ORCPT decoded from xtext
        value = _xtext_decode(value)
    if _is_printable_ascii(value) and _is_printable_ascii(addr_type):
        return f"{addr_type}; {value}"
    return f"utf-8; {_utf8_xtext(value)}"


def _diagnostic_field(diagnostic: str) -> str:
    text = _clean(diagnostic)
    if _DIAGNOSTIC_TYPE.match(text):
        diagnostic_type, _, rest = text.partition(";")
        return f"{diagnostic_type}; {rest.strip()}"
    if re.match(r"\d{3}\b", text):
        return f"smtp; {text}"
    return f"X-smtpsvc; {text}"


def _xtext_decode(text: str) -> str:
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _utf8_xtext(text: str) -> str:
    # RFC 6533 utf-8-addr-xtext: printable ASCII except "+", "=", "\" as is, everything else \x{HEX}.
    return "".join(ch if "!" <= ch <= "~" and ch not in "+=\\" else f"\\x{{{ord(ch):02X}}}" for ch in text)


def _is_printable_ascii(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


def _printable(text: str) -> str:
    """One line of human text: line breaks and other controls become spaces."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _clean(text: str) -> str:
    """One line of 7-bit field text: each line break or control is a space, non-ASCII \\x{HEX}, long text cut."""
    flat = "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text.replace("\r\n", " ")).strip()
    escaped = "".join(ch if ch.isascii() else f"\\x{{{ord(ch):02X}}}" for ch in flat)
    return escaped if len(escaped) <= _FIELD_LIMIT else escaped[: _FIELD_LIMIT - 3] + "..."


def _host(name: str) -> str:
    """An MTA name for a ``dns;`` field and a Message-ID: IDNA for a non-ASCII name."""
    cleaned = _clean(name.strip().rstrip("."))
    if name.isascii():
        return cleaned.replace(" ", "") or "localhost"
    try:
        return name.strip().rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        return cleaned.replace(" ", "") or "localhost"


def _folded(name: str, value: str) -> str:
    """RFC 5322 folding before a space, within 78 columns where words allow; LF marks a fold for the writer.

    Unfolding (removing the line breaks) gives the cleaned value back exactly, runs of spaces included.
    """
    words = _clean(value).split(" ")
    lines: list[str] = []
    line, width = words[0], _FOLD_AT - len(name) - 2
    for word in words[1:]:
        if len(line) + 1 + len(word) > width and line.strip():
            lines.append(line)
            line, width = " " + word, _FOLD_AT
        else:
            line = f"{line} {word}"
    lines.append(line)
    return "\n".join(lines)


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)
