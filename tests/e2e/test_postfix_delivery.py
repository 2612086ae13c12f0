"""Relay through `smtpsvc serve` to a real Postfix found by MX in dnsmasq: bodies arrive byte-identical (by BDAT:
Postfix offers CHUNKING), 5.1.1 → NDR, a BINARYMIME message converted for it."""

from __future__ import annotations

import email.message
import hashlib
import smtplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from dns_support import DnsRecords, running_dnsmasq
from postfix_support import PostfixMailbox, parse, split_message, unavailable
from serve_support import ServeProcess, free_port
from smtp_helpers import RawSMTP

from engine.log import formats
from engine.store.envelope import split_envelope

LOCAL = "example.test"
REMOTE = "dest.test"
MX_HOST = f"mx.{REMOTE}"
MX_ADDRESS = "127.0.0.26"  # Postfix listens here only; smtpsvc finds it through the MX record
SENDER = f"sender@{LOCAL}"
USERS = ("alice", "bob")
TRACE_HEADERS = {"return-path", "x-original-to", "delivered-to", "received"}  # added on the way; the rest is ours
CONFIG = """\
[server]
fqdn = "mx.{local}"
dns_servers = ["{dns}"]
outbound_port = {port}
smart_host = ""
relay_allowed = ["127.0.0.0/8"]
outbound_timeout = 30
"""


@dataclass
class Relay:
    serve: ServeProcess
    postfix: PostfixMailbox

    def drop(self) -> list[Path]:
        return sorted((self.serve.mailroot / "Drop").glob("*.eml"))

    def queue(self) -> list[Path]:
        return sorted((self.serve.mailroot / "Queue").glob("*.eml"))

    def diagnostics(self) -> str:
        log = self.serve.log.read_text(errors="replace") if self.serve.log.exists() else ""
        return f"--- smtpsvc log\n{log[-3000:]}\n--- Postfix log\n{self.postfix.log()[-3000:]}"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    why = unavailable()
    if why is not None:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("postfix-relay")
    with PostfixMailbox(REMOTE, USERS, MX_ADDRESS) as postfix, \
            running_dnsmasq(base / "dns", DnsRecords(mx=[(REMOTE, MX_HOST, 10)], hosts=[(MX_HOST, MX_ADDRESS)])) as dns:
        serve = ServeProcess(base / "Mailroot", free_port(), domain=LOCAL)
        serve.config.write_text(CONFIG.format(local=LOCAL, dns=dns.server, port=postfix.port))
        serve.start()
        try:
            yield Relay(serve, postfix)
        finally:
            code = serve.stop()
            assert code == 0, f"smtpsvc serve exited {code}"


