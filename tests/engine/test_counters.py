"""Each IIS performance counter that used to stay at zero, driven by real traffic by an exact amount."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from dns_support import Dnsmasq, DnsRecords, free_port, running_dnsmasq
from engine_support import Running, make_config, start_server
from mta_support import Behaviour, remote_mta

from engine.counters import BADMAIL_COUNTERS, IIS_NAMES, Counters

RECORDS = DnsRecords(
    mx=[("two.test", "mx1.two.test", 10), ("two.test", "mx2.two.test", 20), ("one.test", "mx.one.test", 10)],
    hosts=[("mx1.two.test", "127.0.0.12"), ("mx2.two.test", "127.0.0.13"), ("mx.one.test", "127.0.0.14")],
)
MESSAGE = b"From: s@example.test\r\nTo: r@one.test\r\nSubject: counted\r\n\r\nline one\r\n..dot\r\nend\r\n"


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with running_dnsmasq(tmp_path_factory.mktemp("dns"), RECORDS) as server:
        yield server


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def engine(tmp_path: Path, dnsmasq: Dnsmasq, port: int) -> AsyncIterator[Running]:
    config = make_config(tmp_path, dns_servers=(dnsmasq.server,), outbound_port=port, smart_host="",
                         relay_allowed=("127.0.0.0/8",), outbound_timeout=10)
    run = await start_server(config)
    try:
        yield run
    finally:
        await run.server.stop()


def send(port: int, sender: str, rcpts: list[str], body: bytes = MESSAGE) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, rcpts, body)


async def counters(run: Running) -> dict[str, float]:
    return await run.server.counters_snapshot()


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def attempted(run: Running, count: int = 1) -> Callable[[], bool]:
    """True once every queued message had ``count`` attempts and none is being delivered."""
    def check() -> bool:
        queue = run.server._queue
        return queue is not None and bool(queue.entries) and all(
            e.record.attempts >= count and not e.active for e in queue.entries.values())
    return check


def test_every_badmail_cause_has_its_own_iis_counter() -> None:
    assert set(BADMAIL_COUNTERS.values()) == {name for name in IIS_NAMES if name.startswith("badmailed_")}
    assert set(IIS_NAMES) == set(Counters.__dataclass_fields__)


async def test_message_bytes_sent_counts_the_data_each_accepted_transaction_carried(
        engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.14", port) as mx:
        await asyncio.to_thread(send, engine.port, "s@example.test", ["a@one.test"])
        await until(lambda: len(mx.messages) == 1 and not engine.queue_files())
        first = len(mx.messages[0].content)
        await asyncio.to_thread(send, engine.port, "s@example.test", ["b@one.test", "c@one.test"])
        await until(lambda: len(mx.messages) == 2 and not engine.queue_files())
        second = len(mx.messages[1].content)
        connections = mx.connections  # 1 when the second batch reused the cached connection (within 2 s), else 2
    values = await counters(engine)
    assert first > len(MESSAGE) and values["Message Bytes Sent Total"] == first + second
    assert values["Messages Sent Total"] == 2  # two messages, three recipients
    assert connections in (1, 2) and values["Outbound Connections Total"] == connections
    assert values["Outbound Connections Refused"] == 0 and values["Total Connection Errors"] == 0


async def test_a_refused_tcp_connection_is_refused_an_error_and_leaves_the_message_undeliverable(
        engine: Running) -> None:
    # Nothing listens on mx.one.test: one attempt, one connection refused.
    await asyncio.to_thread(send, engine.port, "s@example.test", ["a@one.test"])
    await until(attempted(engine))
    values = await counters(engine)
    assert values["Outbound Connections Refused"] == 1 and values["Total Connection Errors"] == 1
    assert values["Messages Currently Undeliverable"] == 1 and values["Remote Retry Queue Length"] == 1
    assert values["Message Bytes Sent Total"] == 0 and values["Message Send Retries"] == 1


async def test_a_refusing_greeting_at_both_mx_hosts_counts_two_refusals_and_no_error(
        engine: Running, port: int) -> None:
    busy = Behaviour(greeting="421 4.3.2 Too busy")
    async with remote_mta("127.0.0.12", port, busy), remote_mta("127.0.0.13", port, busy):
        await asyncio.to_thread(send, engine.port, "s@example.test", ["a@two.test"])
        await until(attempted(engine))
    values = await counters(engine)
    assert values["Outbound Connections Refused"] == 2 and values["Total Connection Errors"] == 0
    assert values["Outbound Connections Total"] == 2  # one attempt, two hosts tried
    # The hosts answered: waiting for a retry, but not "undeliverable" (no route or host missing).
    assert values["Remote Retry Queue Length"] == 1 and values["Messages Currently Undeliverable"] == 0


async def test_a_connection_lost_during_data_is_one_connection_error(engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.14", port, Behaviour(drop_at_data=True)) as mx:
        await asyncio.to_thread(send, engine.port, "s@example.test", ["a@one.test"])
        await until(attempted(engine))
        assert mx.transactions == 1
    values = await counters(engine)
    assert values["Total Connection Errors"] == 1 and values["Outbound Connections Refused"] == 0
    assert values["Message Bytes Sent Total"] == 0 and values["Remote Retry Queue Length"] == 1


async def test_a_temporary_refusal_is_a_retry_but_not_undeliverable(engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.14", port, Behaviour(at_mail="451 4.3.0 later")):
        await asyncio.to_thread(send, engine.port, "s@example.test", ["a@one.test", "b@one.test"])
        await asyncio.to_thread(send, engine.port, "s@example.test", ["c@one.test"])
        await until(lambda: len(engine.queue_files()) == 2 and attempted(engine)())
    values = await counters(engine)
    assert values["Remote Retry Queue Length"] == 2 and values["Remote Queue Length"] == 2
    assert values["Messages Currently Undeliverable"] == 0 and values["Local Retry Queue Length"] == 0


async def test_a_null_sender_failure_is_one_general_failure_not_two(engine: Running, port: int) -> None:
    async with remote_mta("127.0.0.14", port, Behaviour(reject={"x@one.test": "550 5.1.1 no such user"})):
        await asyncio.to_thread(send, engine.port, "", ["x@one.test"])
        await until(lambda: engine.server.counters.badmailed_messages_general_failure >= 1
                    and not engine.queue_files())
    values = await counters(engine)
    assert values["Badmailed Messages (General Failure)"] == 1
    assert sum(values[IIS_NAMES[name]] for name in BADMAIL_COUNTERS.values()) == 1


@pytest.mark.expect_errors
async def test_local_delivery_retries_and_the_local_retry_queue(engine: Running, port: int) -> None:
    queue = engine.server._queue
    assert queue is not None
    queue.local_retry = 3600.0  # one failure in this test, not one a minute
    drop = engine.server.mailroot.drop
    shutil.rmtree(drop)
    drop.write_bytes(b"")  # a file where the Drop directory should be: every write to it fails
    try:
        async with remote_mta("127.0.0.14", port) as mx:  # mixed recipients: queued, then delivered locally
            await asyncio.to_thread(send, engine.port, "s@example.test", ["local@example.test", "r@one.test"])
            await until(lambda: len(mx.messages) == 1)
            await until(lambda: engine.server.counters.message_delivery_retries == 1)
    finally:
        drop.unlink()
        drop.mkdir()
    values = await counters(engine)
    assert values["Message Delivery Retries"] == 1 and values["Local Retry Queue Length"] == 1
    assert values["Local Queue Length"] == 1 and values["Remote Retry Queue Length"] == 0


async def test_pickup_hop_count_and_no_recipients_have_their_own_badmail_counters(engine: Running) -> None:
    pickup = engine.mailroot / "Pickup"
    looping = b"".join(b"Received: from hop%d.test by x.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % n
                       for n in range(16))
    (pickup / "loop.eml").write_bytes(looping + b"From: a@example.test\r\nTo: b@example.test\r\n\r\nbody\r\n")
    (pickup / "nobody.eml").write_bytes(b"From: a@example.test\r\nSubject: to no one\r\n\r\nbody\r\n")
    (pickup / "text.eml").write_bytes(b"just some words, no header at all\r\n")
    # Counted when the item is complete (the event), a moment after its .BDR is written.
    await until(lambda: sum(getattr(engine.server.counters, name) for name in BADMAIL_COUNTERS.values()) == 3)
    values = await counters(engine)
    assert values["Badmailed Messages (Hop Count Exceeded)"] == 1
    assert values["Badmailed Messages (No Recipients)"] == 1
    assert values["Badmailed Messages (Bad Pickup File)"] == 1
    assert values["Badmailed Messages (General Failure)"] == 0


async def test_a_pickup_file_with_an_x_sender_line_and_no_from_header_is_delivered(running: Running) -> None:
    pickup = running.mailroot / "Pickup"
    (pickup / "envelope.eml").write_bytes(b"x-sender: app@example.test\r\nx-receiver: user@example.test\r\n"
                                          b"Subject: from a script\r\n\r\nno From: header\r\n")
    (pickup / "mbox.eml").write_bytes(b"From app@example.test Mon Jan  1 00:00:00 2024\r\n"
                                      b"From: app@example.test\r\nTo: user@example.test\r\n\r\nbody\r\n")
    await running.wait_for(lambda: len(running.drop_files()) == 1)
    badmail = running.mailroot / "Badmail"
    await running.wait_for(lambda: running.server.counters.badmailed_messages_bad_pickup_file == 1)
    # Counted from the MessageQueued event, published a moment after the file is in Drop.
    await running.wait_for(lambda: running.server.counters.pickup_directory_messages_retrieved_total >= 1)
    [delivered] = running.drop_files()
    assert delivered.read_bytes().endswith(b"Subject: from a script\r\n\r\nno From: header\r\n")
    [reason] = badmail.glob("*.BDR")
    assert "mbox 'From ' separator line" in reason.read_text()
    values = await running.server.counters_snapshot()
    assert values["Badmailed Messages (Bad Pickup File)"] == 1
    assert values["Pickup Directory Messages Retrieved Total"] == 1


async def test_an_inbound_connection_reset_by_the_client_is_a_connection_error(running: Running) -> None:
    def reset_after_ehlo() -> None:
        sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO client.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        reader.close()
        sock.close()

    def polite() -> None:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.ehlo("client.test")

    await asyncio.to_thread(polite)
    await asyncio.to_thread(reset_after_ehlo)
    await running.wait_for(lambda: running.server.counters.inbound_connections_current == 0)
    values = await running.server.counters_snapshot()
    assert values["Total Connection Errors"] == 1 and values["Inbound Connections Total"] == 2
