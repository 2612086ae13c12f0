"""Check DNS (Advanced Delivery) against a real DNS server (dnsmasq on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_support import Dnsmasq, DnsRecords, running_dnsmasq
from engine_support import make_config

from engine.server import VirtualServer
from engine.smtp.dns_check import check_name

RECORDS = DnsRecords(mx=[("mail.test", "mx1.mail.test", 10), ("mail.test", "mx2.mail.test", 20)],
                     hosts=[("mx1.mail.test", "127.0.0.21"), ("mx2.mail.test", "127.0.0.22"),
                            ("mail.test", "127.0.0.20")],
                     null_mx=["nomail.test"])


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with running_dnsmasq(tmp_path_factory.mktemp("dns"), RECORDS) as server:
        yield server


async def test_a_name_with_addresses_and_mx(dnsmasq: Dnsmasq) -> None:
    report = await check_name("mail.test.", [dnsmasq.server])
    assert report.ok and report.addresses == ("127.0.0.20",) and report.mx == ("mx1.mail.test", "mx2.mail.test")
    assert report.servers == (dnsmasq.server,) and not report.mx_implicit
    host = await check_name("mx1.mail.test", [dnsmasq.server])
    assert host.addresses == ("127.0.0.21",) and host.mx == ("mx1.mail.test",) and host.mx_implicit


async def test_problems_are_said(dnsmasq: Dnsmasq) -> None:
    missing = await check_name("nowhere.test", [dnsmasq.server])
    assert not missing.ok and "does not exist" in missing.address_problem and "does not exist" in missing.mx_problem
    null = await check_name("nomail.test", [dnsmasq.server])
    assert "accepts no mail" in null.mx_problem
    bad = await check_name("mail.test", ["dns.example"])
    assert not bad.ok and "not an IP address" in bad.address_problem
    literal = await check_name("127.0.0.5", [dnsmasq.server])
    assert literal.addresses == ("127.0.0.5",)


async def test_the_server_checks_with_its_dns_servers_also_stopped(tmp_path: Path, dnsmasq: Dnsmasq) -> None:
    server = VirtualServer(make_config(tmp_path, dns_servers=(dnsmasq.server,)))
    report = await server.check_dns("mx2.mail.test")  # never started
    assert report.addresses == ("127.0.0.22",)
    unsaved = await server.check_dns("mx2.mail.test", ("127.0.0.1:1",))  # the sheet's list, not yet applied
    assert unsaved.servers == ("127.0.0.1:1",) and not unsaved.ok and unsaved.address_problem
