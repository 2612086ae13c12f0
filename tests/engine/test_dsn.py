"""Delivery status notifications: built, parsed back with the email package, every field checked."""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.bounce.dsn import (
    RecipientStatus,
    Status,
    address_field,
    badmail_cause,
    badmail_reason,
    build_dsn,
    enhanced_status,
    expired_status,
    header_section,
    is_dsn,
    permanent,
    should_badmail,
    smtp_diagnostic,
    split_enhanced,
    temporary,
    wants_notice,
)

NOW = 1_800_000_000.0
ARRIVED = NOW - 2 * 86400
HEADERS = (b"From: Alice <alice@example.test>\r\nTo: bob@remote.test, carol@remote.test\r\n"
           b"Subject: quarterly figures\r\nMessage-ID: <m1@example.test>\r\n")
ORIGINAL = HEADERS + b"\r\nHello Bob,\r\n\r\nthe figures.\r\n"
BOB = RecipientStatus("bob@remote.test", "failed", "5.1.1", "smtp; 550 5.1.1 <bob@remote.test>: User unknown",
                      original_recipient="rfc822;bob+2Bsales@remote.test", remote_mta="mx1.remote.test",
                      last_attempt=NOW - 60)
CAROL = RecipientStatus("carol@remote.test", "failed", "4.4.7", "smtp; 421 4.4.2 mx2.remote.test timed out",
                        remote_mta="mx2.remote.test", last_attempt=NOW - 30)


def build(**overrides: object) -> tuple[str, tuple[str, ...], bytes]:
    args: dict[str, object] = {
        "kind": "failure", "reporting_mta": "mail.example.test", "original_sender": "alice@example.test",
        "original_headers": HEADERS, "original_message": None, "recipients": [BOB, CAROL], "arrival": ARRIVED,
        "envid": None, "postmaster": "postmaster@mail.example.test", "now": NOW,
    }
    args.update(overrides)
    return build_dsn(**args)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> list[EmailMessage]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, EmailMessage)]


def blocks(message: EmailMessage) -> list[dict[str, str]]:
    """The delivery-status blocks as plain dicts (the email package parses each block as a header set)."""
    status = parts(message)[1]
    assert status.get_content_type() == "message/delivery-status"
    found = status.get_payload()
    assert isinstance(found, list)
    return [{name: str(value) for name, value in block.items()} for block in found if isinstance(block, Message)]


def raw_blocks(data: bytes) -> list[dict[str, str]]:
    """The blocks with values exactly as written (compat32: no RFC 2047 decoding), unfolded."""
    payload = email.message_from_bytes(data, policy=policy.compat32).get_payload()
    assert isinstance(payload, list) and isinstance(payload[1], Message)
    found = payload[1].get_payload()
    assert isinstance(found, list)
    return [{name: re.sub(r"\r?\n", "", value) for name, value in block.items()}
            for block in found if isinstance(block, Message)]


