"""The outbound connection cache: messages that come one at a time share a connection to the same host, within the
per-connection message limit; an engine that stops says goodbye on its idle connections."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_support import Dnsmasq, DnsRecords, free_port, running_dnsmasq
from engine_support import Running, make_config, start_server
from mta_support import remote_mta

RECORDS = DnsRecords(mx=[("single.test", "mx.single.test", 10), ("other.test", "mx.other.test", 10)],
                     hosts=[("mx.single.test", "127.0.0.4"), ("mx.other.test", "127.0.0.5")])


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with running_dnsmasq(tmp_path_factory.mktemp("dns"), RECORDS) as server:
        yield server


async def _engine(tmp_path: Path, dnsmasq: Dnsmasq, port: int, per_connection: int, **server: object) -> Running:
    config = make_config(tmp_path, dns_servers=(dnsmasq.server,), outbound_port=port, smart_host="",
                         relay_allowed=("127.0.0.0/8",), outbound_timeout=10,
                         max_messages_per_connection=per_connection, **server)
    run = await start_server(config)
    assert run.server._delivery is not None
    run.server._delivery.cache.idle_time = 60.0  # (2 s in service) the test's pace must not decide
    return run


def _send(port: int, number: int, domain: str = "single.test") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("s@example.test", [f"r{number}@{domain}"], f"Subject: {number}\r\n\r\nbody\r\n")


async def _until(predicate) -> None:  # type: ignore[no-untyped-def]
    for _ in range(1500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


@pytest.mark.parametrize(("per_connection", "per_domain", "connections"), [(20, 100, 1), (2, 100, 2), (20, 1, 1)])
async def test_messages_one_at_a_time_share_a_connection_within_the_limit(
        tmp_path: Path, dnsmasq: Dnsmasq, per_connection: int, per_domain: int, connections: int) -> None:
    """With one connection allowed per domain, the idle one holds that place and the next batch takes it over."""
    port = free_port()
    run = await _engine(tmp_path, dnsmasq, port, per_connection, max_outbound_per_domain=per_domain)
    try:
        async with remote_mta("127.0.0.4", port) as mx:
            for number in range(3):  # each delivered before the next one comes
                await asyncio.to_thread(_send, run.port, number)
                await _until(lambda n=number: len(mx.messages) == n + 1)
            assert mx.connections == connections
            counters = await run.server.counters_snapshot()
            assert counters["Outbound Connections Total"] == connections
            await run.server.stop()  # the idle connection is closed with a QUIT
            assert mx.connections == connections
    finally:
        await run.server.stop()
    assert sorted(m.recipients[0] for m in mx.messages) == [f"r{n}@single.test" for n in range(3)]


async def test_idle_connections_count_against_the_connection_limits(tmp_path: Path, dnsmasq: Dnsmasq) -> None:
    """max_outbound_connections 1: the connection kept idle after mail for one domain holds the only place, and
    mail for another domain has it closed first (idle connections used to hold no place: two were open)."""
    port = free_port()
    run = await _engine(tmp_path, dnsmasq, port, 20, max_outbound_connections=1)
    delivery = run.server._delivery
    assert delivery is not None
    try:
        async with remote_mta("127.0.0.4", port) as first, remote_mta("127.0.0.5", port) as second:
            await asyncio.to_thread(_send, run.port, 0)
            await _until(lambda: len(first.messages) == 1)
            await _until(lambda: delivery.connections == (1, {"single.test": 1}))  # idle, and counted
            assert first.quits == 0
            await asyncio.to_thread(_send, run.port, 1, "other.test")
            await _until(lambda: len(second.messages) == 1)
            await _until(lambda: first.quits == 1)  # closed to make room (its place was freed at once)
            assert first.connections == 1 and second.connections == 1
            await _until(lambda: delivery.connections == (1, {"other.test": 1}))
            await run.server.stop()
            assert second.quits == 1
    finally:
        await run.server.stop()
