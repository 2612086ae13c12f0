"""BINARYMIME to a remote recipient end to end (RFC 3030 §3): in by BDAT, out converted by DATA, or returned 5.6.3."""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_support import Running, free_port, make_config, start_server
from mta_support import Behaviour, remote_mta
from smtp_helpers import RawSMTP

from engine.store.envelope import pickup_file, split_envelope

ATTACHMENT = random.Random(3030).randbytes(300_000) + b"\r\n.\r\n\n\r\x00"  # and a lone dot line, bare CR/LF, NUL


def binary_message(attachment: bytes) -> bytes:
    return (b"From: s@example.test\r\nTo: x@relay.test, b@example.test\r\nSubject: binary attachment\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=b=\"\r\n\r\n"
            b"--=b=\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--=b=\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n" + attachment + b"\r\n--=b=--\r\n")


def signed_message(attachment: bytes) -> bytes:
    return (b"From: s@example.test\r\nSubject: signed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; "
            b"protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"s\"\r\n\r\n--s\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + attachment
            + b"\r\n--s\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              b"MIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n")


def send_bdat(port: int, rcpts: list[str], message: bytes, params: str = "") -> list[str]:
    """BODY=BINARYMIME by BDAT in three chunks (the middle one splits the attachment)."""
    raw = RawSMTP(port)
    replies = [raw.cmd("EHLO client.test"), raw.cmd(f"MAIL FROM:<s@example.test> BODY=BINARYMIME {params}".strip())]
    replies += [raw.cmd(f"RCPT TO:<{rcpt}>") for rcpt in rcpts]
    cuts = [0, 1000, len(message) // 2, len(message)]
    for start, end in itertools.pairwise(cuts):
        last = b" LAST" if end == len(message) else b""
        raw.send(b"BDAT %d%s\r\n" % (end - start, last) + message[start:end])
        replies.append(raw.read_reply()[-1])
    replies.append(raw.cmd("QUIT"))
    raw.close()
    return replies


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def engine(tmp_path: Path, port: int) -> AsyncIterator[Running]:
    config = make_config(tmp_path, smart_host=f"[127.0.0.4]:{port}", relay_allowed=("127.0.0.0/8",),
                         outbound_timeout=10)
    run = await start_server(config)
    try:
        yield run
    finally:
        await run.server.stop()


def after_our_received(data: bytes) -> bytes:
    lines = data.split(b"\r\n")
    index = 1
    while lines[index].startswith(b"\t"):
        index += 1
    return b"\r\n".join(lines[index:])


async def test_remote_copy_is_converted_and_decodes_to_the_same_bytes_local_copy_stays_binary(
        engine: Running, port: int) -> None:
    message = binary_message(ATTACHMENT)
    async with remote_mta("127.0.0.4", port) as mta:
        replies = await asyncio.to_thread(send_bdat, engine.port, ["x@relay.test", "b@example.test"], message)
        assert all(r.startswith(("2", "3")) for r in replies), replies
        await engine.wait_for(lambda: len(mta.messages) == 1 and not engine.queue_files(), timeout=20)
    [got] = mta.messages
    assert got.recipients == ["x@relay.test"]
    assert not any("BINARYMIME" in option.upper() for option in got.mail_options)  # sent as DATA, labelled 7bit
    assert b"\x00" not in got.content and b"Content-Transfer-Encoding: binary" not in got.content
    remote = email.message_from_bytes(got.content, policy=email.policy.default)
    assert remote["Subject"] == "binary attachment" and remote["To"] == "x@relay.test, b@example.test"
    [attachment] = [part for part in remote.walk() if part.get_filename() == "a.bin"]
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_payload(decode=True) == ATTACHMENT
    # The local copy in Drop is the message as received: binary, byte for byte.
    [drop] = engine.drop_files()
    data = drop.read_bytes()
    assert after_our_received(data[split_envelope(data)[2]:]) == message


async def test_a_signed_binary_message_is_returned_with_5_6_3(engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.4", port) as mta:
        replies = await asyncio.to_thread(send_bdat, engine.port, ["x@relay.test"], signed_message(ATTACHMENT))
        assert all(r.startswith(("2", "3")) for r in replies), replies
        await engine.wait_for(lambda: len(engine.drop_files()) == 1 and not engine.queue_files(), timeout=20)
    assert mta.messages == []  # nothing was sent: converting would have broken the signature
    [drop] = engine.drop_files()
    data = drop.read_bytes()
    ndr = email.message_from_bytes(data[split_envelope(data)[2]:], policy=email.policy.default)
    [status] = [part for part in ndr.walk() if part.get_content_type() == "message/delivery-status"]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    block = dict(blocks[1].items())
    assert block["Status"] == "5.6.3" and block["Action"] == "failed"
    assert "multipart/signed" in block["Diagnostic-Code"]


async def test_an_ndr_with_ret_full_returns_the_message_converted(engine: Running, port: int) -> None:
    attachment = ATTACHMENT[:20_000]  # RET=FULL returns up to 50 KB
    behaviour = Behaviour(reject={"x@relay.test": "550 5.1.1 <x@relay.test>: no such user"})
    async with remote_mta("127.0.0.4", port, behaviour):
        replies = await asyncio.to_thread(send_bdat, engine.port, ["x@relay.test"], binary_message(attachment),
                                          "RET=FULL")
        assert all(r.startswith(("2", "3")) for r in replies), replies
        await engine.wait_for(lambda: len(engine.drop_files()) == 1 and not engine.queue_files(), timeout=20)
    [drop] = engine.drop_files()
    data = drop.read_bytes()
    ndr = email.message_from_bytes(data[split_envelope(data)[2]:], policy=email.policy.default)
    [returned] = [part for part in ndr.walk() if part.get_content_type() == "message/rfc822"]
    [original] = returned.iter_parts()
    [part] = [p for p in original.walk() if p.get_filename() == "a.bin"]
    assert part["Content-Transfer-Encoding"] == "base64" and part.get_payload(decode=True) == attachment


async def test_the_body_type_is_durable_across_a_restart_without_the_queue_index(tmp_path: Path, port: int) -> None:
    config = make_config(tmp_path, smart_host=f"[127.0.0.4]:{port}", relay_allowed=("127.0.0.0/8",),
                         outbound_timeout=10)
    run = await start_server(config)
    try:  # no remote MTA yet: the message waits in the Queue
        replies = await asyncio.to_thread(send_bdat, run.port, ["x@relay.test"], binary_message(ATTACHMENT))
        assert replies[-2].startswith("250"), replies
    finally:
        await run.server.stop()
    [queued] = run.queue_files()
    assert b'"body":"BINARYMIME"' in queued.with_suffix(".env").read_bytes()
    (queued.parent / "queue.idx").unlink(missing_ok=True)  # read back from the message's own files
    async with remote_mta("127.0.0.4", port) as mta:
        run = await start_server(config)
        try:
            await run.server.retry_now()
            await run.wait_for(lambda: len(mta.messages) == 1, timeout=20)
        finally:
            await run.server.stop()
    received = email.message_from_bytes(mta.messages[0].content, policy=email.policy.default)
    [attachment] = [part for part in received.walk() if part.get_filename() == "a.bin"]
    assert attachment.get_payload(decode=True) == ATTACHMENT


async def test_a_binary_drop_file_put_into_pickup_is_converted_for_data(engine: Running, port: int) -> None:
    """A Drop copy of a BINARYMIME message has no BODY parameter any more: Pickup sees the binary content and
    marks it so, and delivery converts it (DATA would have its bare CR/LF rewritten)."""
    message = binary_message(ATTACHMENT)
    replies = await asyncio.to_thread(send_bdat, engine.port, ["b@example.test"], message)
    assert replies[-2].startswith("250"), replies
    await engine.wait_for(lambda: len(engine.drop_files()) == 1)
    [drop] = engine.drop_files()
    data = drop.read_bytes()
    copy = pickup_file("s@example.test", ["x@relay.test"], data[split_envelope(data)[2]:])
    async with remote_mta("127.0.0.4", port) as mta:
        (engine.server.mailroot.pickup / "copy.eml").write_bytes(copy)
        await engine.wait_for(lambda: len(mta.messages) == 1 and not engine.queue_files(), timeout=20)
    [got] = mta.messages
    assert got.recipients == ["x@relay.test"]
    assert b"\x00" not in got.content and b"Content-Transfer-Encoding: binary" not in got.content
    remote = email.message_from_bytes(got.content, policy=email.policy.default)
    [attachment] = [part for part in remote.walk() if part.get_filename() == "a.bin"]
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_payload(decode=True) == ATTACHMENT
