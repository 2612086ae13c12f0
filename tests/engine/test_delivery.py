"""Remote delivery end to end: real DNS (dnsmasq), real remote MTAs on loopback addresses, smtplib as the sender."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme
from dns_support import Dnsmasq, DnsRecords, free_port, running_dnsmasq
from engine_support import Running, make_config, start_server
from mta_support import Behaviour, remote_mta

from engine.conf.config import Config, DomainConfig
from engine.errors import NotFoundError
from engine.store.envelope import split_envelope

RECORDS = DnsRecords(
    mx=[("relay.test", "mx1.relay.test", 10), ("relay.test", "mx2.relay.test", 20),
        ("single.test", "mx.single.test", 10), ("tls.test", "mx.tls.test", 10)],
    hosts=[("mx1.relay.test", "127.0.0.2"), ("mx2.relay.test", "127.0.0.3"), ("mx.single.test", "127.0.0.4"),
           ("nomx.test", "127.0.0.5"), ("mx.tls.test", "127.0.0.7")],
    null_mx=["nullmx.test"],
    nxdomain=["nx.test"],
)
MESSAGE = (b"From: Sender <s@example.test>\r\nTo: someone\r\nSubject: outbound\r\nMessage-ID: <m1@example.test>\r\n\r\n"
           b"first line\r\n.leading dot\r\n\r\nlast line\r\n")


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with running_dnsmasq(tmp_path_factory.mktemp("dns"), RECORDS) as server:
        yield server


@pytest.fixture
def port() -> int:
    return free_port()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def delivery_config(tmp_path: Path, dns: Dnsmasq, port: int, **server: object) -> Config:
    settings: dict[str, object] = {"dns_servers": (dns.server,), "outbound_port": port, "smart_host": "",
                                   "relay_allowed": ("127.0.0.0/8",), "outbound_timeout": 10}
    return make_config(tmp_path, **{**settings, **server})


@pytest.fixture
async def engine(tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> AsyncIterator[Running]:
    run = await start_server(delivery_config(tmp_path, dnsmasq, port))
    try:
        yield run
    finally:
        await run.server.stop()


def send(port: int, sender: str, rcpts: list[str], body: bytes = MESSAGE) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, rcpts, body)


async def wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def drop_messages(run: Running) -> list[email.message.EmailMessage]:
    messages = []
    for path in run.drop_files():
        data = path.read_bytes()
        offset = split_envelope(data)[2]
        messages.append(email.message_from_bytes(data[offset:], policy=email.policy.default))
    return messages  # type: ignore[return-value]


def delivery_status(message: email.message.EmailMessage) -> list[dict[str, str]]:
    """The per-recipient blocks of a DSN's message/delivery-status part."""
    [part] = [p for p in message.walk() if p.get_content_type() == "message/delivery-status"]
    blocks = part.get_payload()
    return [dict(block.items()) for block in blocks[1:]]  # type: ignore[union-attr]