def wait_for(predicate: Callable[[], object], what: str, relay: Relay, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{relay.diagnostics()}")
        time.sleep(0.05)


def delivered_with_id(relay: Relay, user: str, message_id: str) -> bytes | None:
    needle = f"\nMessage-ID: <{message_id}>\n".encode()
    found = [data for data in relay.postfix.delivered(user) if needle in split_message(data)[0]]
    assert len(found) <= 1, f"{message_id} delivered {len(found)} times"
    return found[0] if found else None


def message(name: str, body: bytes, *, extra_headers: bytes = b"") -> tuple[str, bytes]:
    """(Message-ID, the message in CRLF form) with a full header set, so no MTA has to add anything."""
    message_id = f"{name}.{hashlib.sha1(body).hexdigest()[:12]}@{LOCAL}"
    head = (f"From: Sender <{SENDER}>\r\nTo: Alice <alice@{REMOTE}>\r\nSubject: postfix e2e {name}\r\n"
            f"Date: Mon, 30 Nov 2026 08:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n").encode() + extra_headers
    return message_id, head + b"\r\n" + body


def big_body() -> bytes:
    """About 1 MB of varied 76-character lines (a hash chain, so no two lines repeat)."""
    lines: list[bytes] = []
    seed = b"seed"
    while len(lines) * 78 < 1024 * 1024:
        seed = hashlib.sha256(seed).digest()
        lines.append((seed.hex() * 2)[:76].encode() + b"\r\n")
    return b"".join(lines)


CASES: dict[str, tuple[bytes, bytes, tuple[str, ...]]] = {
    # name: (body, extra headers, MAIL FROM options)
    "plain": (b"Hello Alice,\r\n\r\nthis is a plain message.\r\n\r\n-- \r\nSender\r\n", b"", ()),
    "dots": (b".leading dot\r\n..two dots\r\n.\r\nabove: a lone dot\r\n . \r\n...\r\n.\r\n..\r\nend\r\n", b"", ()),
    "last-line-dot": (b".leading dot\r\n..two dots\r\nthe last line is a lone dot:\r\n.\r\n", b"", ()),
    "utf8": ("Grüße aus Köln — ½ € ✓\r\n日本語のテキスト\r\nemoji: 😀\r\n\xa0non-breaking\r\n".encode(),
             b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
             ("BODY=8BITMIME",)),
    "1mb": (big_body(), b"", ()),
    "long-lines": (b"x" * 990 + b"\r\n" + (b"0123456789" * 99)[:990] + b"\r\n" + b"y" * 998 + b"\r\nshort\r\n",
                   b"", ()),
}




@pytest.mark.parametrize("name", list(CASES))
def test_message_arrives_in_postfix_maildir_byte_identical(relay: Relay, name: str) -> None:
    body, extra, options = CASES[name]
    message_id, data = message(name, body, extra_headers=extra)
    with smtplib.SMTP("127.0.0.1", relay.serve.port, timeout=30) as client:
        refused = client.sendmail(SENDER, [f"alice@{REMOTE}"], data, mail_options=list(options))
    assert refused == {}
    wait_for(lambda: delivered_with_id(relay, "alice", message_id), f"{name} in alice's Maildir", relay)
    got = delivered_with_id(relay, "alice", message_id)
    assert got is not None
    head, got_body = split_message(got)
    original_head, original_body = split_message(data)
    # Postfix stores lines without their CRLF and writes its Maildir files with LF: the only difference.
    assert got_body == original_body.replace(b"\r\n", b"\n"), f"{name}: the body changed on the way"
    assert head.endswith(original_head.replace(b"\r\n", b"\n")), f"{name}: our headers changed:\n{head[-2000:]!r}"
    parsed = parse(got)
    added = [key.lower() for key in parsed][: -len(parse(data))]
    assert set(added) <= TRACE_HEADERS, added
    assert parsed["Return-Path"] == f"<{SENDER}>"
    assert parsed["Delivered-To"] == f"alice@{REMOTE}"
    received = [str(value) for value in parsed.get_all("Received", [])]
    assert len(received) == 2  # Postfix's, then smtpsvc's
    assert f"by {MX_HOST} (Postfix)" in " ".join(received[0].split())
    assert f"by mx.{LOCAL} with ESMTP" in " ".join(received[1].split())
    wait_for(lambda: not relay.queue(), "smtpsvc's queue to empty", relay)


def test_unknown_user_at_postfix_ndr_in_drop(relay: Relay) -> None:
    """550 5.1.1 at RCPT for one recipient: the other gets the message, the sender an NDR for this one only."""
    message_id, data = message("unknown-user", b"for bob and for nobody\r\n")
    with smtplib.SMTP("127.0.0.1", relay.serve.port, timeout=30) as client:
        assert client.sendmail(SENDER, [f"bob@{REMOTE}", f"nobody@{REMOTE}"], data) == {}
    wait_for(lambda: relay.drop() and not relay.queue(), "the NDR in Drop", relay)
    got = delivered_with_id(relay, "bob", message_id)
    assert got is not None and split_message(got)[1] == b"for bob and for nobody\n"
    [path] = relay.drop()
    raw = path.read_bytes()
    sender, recipients, offset = split_envelope(raw)
    assert sender == "" and recipients == (SENDER,)  # from <> to the local sender
    ndr = parse(raw[offset:])
    assert ndr.get_content_type() == "multipart/report"
    assert ndr.get_param("report-type") == "delivery-status"
    [status_part] = [p for p in ndr.walk() if p.get_content_type() == "message/delivery-status"]
    payload = status_part.get_payload()
    assert isinstance(payload, list)
    per_message, *per_recipient = cast(list[email.message.Message], payload)
    assert str(per_message["Reporting-MTA"]) == f"dns; mx.{LOCAL}"
    [block] = per_recipient  # bob was delivered: only nobody is reported
    assert str(block["Final-Recipient"]).lower() == f"rfc822; nobody@{REMOTE}"
    assert str(block["Action"]) == "failed"
    assert str(block["Status"]) == "5.1.1"
    assert str(block["Remote-MTA"]) == f"dns; {MX_HOST}"
    diagnostic = " ".join(str(block["Diagnostic-Code"]).split())
    assert diagnostic.startswith("smtp; 550 5.1.1 <nobody@") and "User unknown in virtual mailbox table" in diagnostic
    returned = [p for p in ndr.walk() if p.get_content_type() in ("text/rfc822-headers", "message/rfc822")]
    assert returned and f"<{message_id}>" in returned[0].as_string()
    assert f"to=<nobody@{REMOTE}>" in relay.postfix.log() and "550 5.1.1" in relay.postfix.log()


def outbound_log_methods(relay: Relay) -> list[str]:
    """The verbs smtpsvc's protocol log has for its outbound sessions so far (W3C, the default format)."""
    folder = relay.serve.config.parent / "Logs" / "SMTPSVC1"
    lines = [line for path in sorted(folder.glob("*.log")) for line in path.read_text("utf-8").splitlines()]
    return [e["cs-method"] for e in formats.parse_w3c(lines) if e["cs-username"] == formats.OUTBOUND_USER]


def test_postfix_offers_chunking_a_binarymime_message_is_converted_and_sent_by_bdat(relay: Relay) -> None:
    """Postfix offers CHUNKING but not BINARYMIME: a BODY=BINARYMIME message goes by BDAT, converted (RFC 3030
    §3: its binary part as base64), and decodes to the same bytes in the Maildir."""
    attachment = bytes(range(256)) * 40 + b"\r\n.\r\n\n\r"
    message_id, data = message("binarymime", b"--b\r\nContent-Type: application/octet-stream\r\n"
                               b"Content-Transfer-Encoding: binary\r\n\r\n" + attachment + b"\r\n--b--\r\n",
                               extra_headers=b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n")
    raw = RawSMTP(relay.serve.port, timeout=30)
    replies = [raw.cmd("EHLO client.test"), raw.cmd(f"MAIL FROM:<{SENDER}> BODY=BINARYMIME"),
               raw.cmd(f"RCPT TO:<bob@{REMOTE}>")]
    raw.send(b"BDAT %d LAST\r\n" % len(data) + data)
    replies += [raw.read_reply()[-1], raw.cmd("QUIT")]
    raw.close()
    assert all(r.startswith(("2", "3")) for r in replies), replies
    wait_for(lambda: delivered_with_id(relay, "bob", message_id), "the BINARYMIME message in bob's Maildir", relay)
    got = delivered_with_id(relay, "bob", message_id)
    assert got is not None
    [part] = [p for p in parse(got).walk() if p.get_content_type() == "application/octet-stream"]
    assert part["Content-Transfer-Encoding"] == "base64" and part.get_payload(decode=True) == attachment
    wait_for(lambda: "BDAT" in outbound_log_methods(relay), "BDAT in smtpsvc's protocol log", relay)
    assert "DATA" not in outbound_log_methods(relay)
