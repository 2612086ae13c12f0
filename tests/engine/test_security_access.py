"""Connection control (grant/deny by IP, network, forward-confirmed domain name; 554 5.7.1 at connect, event,
counter) and reverse DNS in Received, against the real engine with clients on other loopback addresses and
a real dnsmasq for the PTR records."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from dns_support import DnsRecords, running_dnsmasq
from engine_support import start_server
from security_support import Talk, connect_from

from engine.conf.access import NameResult, access_list, decide, entry_problem
from engine.events import ConnectionRefused
from engine.store.envelope import split_envelope


def greeting(port: int, source: str) -> str:
    talk, banner = Talk.open(port, source)
    closed = banner[0].startswith(("554", "421")) and talk.closed()
    talk.close()
    return banner[0] + (" [closed]" if closed else "")


@pytest.mark.parametrize(("mode", "entries", "peer", "names", "decision"), [
    ("all_except_listed", (), "192.0.2.1", None, "allow"),
    ("only_listed", (), "192.0.2.1", None, "deny"),
    ("all_except_listed", ("192.0.2.1",), "192.0.2.1", None, "deny"),
    ("all_except_listed", ("192.0.2.0/255.255.255.0",), "192.0.2.77", None, "deny"),
    ("all_except_listed", ("192.0.2.0/24",), "::ffff:192.0.2.77", None, "deny"),
    ("only_listed", ("2001:db8::/32",), "2001:db8::1", None, "allow"),
    ("only_listed", ("2001:db8::/32",), "2001:db9::1", None, "deny"),
    ("only_listed", ("lab.test",), "192.0.2.1", NameResult(name="mx.lab.test"), "allow"),
    ("only_listed", ("lab.test",), "192.0.2.1", NameResult(name="lab.test"), "allow"),
    ("only_listed", ("*.lab.test",), "192.0.2.1", NameResult(name="lab.test"), "deny"),
    ("only_listed", ("lab.test",), "192.0.2.1", NameResult(name="evillab.test"), "deny"),
    ("only_listed", ("lab.test",), "192.0.2.1", NameResult(unverified="mx.lab.test"), "deny"),
    ("all_except_listed", ("lab.test",), "192.0.2.1", NameResult(unverified="mx.lab.test"), "allow"),
    ("all_except_listed", ("lab.test",), "192.0.2.1", NameResult(temporary=True), "defer"),
    ("only_listed", ("lab.test",), "192.0.2.1", NameResult(temporary=True), "defer"),
    ("only_listed", ("lab.test", "192.0.2.1"), "192.0.2.1", None, "allow"),  # the IP decides, no lookup
    ("all_except_listed", ("bad entry", "10.0.0.1/8"), "10.0.0.1", None, "allow"),  # bad entries are skipped
])
def test_decide(mode: str, entries: tuple[str, ...], peer: str, names: NameResult | None, decision: str) -> None:
    assert decide(mode, access_list(entries), peer, names) == decision


def test_entry_problems() -> None:
    for good in ("192.0.2.1", "10.0.0.0/8", "10.0.0.0/255.0.0.0", "::1", "2001:db8::/32", "lab.test", "*.lab.test"):
        assert entry_problem(good) is None, good
    for bad in ("", " lab.test", "10.0.0.1/8", "10.0.0.0/255.0.255.0", "300.1.1.1", "bad_name.test", "*", "1.2.3"):
        assert entry_problem(bad) is not None, bad


async def test_denied_address_gets_554_at_connect(config_factory) -> None:
    running = await start_server(config_factory(connection_list=("127.0.0.2", "127.0.0.16/255.255.255.240")))
    try:
        answers = [await asyncio.to_thread(greeting, running.port, source)
                   for source in ("127.0.0.1", "127.0.0.2", "127.0.0.17", "127.0.0.33")]
        assert answers[0].startswith("220 ") and answers[3].startswith("220 ")
        assert answers[1] == "554 5.7.1 mx.example.test Access denied for [127.0.0.2] [closed]"
        assert answers[2].startswith("554 5.7.1") and answers[2].endswith("[closed]")
        refused = [e for e in running.events if isinstance(e, ConnectionRefused)]
        assert [e.peer for e in refused] == ["127.0.0.2", "127.0.0.17"]
        assert (await running.server.counters_snapshot())["Inbound Connections Refused"] == 2
    finally:
        await running.server.stop()


async def test_only_listed_grants_just_the_list(config_factory) -> None:
    running = await start_server(config_factory(connection_grant="only_listed", connection_list=("127.0.0.1",)))
    try:
        assert (await asyncio.to_thread(greeting, running.port, "127.0.0.1")).startswith("220 ")
        assert (await asyncio.to_thread(greeting, running.port, "127.0.0.5")).startswith("554 5.7.1")
    finally:
        await running.server.stop()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_networks(config_factory) -> None:
    running = await start_server(config_factory(listen=("[::1]:0",), connection_list=("::1/128",)))
    try:
        def talk() -> str:
            sock = connect_from(running.port, "::1", host="::1")
            talk = Talk(sock)
            answer = talk.reply()[0]
            talk.close()
            return answer

        assert (await asyncio.to_thread(talk)).startswith("554 5.7.1 mx.example.test Access denied for [::1]")
    finally:
        await running.server.stop()


RECORDS = DnsRecords(
    hosts=[("good.lab.test", "127.0.0.2")],  # A and PTR: forward-confirmed
    extra=["--ptr-record=3.0.0.127.in-addr.arpa,fake.lab.test"],  # a PTR whose name has no matching A
    timeout=["4.0.0.127.in-addr.arpa"],  # the reverse zone of 127.0.0.4 does not answer
)


async def test_domain_names_are_forward_confirmed(tmp_path: Path, config_factory) -> None:
    with running_dnsmasq(tmp_path / "dns", RECORDS) as dns:
        running = await start_server(config_factory(dns_servers=(dns.server,), connection_list=("lab.test",)))
        try:
            good = await asyncio.to_thread(greeting, running.port, "127.0.0.2")
            fake = await asyncio.to_thread(greeting, running.port, "127.0.0.3")
            silent = await asyncio.to_thread(greeting, running.port, "127.0.0.4")
            nameless = await asyncio.to_thread(greeting, running.port, "127.0.0.5")
        finally:
            await running.server.stop()
    assert good.startswith("554 5.7.1")  # good.lab.test is in lab.test: denied
    assert fake.startswith("220 ")  # claims lab.test, but the name does not lead back: not in the list
    assert silent == "421 4.7.1 mx.example.test Cannot check your address now, try again later [closed]"
    assert nameless.startswith("220 ")


async def test_only_listed_domain(tmp_path: Path, config_factory) -> None:
    with running_dnsmasq(tmp_path / "dns", RECORDS) as dns:
        running = await start_server(config_factory(dns_servers=(dns.server,), connection_grant="only_listed",
                                                    connection_list=("*.lab.test",)))
        try:
            answers = [await asyncio.to_thread(greeting, running.port, f"127.0.0.{n}") for n in (2, 3, 5)]
        finally:
            await running.server.stop()
    assert answers[0].startswith("220 ")
    assert answers[1].startswith("554 5.7.1") and answers[2].startswith("554 5.7.1")


async def test_reverse_dns_in_received(tmp_path: Path, config_factory) -> None:
    with running_dnsmasq(tmp_path / "dns", RECORDS) as dns:
        running = await start_server(config_factory(dns_servers=(dns.server,), reverse_dns_lookup=True))
        try:
            def send(source: str) -> None:
                talk, _ = Talk.open(running.port, source)
                for line in ("HELO client.test", "MAIL FROM:<a@example.test>", f"RCPT TO:<{source}@example.test>",
                             "DATA"):
                    talk.cmd(line)
                assert talk.cmd("Subject: x\r\n\r\nx\r\n.").startswith("250 2.6.0")
                talk.close()

            for source in ("127.0.0.2", "127.0.0.3"):
                await asyncio.to_thread(send, source)
            await running.wait_for(lambda: len(running.drop_files()) == 2)
            received = {}
            for path in running.drop_files():
                data = path.read_bytes()
                _, recipients, offset = split_envelope(data)
                received[recipients[0]] = data[offset:].split(b"\r\n")[0]
        finally:
            await running.server.stop()
    assert received["127.0.0.2@example.test"] == b"Received: from client.test (good.lab.test [127.0.0.2])"
    assert received["127.0.0.3@example.test"] == b"Received: from client.test (unverified [127.0.0.3])"