async def test_lowest_preference_mx_gets_the_message_byte_identical(engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.2", port) as mx1, remote_mta("127.0.0.3", port) as mx2:
        await asyncio.to_thread(send, engine.port, "s@example.test", ["a@relay.test", "b@relay.test"])
        await wait_until(lambda: len(mx1.messages) == 1 and not engine.queue_files())
        [got] = mx1.messages
        assert mx2.messages == []
        assert got.sender == "s@example.test" and got.recipients == ["a@relay.test", "b@relay.test"]
        assert got.content.endswith(MESSAGE)  # our Received header, then the message exactly
        assert got.content.startswith(b"Received: from ")
    counters = await engine.server.counters_snapshot()
    # One message, sent once (its two recipients in one transaction): a message, not a recipient count.
    assert counters["Messages Sent Total"] == 1 and counters["Remote Queue Length"] == 0


async def test_4xx_greeting_moves_on_to_the_next_mx_in_the_same_attempt(engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.2", port, Behaviour(greeting="421 4.3.2 Too busy")) as mx1, \
            remote_mta("127.0.0.3", port) as mx2:
        await asyncio.to_thread(send, engine.port, "s@example.test", ["a@relay.test"])
        await wait_until(lambda: len(mx2.messages) == 1)
        assert mx1.messages == [] and mx1.connections == 1


async def test_implicit_mx_uses_the_a_record(engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.5", port) as host:
        await asyncio.to_thread(send, engine.port, "s@example.test", ["x@nomx.test"])
        await wait_until(lambda: len(host.messages) == 1)


async def test_per_recipient_5xx_fails_that_recipient_only_with_a_parsable_ndr(engine: Running, port: int) -> None:
    behaviour = Behaviour(reject={"bad@single.test": "550 5.1.1 <bad@single.test>: User unknown"})
    async with remote_mta("127.0.0.4", port, behaviour) as mx:
        await asyncio.to_thread(send, engine.port, "s@example.test", ["good@single.test", "bad@single.test"])
        await wait_until(lambda: len(mx.messages) == 1 and len(engine.drop_files()) == 1)
    assert mx.messages[0].recipients == ["good@single.test"]
    await wait_until(lambda: not engine.queue_files())
    [ndr] = drop_messages(engine)
    assert ndr["To"] == "s@example.test" and "Failure" in ndr["Subject"]
    assert ndr.get_content_type() == "multipart/report"
    assert ndr.get_param("report-type") == "delivery-status"
    [block] = delivery_status(ndr)
    assert block["Final-Recipient"] == "rfc822; bad@single.test"
    assert block["Action"] == "failed" and block["Status"] == "5.1.1"
    assert "550 5.1.1" in block["Diagnostic-Code"] and block["Remote-MTA"] == "dns; mx.single.test"
    [returned] = [p for p in ndr.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert "Message-ID: <m1@example.test>" in returned.get_content()
    [ndr_file] = engine.drop_files()
    assert split_envelope(ndr_file.read_bytes())[0] == ""  # the NDR's envelope sender is <>
    assert (await engine.server.counters_snapshot())["NDRs Generated"] == 1


async def test_recipients_split_and_messages_share_connections(tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    run = await start_server(delivery_config(tmp_path, dnsmasq, port))
    try:
        async with remote_mta("127.0.0.4", port) as mx:
            delivery = run.server._delivery
            assert delivery is not None
            await delivery.stop()  # hold deliveries while the queue fills
            rcpts = [f"u{i}@single.test" for i in range(5)]
            await asyncio.to_thread(send, run.port, "s@example.test", rcpts)
            for i in range(5):
                await asyncio.to_thread(send, run.port, "s@example.test", [f"m{i}@single.test"])
            config = run.server.config()
            await run.server.apply_config(replace(config, server=replace(
                config.server, max_recipients=2, max_messages_per_connection=2)))
            delivery.start()
            await wait_until(lambda: len(mx.messages) == 8 and not run.queue_files())
            big = [m for m in mx.messages if m.recipients[0].startswith("u")]
            assert sorted(len(m.recipients) for m in big) == [1, 2, 2]  # split, never bounced
            assert sorted(r for m in big for r in m.recipients) == rcpts
            assert mx.connections == 3  # 6 messages, 2 per connection
    finally:
        await run.server.stop()


async def test_tls_required_without_tls_defers_and_opportunistic_tls_is_used(
        tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    base = delivery_config(tmp_path, dnsmasq, port)
    config = replace(base, domains=(*base.domains, DomainConfig("single.test", "remote", tls_required=True)))
    run = await start_server(config)
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.tls.test").configure_cert(server_context)
    try:
        async with remote_mta("127.0.0.4", port) as plain, \
                remote_mta("127.0.0.7", port, Behaviour(tls=server_context)) as tls:
            await asyncio.to_thread(send, run.port, "s@example.test", ["x@single.test"])
            await asyncio.to_thread(send, run.port, "s@example.test", ["y@tls.test"])
            await wait_until(lambda: len(tls.messages) == 1)
            assert tls.messages[0].tls
            queue = run.server._queue
            assert queue is not None
            await wait_until(lambda: len(queue.entries) == 1 and all(
                e.record.attempts and not e.active for e in queue.entries.values()))
            [item] = (await run.server.list_queue()).items
            assert item.pending == ("x@single.test",)
            detail = await run.server.queue_detail(item.queue_id)
            assert "4.7.5" in detail.recipients[0].last_error and detail.recipients[0].status == "pending"
            assert "STARTTLS" in detail.transcript or "does not offer STARTTLS" in detail.transcript
            assert plain.messages == []
    finally:
        await run.server.stop()


async def test_smart_host_with_auth_and_masked_transcript(tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    config = delivery_config(tmp_path, dnsmasq, port, smart_host=f"[127.0.0.6]:{port}",
                             outbound_user="relayuser", outbound_password="pa55word")
    run = await start_server(config)
    try:
        async with remote_mta("127.0.0.6", port, Behaviour(account=("relayuser", "pa55word"))) as smart:
            await asyncio.to_thread(send, run.port, "s@example.test", ["far@nx.test"])  # no DNS needed
            await wait_until(lambda: len(smart.messages) == 1)
            assert smart.messages[0].authenticated_as == "relayuser"
        transcripts = "".join(p.read_text() for p in (run.mailroot / "Queue").glob("*.rtr"))
        assert "pa55word" not in transcripts
    finally:
        await run.server.stop()


async def test_masquerade_domain_replaces_a_local_sender_domain_in_mail_from_only(
        tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    run = await start_server(delivery_config(tmp_path, dnsmasq, port, masquerade_domain="masq.test"))
    try:
        async with remote_mta("127.0.0.4", port) as mx:
            for sender in ("s@example.test", "t@alias.test", "x@elsewhere.test", ""):
                await asyncio.to_thread(send, run.port, sender, ["r@single.test"])
            await wait_until(lambda: len(mx.messages) == 4 and not run.queue_files())
    finally:
        await run.server.stop()
    assert sorted(m.sender for m in mx.messages) == sorted(["s@masq.test", "t@masq.test", "x@elsewhere.test", "<>"])
    assert all(m.content.endswith(MESSAGE) for m in mx.messages)  # the From: header is left alone


async def test_remote_domain_outbound_security_basic_anonymous_or_as_the_server(
        tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    base = delivery_config(tmp_path, dnsmasq, port, outbound_user="relayuser", outbound_password="pa55word")
    smart = f"[127.0.0.6]:{port}"
    domains = (DomainConfig("single.test", "remote", outbound_auth="basic", outbound_user="partner",
                            outbound_password="s3cret"),  # via DNS to its MX, with its own account
               DomainConfig("anon.test", "remote", route="smarthost", smart_host=smart, outbound_auth="anonymous"),
               DomainConfig("srv.test", "remote", route="smarthost", smart_host=smart))
    run = await start_server(replace(base, domains=(*base.domains, *domains)))
    try:
        async with remote_mta("127.0.0.4", port, Behaviour(account=("partner", "s3cret"))) as mx, \
                remote_mta("127.0.0.6", port, Behaviour(account=("relayuser", "pa55word"))) as smart:
            for rcpt in ("a@single.test", "b@anon.test", "c@srv.test"):
                await asyncio.to_thread(send, run.port, "s@example.test", [rcpt])
            await wait_until(lambda: len(mx.messages) == 1 and len(smart.messages) == 2)
        assert [m.authenticated_as for m in mx.messages] == ["partner"]
        by_rcpt = {m.recipients[0]: m.authenticated_as for m in smart.messages}
        assert by_rcpt == {"b@anon.test": None, "c@srv.test": "relayuser"}  # anonymous; the server's account
        transcripts = "".join(p.read_text() for p in (run.mailroot / "Queue").glob("*.rtr"))
        assert "s3cret" not in transcripts and "pa55word" not in transcripts
    finally:
        await run.server.stop()


async def test_nxdomain_and_null_mx_are_returned_at_once(engine: Running) -> None:
    await asyncio.to_thread(send, engine.port, "s@example.test", ["a@nx.test", "b@nullmx.test"])
    await wait_until(lambda: len(engine.drop_files()) >= 1 and not engine.queue_files())
    [ndr] = drop_messages(engine)
    statuses = {b["Final-Recipient"]: b["Status"] for b in delivery_status(ndr)}
    assert statuses == {"rfc822; a@nx.test": "5.1.2", "rfc822; b@nullmx.test": "5.1.10"}


async def test_null_sender_failure_goes_to_badmail_never_an_ndr(engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.4", port, Behaviour(reject={"x@single.test": "550 5.1.1 no such user"})):
        await asyncio.to_thread(send, engine.port, "", ["x@single.test"])
        badmail = engine.mailroot / "Badmail"
        await wait_until(lambda: len(list(badmail.glob("*.BDR"))) == 1 and not engine.queue_files())
    [bdr] = badmail.glob("*.BDR")
    assert "x@single.test" in bdr.read_text()
    assert (badmail / f"{bdr.stem}.BAD").read_bytes().endswith(MESSAGE)
    assert engine.drop_files() == [] and not engine.queue_files()


async def test_retries_on_the_schedule_across_a_restart_then_delay_notice_then_ndr(
        tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    clock = Clock()
    config = delivery_config(tmp_path, dnsmasq, port)

    async def start() -> Running:
        from engine.server import VirtualServer

        server = VirtualServer(config, clock=clock)
        await server.start()
        await server.wait_recovered()
        return Running(server)

    run = await start()
    behaviour = Behaviour(at_mail="451 4.3.0 Try again later")
    async with remote_mta("127.0.0.4", port, behaviour) as mx:
        await asyncio.to_thread(send, run.port, "s@example.test", ["later@single.test"])
        await wait_until(lambda: mx.transactions == 0 and mx.connections == 1)
        queue = run.server._queue
        assert queue is not None
        [entry] = queue.entries.values()
        await wait_until(lambda: entry.record.attempts == 1 and not entry.active)
        assert entry.record.next_attempt == clock.now + 15 * 60
        await run.server.stop()

        run = await start()  # the state survives the restart
        [entry] = run.server._queue.entries.values()  # type: ignore[union-attr]
        assert entry.record.attempts == 1 and entry.record.next_attempt == clock.now + 15 * 60
        clock.now += 15 * 60
        run.server._delivery.kick()  # type: ignore[union-attr]
        await wait_until(lambda: entry.record.attempts == 2 and not entry.active)
        assert entry.record.next_attempt == clock.now + 30 * 60
        assert run.drop_files() == []

        clock.now += 12 * 3600 + 60  # past the delay-notification time: one delay notice, no attempt needed
        run.server._delivery.kick(entry.queue_id)  # type: ignore[union-attr]
        await wait_until(lambda: len(run.drop_files()) == 1)
        [delay] = drop_messages(run)
        assert "Delay" in delay["Subject"]
        [block] = delivery_status(delay)
        assert block["Action"] == "delayed" and block["Status"].startswith("4.") and "Will-Retry-Until" in block

        clock.now += 2 * 86400  # past expiry: the last attempt fails, an NDR goes out, the message leaves
        run.server._delivery.kick(entry.queue_id)  # type: ignore[union-attr]
        await wait_until(lambda: len(run.drop_files()) == 2 and not run.queue_files())
    failure = [m for m in drop_messages(run) if "Failure" in m["Subject"]]
    [block] = delivery_status(failure[0])
    assert block["Action"] == "failed" and block["Status"] == "4.4.7"
    await run.server.stop()


async def test_queue_operations_freeze_thaw_delete_bounce(tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    run = await start_server(delivery_config(tmp_path, dnsmasq, port))
    try:
        async with remote_mta("127.0.0.4", port, Behaviour(at_mail="451 4.3.0 later")):
            for name in ("one", "two", "three"):
                await asyncio.to_thread(send, run.port, "s@example.test", [f"{name}@single.test"])
            await wait_until(lambda: all(e.record.attempts == 1 and not e.active
                                         for e in run.server._queue.entries.values()))  # type: ignore[union-attr]
            items = sorted((await run.server.list_queue()).items, key=lambda i: i.recipients)
            one, three, two = items
            await run.server.freeze(one.queue_id)
            assert {i.queue_id: i.state for i in (await run.server.list_queue()).items}[one.queue_id] == "frozen"
            assert await run.server.retry_now() == 2  # the frozen one is not retried
            await run.server.thaw(one.queue_id)
            await run.server.delete_message(two.queue_id)
            await wait_until(lambda: not any(e.active for e in run.server._queue.entries.values()))  # type: ignore[union-attr]
            await run.server.bounce_now(three.queue_id)
            await wait_until(lambda: len(run.drop_files()) == 1)
            [ndr] = drop_messages(run)
            [block] = delivery_status(ndr)
            assert block["Final-Recipient"] == "rfc822; three@single.test" and block["Action"] == "failed"
            remaining = [i.queue_id for i in (await run.server.list_queue()).items]
            assert remaining == [one.queue_id]
    finally:
        await run.server.stop()


def raw_send(port: int, lines: list[bytes]) -> list[str]:
    from smtp_helpers import RawSMTP

    raw = RawSMTP(port)
    replies = [raw.cmd(line) for line in lines]
    raw.close()
    return replies


DSN_TRANSACTION = [b"EHLO client.test", b"MAIL FROM:<s@example.test> RET=FULL ENVID=env+2B42",
                   b"RCPT TO:<ok@single.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bok@single.test",
                   b"RCPT TO:<bad@single.test> NOTIFY=FAILURE ORCPT=rfc822;bad@single.test",
                   b"RCPT TO:<quiet@single.test> NOTIFY=NEVER", b"DATA",
                   b"From: s@example.test\r\nSubject: dsn\r\n\r\nbody\r\n."]


async def test_dsn_requests_success_relay_notice_ndr_with_orcpt_envid_full_return(engine: Running, port: int) -> None:
    behaviour = Behaviour(reject={"bad@single.test": "550 5.1.1 unknown", "quiet@single.test": "550 5.1.1 unknown"})
    async with remote_mta("127.0.0.4", port, behaviour) as mx:  # aiosmtpd: no DSN extension
        replies = await asyncio.to_thread(raw_send, engine.port, DSN_TRANSACTION)
        assert all(r.startswith(("250", "354")) for r in replies[1:]), replies
        await wait_until(lambda: len(mx.messages) == 1 and len(engine.drop_files()) == 2)
    notices = {m["Subject"]: m for m in drop_messages(engine)}
    relayed = next(m for s, m in notices.items() if "Relay" in s or "Success" in s or "Delivered" in s)
    [block] = delivery_status(relayed)
    assert block["Action"] == "relayed" and block["Original-Recipient"] == "rfc822; orig+ok@single.test"
    failure = next(m for s, m in notices.items() if "Failure" in s)
    [block] = delivery_status(failure)  # quiet@ asked for NEVER: only bad@ is reported
    assert block["Final-Recipient"] == "rfc822; bad@single.test"
    [status_part] = [p for p in failure.walk() if p.get_content_type() == "message/delivery-status"]
    assert status_part.get_payload()[0]["Original-Envelope-Id"] == "env+42"  # type: ignore[index]
    assert any(p.get_content_type() == "message/rfc822" for p in failure.walk())  # RET=FULL


async def test_dsn_parameters_pass_on_to_a_dsn_capable_hop(engine: Running, port: int, tmp_path: Path) -> None:
    from sink_support import SMTP_SINK, running_sink

    if SMTP_SINK is None:
        pytest.skip("postfix's smtp-sink is installed by tests/run")
    with running_sink(tmp_path / "sink", "127.0.0.4", port) as sink:
        lines = [line for line in DSN_TRANSACTION if b"bad@" not in line and b"quiet@" not in line]
        await asyncio.to_thread(raw_send, engine.port, lines)
        await wait_until(lambda: len(sink.dumps()) == 1 and not engine.queue_files())
        [dump] = sink.dumps()
    assert "RET=FULL" in dump.mail_args and "ENVID=env+2B42" in dump.mail_args
    assert dump.rcpt_args == ["<ok@single.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bok@single.test"]
    assert engine.drop_files() == []  # the next hop took over the success notice
    assert dump.message.replace(b"\r\n", b"\n").endswith(b"Subject: dsn\n\nbody\n")


async def test_smtp_sink_soft_and_hard_errors(engine: Running, port: int, tmp_path: Path) -> None:
    from sink_support import SMTP_SINK, running_sink

    if SMTP_SINK is None:
        pytest.skip("postfix's smtp-sink is installed by tests/run")
    with running_sink(tmp_path / "soft", "127.0.0.4", port, "-r", "RCPT"):
        await asyncio.to_thread(send, engine.port, "s@example.test", ["x@single.test"])
        await wait_until(lambda: any(e.record.attempts and not e.active
                                     for e in engine.server._queue.entries.values()))  # type: ignore[union-attr]
    [item] = (await engine.server.list_queue()).items
    assert item.last_error.startswith("450 4.3.0")  # deferred, not bounced
    with running_sink(tmp_path / "hard", "127.0.0.4", port, "-f", "RCPT"):
        await engine.server.retry_now()
        await wait_until(lambda: not engine.queue_files() and len(engine.drop_files()) == 1)
    [ndr] = drop_messages(engine)
    [block] = delivery_status(ndr)
    assert block["Status"] == "5.3.0" and "500 5.3.0" in block["Diagnostic-Code"]


async def test_local_success_notice(engine: Running) -> None:
    replies = await asyncio.to_thread(raw_send, engine.port, [
        b"EHLO c", b"MAIL FROM:<s@example.test>", b"RCPT TO:<me@example.test> NOTIFY=SUCCESS", b"DATA",
        b"From: s@example.test\r\nSubject: local\r\n\r\nhi\r\n."])
    assert replies[-1].startswith("250")
    await wait_until(lambda: len(engine.drop_files()) == 2 and not engine.queue_files())
    subjects = sorted(m["Subject"] for m in drop_messages(engine))
    notice = next(m for m in drop_messages(engine) if m["Subject"] != "local")
    [block] = delivery_status(notice)
    assert block["Action"] == "delivered" and block["Status"].startswith("2.")
    assert "local" in subjects


async def test_etrn_releases_a_held_domain(tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    base = delivery_config(tmp_path, dnsmasq, port)
    held = DomainConfig("single.test", "remote", relay_allowed=True, etrn_queue=True)
    run = await start_server(replace(base, domains=(*base.domains, held)))
    try:
        async with remote_mta("127.0.0.4", port) as mx:
            await asyncio.to_thread(send, run.port, "s@example.test", ["x@single.test"])
            await asyncio.sleep(0.5)
            assert mx.connections == 0  # held for ETRN
            replies = await asyncio.to_thread(raw_send, run.port, [b"EHLO c", b"ETRN other.test", b"ETRN single.test"])
            assert replies[1].startswith("459 4.7.1") and replies[2].startswith("253 2.0.0 OK, 1 pending")
            await wait_until(lambda: len(mx.messages) == 1)
            await asyncio.to_thread(send, run.port, "s@example.test", ["y@single.test"])
            await asyncio.sleep(0.5)
            assert len(mx.messages) == 1  # held again until the next ETRN
    finally:
        await run.server.stop()


async def test_held_for_etrn_is_listed_and_released_by_the_administrator(tmp_path: Path, dnsmasq: Dnsmasq,
                                                                          port: int) -> None:
    base = delivery_config(tmp_path, dnsmasq, port)
    held = DomainConfig("single.test", "remote", relay_allowed=True, etrn_queue=True)
    run = await start_server(replace(base, domains=(*base.domains, held)))
    try:
        async with remote_mta("127.0.0.4", port) as mx:
            await asyncio.to_thread(send, run.port, "s@example.test", ["x@single.test"])
            [item] = (await run.server.list_queue()).items
            assert item.etrn_held == ("single.test",) and item.attempts == 0
            detail = await run.server.queue_detail(item.queue_id)
            assert detail.item.etrn_held == ("single.test",)
            with pytest.raises(NotFoundError):
                await run.server.release_etrn("example.test")  # a local domain holds nothing
            assert await run.server.release_etrn("single.test") == 1
            await wait_until(lambda: len(mx.messages) == 1)
            assert mx.connections == 1
    finally:
        await run.server.stop()


async def test_an_etrn_release_outlives_a_restart(tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    base = delivery_config(tmp_path, dnsmasq, port)
    config = replace(base, domains=(*base.domains,
                                    DomainConfig("single.test", "remote", relay_allowed=True, etrn_queue=True)))
    run = await start_server(config)
    try:
        await asyncio.to_thread(send, run.port, "s@example.test", ["x@single.test"])
        assert await run.server.release_etrn("single.test") == 1  # nobody listens: the attempt is deferred
        await wait_until(lambda: any(e.record.attempts and not e.active
                                     for e in run.server._queue.entries.values()))  # type: ignore[union-attr]
    finally:
        await run.server.stop()
    run = await start_server(config)
    try:
        [item] = (await run.server.list_queue()).items
        assert item.etrn_held == ()  # released before the restart: not held again
        async with remote_mta("127.0.0.4", port) as mx:
            await run.server.retry_now([item.queue_id])
            await wait_until(lambda: len(mx.messages) == 1)
        await asyncio.to_thread(send, run.port, "s@example.test", ["y@single.test"])
        [later] = (await run.server.list_queue()).items
        assert later.etrn_held == ("single.test",)  # arrived after the release: waits for the next one
    finally:
        await run.server.stop()


@pytest.mark.expect_errors  # the Drop directory is unwritable on purpose for a moment
async def test_retry_now_while_local_and_remote_deliveries_overlap_sends_the_remote_part_once(
        tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> None:
    """Local delivery ends while the remote attempt of the same message is still in flight, then Retry Now.

    Before per-recipient claims, local delivery's end marked the whole message idle, and Retry Now sent the
    remote part a second time while the first attempt waited for the remote's reply."""
    blocked = tmp_path / "Drop elsewhere"
    blocked.mkdir()
    base = delivery_config(tmp_path, dnsmasq, port)
    config = replace(base, domains=(replace(base.domains[0], drop_dir=str(blocked)), *base.domains[1:]))
    run = await start_server(config)
    hold = asyncio.Event()
    behaviour = Behaviour(hold_first=hold)
    try:
        store = run.server._queue
        assert store is not None
        store.local_retry = 0.05  # the local retry comes back at once (the Drop directory is fixed meanwhile)
        blocked.rmdir()
        blocked.write_text("a file where the Drop directory should be")
        async with remote_mta("127.0.0.4", port, behaviour) as mx:
            await asyncio.to_thread(send, run.port, "s@example.test", ["local@example.test", "far@single.test"])
            await asyncio.wait_for(behaviour.holding.wait(), 15)  # the remote attempt is in flight
            [entry] = store.entries.values()
            await run.wait_for(lambda: entry.record.recipients[0].attempts >= 1)  # local delivery failed
            blocked.unlink()
            blocked.mkdir()  # the next local retry succeeds while the remote attempt still waits
            await run.wait_for(lambda: entry.record.recipients[0].status == "delivered")
            assert entry.record.recipients[1].status == "pending" and mx.connections == 1

            assert await run.server.retry_now([entry.queue_id]) == 1  # the administrator's Retry Now
            # A probe after it: once the probe is through, the scheduler has acted on the Retry Now.
            await asyncio.to_thread(send, run.port, "probe@example.test", ["other@single.test"])
            await run.wait_for(lambda: any(m.sender == "probe@example.test" for m in mx.messages))
            hold.set()
            await asyncio.wait_for(behaviour.held_taken.wait(), 15)  # the first attempt's message is in
            await run.wait_for(lambda: not store.entries)
        sent = [m for m in mx.messages if m.sender == "s@example.test"]
        assert [m.recipients for m in sent] == [["far@single.test"]]  # once, not twice
        assert len(list(blocked.glob("*.eml"))) == 1
    finally:
        hold.set()
        await run.server.stop()