def text(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def crlf_only(data: bytes) -> bool:
    rest = data.replace(b"\r\n", b"")
    return b"\r" not in rest and b"\n" not in rest


def timestamp(value: str) -> float:
    return parsedate_to_datetime(value).timestamp()


def test_ndr_every_field() -> None:
    sender, rcpts, data = build()
    assert (sender, rcpts) == ("", ("alice@example.test",))
    assert crlf_only(data)
    m = parse(data)
    assert m["From"].addresses[0].display_name == "Mail Delivery Subsystem"
    assert m["From"].addresses[0].addr_spec == "postmaster@mail.example.test"
    assert m["To"].addresses[0].addr_spec == "alice@example.test"
    assert m["Subject"] == "Delivery Status Notification (Failure)"
    assert m["Auto-Submitted"] == "auto-replied"
    assert m["MIME-Version"] == "1.0"
    assert timestamp(m["Date"]) == NOW
    assert re.fullmatch(r"<[^<>@]+@mail\.example\.test>", m["Message-ID"])
    assert m["In-Reply-To"] == m["References"] == "<m1@example.test>"
    assert m.get_content_type() == "multipart/report"
    assert m["Content-Type"].params["report-type"] == "delivery-status"
    assert [p.get_content_type() for p in parts(m)] == ["text/plain", "message/delivery-status",
                                                         "text/rfc822-headers"]

    human = text(parts(m)[0])
    assert human.startswith("This is an automatically generated Delivery Status Notification.\n")
    assert "Delivery to the following recipients failed." in human
    assert "bob@remote.test\n           550 5.1.1 <bob@remote.test>: User unknown" in human
    assert "carol@remote.test\n           421 4.4.2 mx2.remote.test timed out" in human
    assert "WARNING" not in human

    head, bob, carol = blocks(m)
    assert set(head) == {"Reporting-MTA", "Arrival-Date"}
    assert head["Reporting-MTA"] == "dns; mail.example.test"
    assert timestamp(head["Arrival-Date"]) == ARRIVED
    assert list(bob) == ["Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-MTA",
                         "Diagnostic-Code", "Last-Attempt-Date"]
    assert bob["Original-Recipient"] == "rfc822; bob+sales@remote.test"  # decoded from xtext (RFC 3461 §4.2)
    assert bob["Final-Recipient"] == "rfc822; bob@remote.test"
    assert (bob["Action"], bob["Status"]) == ("failed", "5.1.1")
    assert bob["Remote-MTA"] == "dns; mx1.remote.test"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: User unknown"
    assert timestamp(bob["Last-Attempt-Date"]) == NOW - 60
    assert "Original-Recipient" not in carol and "Will-Retry-Until" not in carol
    assert (carol["Action"], carol["Status"]) == ("failed", "4.4.7")  # expired: failed, 4.4.7 as Postfix does
    assert carol["Diagnostic-Code"] == "smtp; 421 4.4.2 mx2.remote.test timed out"

    returned = parts(m)[2]
    assert text(returned) == HEADERS.decode().replace("\r\n", "\n")
    assert is_dsn(data) and is_dsn(header_section(data))


def test_delay_notice_every_field() -> None:
    late = RecipientStatus("bob@remote.test", "delayed", "4.4.1", "smtp; 421 4.4.1 try later",
                           remote_mta="mx1.remote.test", last_attempt=NOW - 60, will_retry_until=NOW + 86400)
    sender, rcpts, data = build(kind="delay", recipients=[late], envid="Q+2B42", ndr_copy_to="admin@example.test")
    assert (sender, rcpts) == ("", ("alice@example.test",))  # the NDR copy is for NDRs only
    assert crlf_only(data)
    m = parse(data)
    assert m["Subject"] == "Delivery Status Notification (Delay)"
    human = text(parts(m)[0])
    assert "THIS IS A WARNING MESSAGE ONLY.\n\nYOU DO NOT NEED TO RESEND YOUR MESSAGE." in human
    assert "Delivery to the following recipients has been delayed." in human
    assert "Will keep trying until" in human
    head, block = blocks(m)
    assert head["Original-Envelope-Id"] == "Q+42"
    assert list(block) == ["Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code",
                           "Last-Attempt-Date", "Will-Retry-Until"]
    assert (block["Action"], block["Status"]) == ("delayed", "4.4.1")
    assert timestamp(block["Will-Retry-Until"]) == NOW + 86400


def test_ndr_copy_to() -> None:
    assert build(ndr_copy_to="admin@example.test")[1] == ("alice@example.test", "admin@example.test")
    assert build(ndr_copy_to="ALICE@example.test")[1] == ("alice@example.test",)  # not twice to one mailbox
    assert build(ndr_copy_to="")[1] == ("alice@example.test",)


def test_full_return() -> None:
    _, _, data = build(original_message=ORIGINAL)
    assert crlf_only(data)
    m = parse(data)
    returned = parts(m)[2]
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload(0)
    assert isinstance(inner, Message)
    assert inner["Subject"] == "quarterly figures"
    assert inner.get_payload() == "Hello Bob,\r\n\r\nthe figures.\r\n"
    assert ORIGINAL in data


def test_full_return_8bit_and_bare_newlines() -> None:
    original = b"Subject: caf\xc3\xa9\nFrom: a@example.test\n\nna\xefve bytes\n\xff\rend\n"
    _, _, data = build(original_message=original)
    assert crlf_only(data)
    expected = b"Subject: caf\xc3\xa9\r\nFrom: a@example.test\r\n\r\nna\xefve bytes\r\n\xff\r\nend\r\n"
    assert expected in data  # byte for byte, line ends made CRLF
    returned = parts(parse(data))[2]
    assert returned.get_content_type() == "message/rfc822"
    assert returned["Content-Transfer-Encoding"] == "8bit"


def test_headers_only_with_non_ascii_headers() -> None:
    headers = "Subject: Grüße\r\nFrom: jörg@bücher.test\r\n".encode()
    _, _, data = build(original_headers=headers)
    assert data.isascii()  # quoted-printable: the DSN stays 7-bit
    returned = parts(parse(data))[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert returned.get_content_charset() == "utf-8"
    assert text(returned) == "Subject: Grüße\nFrom: jörg@bücher.test\n"


def test_no_returned_part_without_headers() -> None:
    m = parse(build(original_headers=b"")[2])
    assert len(parts(m)) == 2
    assert "In-Reply-To" not in m


def test_non_ascii_addresses() -> None:
    jorg = RecipientStatus("jörg@bücher.test", "failed", "5.1.1", "smtp; 550 5.1.1 unbekannt: jörg",
                           original_recipient="utf-8;j\\x{F6}rg@b\\x{FC}cher.test")
    _, rcpts, data = build(original_sender="zoë@example.test", recipients=[jorg])
    assert rcpts == ("zoë@example.test",)
    assert "To: zoë@example.test\r\n".encode() in data  # RFC 6532 header: the DSN needs SMTPUTF8
    m = parse(data)
    to = m["To"].addresses[0].addr_spec  # the stdlib parser keeps 8-bit header bytes as surrogate escapes
    assert to.encode("ascii", "surrogateescape").decode() == "zoë@example.test"
    status = parts(m)[1].as_bytes()
    assert status.isascii()  # message/delivery-status stays 7-bit (RFC 6533 utf-8 address type)
    _, block = blocks(m)
    assert block["Final-Recipient"] == "utf-8; j\\x{F6}rg@b\\x{FC}cher.test"
    assert block["Original-Recipient"] == "utf-8; j\\x{F6}rg@b\\x{FC}cher.test"
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.1 unbekannt: j\\x{F6}rg"
    human = text(parts(m)[0])
    assert "jörg@bücher.test" in human and "unbekannt: jörg" in human


@pytest.mark.parametrize(("orcpt", "field"), [
    ("rfc822;a+2Bb@example.test", "rfc822; a+b@example.test"),
    ("RFC822; plain@example.test", "RFC822; plain@example.test"),
    ("bare@example.test", "rfc822; bare@example.test"),
    ("rfc822;j+C3+B6rg@example.test", "utf-8; j\\x{C3}\\x{B6}rg@example.test"),  # xtext of raw bytes
    ("x400;C=US;A=foo", "x400; C=US;A=foo"),
])
def test_original_recipient_field(orcpt: str, field: str) -> None:
    rcpt = RecipientStatus("a@example.test", "failed", "5.0.0", original_recipient=orcpt)
    assert blocks(parse(build(recipients=[rcpt])[2]))[1]["Original-Recipient"] == field


def test_diagnostic_types_and_folding() -> None:
    long_reply = "smtp; 550 5.7.1 " + " ".join(["Message rejected as spam by content filtering."] * 6)
    token = "x" * 200
    rcpts = [
        RecipientStatus("a@example.test", "failed", "5.7.1", long_reply),
        RecipientStatus("b@example.test", "failed", "5.1.2", "Host or domain name not found"),
        RecipientStatus("c@example.test", "failed", "5.0.0", "554 no"),
        RecipientStatus("d@example.test", "failed", "5.0.0", f"smtp; 550 {token}"),
        RecipientStatus("e@example.test", "failed", "5.0.0", "smtp; 550-first line\r\n550 second line"),
        RecipientStatus("f@example.test", "failed", "5.0.0", ""),
    ]
    _, _, data = build(recipients=rcpts)
    status_part = data[data.index(b"Reporting-MTA"):data.index(b"text/rfc822-headers")]
    lines = status_part.split(b"\r\n")
    assert all(len(line) <= 78 for line in lines if token.encode() not in line)
    assert b"=?" not in status_part  # never RFC 2047 inside delivery-status fields
    got = [block.get("Diagnostic-Code") for block in raw_blocks(data)[1:]]
    assert got == [long_reply, "X-smtpsvc; Host or domain name not found", "smtp; 554 no", f"smtp; 550 {token}",
                   "smtp; 550-first line 550 second line", None]
    assert [block.get("Diagnostic-Code") for block in blocks(parse(data))[1:]] == got  # policy.default agrees


def test_success_and_relay_kinds() -> None:
    done = RecipientStatus("bob@remote.test", "delivered", "2.0.0", "smtp; 250 2.0.0 queued as 1234")
    relayed = RecipientStatus("carol@remote.test", "relayed", "2.0.0")
    _, rcpts, data = build(kind="success", recipients=[done, relayed], ndr_copy_to="admin@example.test")
    assert rcpts == ("alice@example.test",)
    m = parse(data)
    assert m["Subject"] == "Delivery Status Notification (Success)"
    human = text(parts(m)[0])
    assert "Delivery to the following recipients succeeded." in human
    assert "relayed to a system that may not send delivery notifications" in human
    assert [b.get("Action") for b in blocks(m)] == [None, "delivered", "relayed"]
    assert parse(build(kind="relay", recipients=[relayed])[2])["Subject"] == "Delivery Status Notification (Relay)"


@pytest.mark.parametrize("sender", ["", "<>", " <> "])
def test_null_sender_never_gets_a_dsn(sender: str) -> None:
    assert should_badmail(sender)
    with pytest.raises(ValueError, match="Badmail"):
        build(original_sender=sender)


def test_other_refusals() -> None:
    assert not should_badmail("alice@example.test")
    with pytest.raises(ValueError, match="kind"):
        build(kind="bounce")
    with pytest.raises(ValueError, match="recipient"):
        build(recipients=[])
    with pytest.raises(ValueError):
        build(original_sender="not an address")


@pytest.mark.parametrize(("action", "status"), [
    ("failed", "2.0.0"), ("delayed", "5.1.1"), ("delivered", "4.0.0"), ("bounced", "5.0.0"),
    ("failed", "5.1"), ("failed", "6.0.0"), ("failed", "5.1.1 "),
])
def test_recipient_status_is_checked(action: str, status: str) -> None:
    with pytest.raises(ValueError):
        RecipientStatus("a@example.test", action, status)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="final recipient"):
        RecipientStatus("", "failed", "5.0.0")


def test_is_dsn() -> None:
    assert is_dsn(b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n")
    assert is_dsn(b"Content-Type: Multipart/Report;\r\n report-type=\"Global-Delivery-Status\"; boundary=x\r\n\r\nb")
    assert not is_dsn(b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n")
    assert not is_dsn(b"Content-Type: text/plain\r\n\r\nContent-Type: multipart/report; report-type=delivery-status")
    assert not is_dsn(HEADERS)
    assert not is_dsn(b"")
    assert not is_dsn(b"\xff\xfe garbage \x00\r\n")


def test_badmail_reason_and_cause() -> None:
    _, _, ndr = build()
    assert badmail_cause(ndr) == "ndr_of_dsn"
    assert badmail_cause(ORIGINAL) == "null_sender"
    text = badmail_reason("ndr_of_dsn", [BOB])
    assert text.splitlines() == [
        "This message is a delivery status notification that cannot be delivered.",
        "The message was intended for the following recipients:",
        "    bob@remote.test: smtp; 550 5.1.1 <bob@remote.test>: User unknown",
    ]
    assert badmail_reason("no_recipients") == "This message has no valid recipients.\n"
    assert badmail_reason("null_sender", [("bob@remote.test", "smtp; 550 no\r\nsuch user"), ("c@r.test", "")]) == (
        "This message has a null sender (<>) and cannot be delivered; no NDR is sent for it.\n"
        "The message was intended for the following recipients:\n"
        "    bob@remote.test: smtp; 550 no such user\n"
        "    c@r.test: unknown error\n")


def test_header_section() -> None:
    assert header_section(ORIGINAL) == HEADERS
    assert header_section(b"A: 1\nB: 2\n\nbody\r\n\r\n") == b"A: 1\nB: 2\n"
    assert header_section(b"A: 1\r\n") == b"A: 1\r\n"
    assert header_section(b"\r\nbody") == b""


@pytest.mark.parametrize(("code", "text", "status"), [
    (550, "5.1.1 <bob@remote.test>: User unknown", "5.1.1"),
    (550, "User unknown", "5.0.0"),
    (550, "5.1.10 Recipient address has null MX", "5.1.10"),
    (451, "5.1.1 class mismatch, ignored", "4.3.0"),  # RFC 3463: the class must match the reply
    (421, "mx.remote.test closing", "4.3.2"),
    (450, "", "4.2.0"),
    (452, "Insufficient system storage", "4.3.1"),
    (552, "Mailbox full", "5.2.2"),
    (553, "Mailbox name not allowed", "5.1.0"),
    (554, "Transaction failed", "5.0.0"),
    (556, "Domain does not accept mail", "5.1.10"),
    (521, "", "5.3.2"),
    (499, "odd", "4.0.0"),
    (599, "odd", "5.0.0"),
    (250, "2.6.0 Queued", "2.6.0"),
    (251, "forwarded", "2.0.0"),
    (354, "go ahead", "5.5.0"),
    (550, "5.1.1x not a code", "5.0.0"),
])
def test_enhanced_status(code: int, text: str, status: str) -> None:
    assert enhanced_status(code, text) == status


def test_status_helpers() -> None:
    assert split_enhanced(" 4.4.1  no answer ") == ("4.4.1", "no answer")
    assert split_enhanced("no code here") == (None, "no code here")
    assert smtp_diagnostic(550, ["5.1.1 User unknown", "see  https://example.test"]) == \
        "smtp; 550 5.1.1 User unknown see https://example.test"
    assert smtp_diagnostic(421, "") == "smtp; 421"
    assert (temporary("5.7.4"), permanent("4.7.4")) == ("4.7.4", "5.7.4")
    assert expired_status("4.4.1") == "4.4.7"
    assert expired_status("4.3.0") == "4.4.7"
    assert expired_status("") == "4.4.7"
    assert expired_status(Status.TLS_UNAVAILABLE) == "5.7.4"  # TLS required, never offered: 5.7.x at the end
    assert (Status.UNKNOWN_USER, Status.BAD_DESTINATION_SYSTEM, Status.NULL_MX) == ("5.1.1", "5.1.2", "5.1.10")
    assert (Status.NO_ANSWER, Status.BAD_CONNECTION, Status.EXPIRED, Status.ROUTING_LOOP) == \
        ("4.4.1", "4.4.2", "4.4.7", "5.4.6")
    assert address_field("a@b.test") == "rfc822; a@b.test"
    assert address_field("ä@b.test") == "utf-8; \\x{E4}@b.test"
    assert address_field("a+b=c\\d@é.test") == "utf-8; a\\x{2B}b\\x{3D}c\\x{5C}d@\\x{E9}.test"


@pytest.mark.parametrize(("notify", "action", "wanted"), [
    ("", "failed", True), ("", "delayed", True), ("", "delivered", False),
    ("NEVER", "failed", False), ("SUCCESS", "failed", False), ("success,failure", "failed", True),
    ("SUCCESS", "delivered", True), ("SUCCESS", "relayed", True), ("FAILURE", "delayed", False),
    ("DELAY,FAILURE", "delayed", True),
])
def test_wants_notice(notify: str, action: str, wanted: bool) -> None:
    assert wants_notice(notify, action) is wanted


ODD = st.lists(st.one_of(st.characters(), st.sampled_from(["\r", "\n", "\r\n", "\x00", "\udc80", "=?utf-8?q?x?=",
                                                            "\\", ";", " ", "  ", "\t", ":", "--", "\x7f", "+2B"]))
               ).map("".join)
ACTIONS = {"failed": "5.1.1", "delayed": "4.4.1", "delivered": "2.0.0", "relayed": "2.0.0", "expanded": "2.0.0"}


def unescape(text: str) -> str:
    return re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: chr(int(m.group(1), 16)), text)


@given(st.lists(st.tuples(ODD.filter(bool), st.sampled_from(sorted(ACTIONS)), ODD, ODD, ODD), min_size=1,
                max_size=6),
       st.binary(max_size=300), st.booleans(), st.one_of(st.none(), ODD))
def test_any_recipients_and_diagnostics_parse(rows: list[tuple[str, str, str, str, str]], headers: bytes,
                                              full: bool, envid: str | None) -> None:
    rcpts = [RecipientStatus(final, action, ACTIONS[action], diagnostic, original_recipient=orcpt,  # type: ignore[arg-type]
                             remote_mta=mta, last_attempt=NOW, will_retry_until=NOW + 60)
             for final, action, diagnostic, orcpt, mta in rows]
    _, _, data = build(recipients=rcpts, original_headers=headers, original_message=headers if full else None,
                       envid=envid)
    assert crlf_only(data)
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    m = parse(data)
    assert m.get_content_type() == "multipart/report"
    found = blocks(m)
    assert len(found) == len(rcpts) + 1
    assert [b["Action"] for b in found[1:]] == [r.action for r in rcpts]
    assert [b["Status"] for b in found[1:]] == [r.status for r in rcpts]
    raw = raw_blocks(data)
    assert len(raw) == len(rcpts) + 1
    for block, rcpt in zip(raw[1:], rcpts, strict=True):
        addr_type, _, value = block["Final-Recipient"].partition(";")
        assert value.isascii()
        expected = rcpt.final_recipient.replace("\r\n", " ").strip()
        if addr_type == "utf-8":
            assert unescape(value.strip()) == rcpt.final_recipient
        else:
            assert addr_type == "rfc822" and value.strip() == expected.strip()
        assert (block.get("Will-Retry-Until") is not None) == (rcpt.action == "delayed")
