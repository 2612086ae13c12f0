"""Tests of outbound routing (engine.smtp.resolver): route_for as a table, lookups against a real dnsmasq."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, MutableSequence
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest
from dns_support import Dnsmasq, DnsRecords, free_port, running_dnsmasq

from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.smtp.resolver import (
    Hop,
    MxResult,
    PermanentRouteError,
    Resolver,
    Route,
    RouteError,
    Target,
    TemporaryRouteError,
    resolve_route,
    route_for,
)

MANY = [f"127.0.1.{i}" for i in range(1, 101)]  # far more than a 512-byte UDP answer holds

RECORDS = DnsRecords(
    mx=[
        ("multi.test", "mx1.multi.test", 10),
        ("multi.test", "mx2a.multi.test", 20),
        ("multi.test", "mx2b.multi.test", 20),
        ("multi.test", "mx2c.multi.test", 20),
        ("multi.test", "mx3.multi.test", 30),  # has no address: skipped
        ("noaddr.test", "gone.noaddr.test", 10),
        ("halfslow.test", "mx.halfslow.test", 10),
        ("halfslow.test", "host.slow.test", 20),
        ("allslow.test", "host.slow.test", 10),
        ("shared.test", "mx1.multi.test", 10),
        ("shared.test", "alias-of-mx1.shared.test", 20),
    ],
    hosts=[
        ("mx1.multi.test", "127.0.0.11"),
        ("mx2a.multi.test", "127.0.0.21"),
        ("mx2b.multi.test", "127.0.0.22"),
        ("mx2c.multi.test", "127.0.0.23"),
        ("mx2c.multi.test", "::1"),
        ("plain.test", "::1"),  # AAAA given first: IPv4 still comes first
        ("plain.test", "127.0.0.12"),
        ("v6only.test", "::1"),
        ("mx.halfslow.test", "127.0.0.31"),
        ("alias-of-mx1.shared.test", "127.0.0.11"),
        ("smart.test", "127.0.0.50"),
        *[("many.test", address) for address in MANY],
    ],
    null_mx=["nullmx.test"],
    nxdomain=["nx.test"],
    timeout=["slow.test"],
    servfail=["broken.test"],
)

TIMEOUT = 3.0  # seconds a lookup may take: long enough for dnsmasq on a loaded machine, short for the slow ones


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with running_dnsmasq(tmp_path_factory.mktemp("dns"), RECORDS) as server:
        yield server


@pytest.fixture
def resolver(dnsmasq: Dnsmasq) -> Resolver:
    return Resolver([dnsmasq.server], timeout=TIMEOUT, rng=random.Random(1))


class Reversing(random.Random):
    """A random source whose shuffle reverses: the order it gives is known."""

    def shuffle(self, x: MutableSequence[Any], *args: Any) -> None:
        x.reverse()


async def eventually(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    """Whether ``condition`` holds within ``seconds`` (dnsmasq writes its log a moment after answering)."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.02)
    return True


# --- MX lookups --------------------------------------------------------------------------------------------


async def test_mx_hosts_in_preference_order(dnsmasq: Dnsmasq) -> None:
    resolver = Resolver([dnsmasq.server], timeout=TIMEOUT, rng=Reversing())
    result = await resolver.mx_hosts("multi.test")
    assert result == MxResult("multi.test", ("mx1.multi.test", "mx2c.multi.test", "mx2b.multi.test",
                                             "mx2a.multi.test", "mx3.multi.test"))
    assert resolver.queries == 1


async def test_equal_preferences_are_shuffled_by_the_random_source(dnsmasq: Dnsmasq) -> None:
    orders = set()
    for seed in range(40):
        result = await Resolver([dnsmasq.server], timeout=TIMEOUT, rng=random.Random(seed)).mx_hosts("multi.test")
        assert result.hosts[0] == "mx1.multi.test" and result.hosts[-1] == "mx3.multi.test"
        orders.add(result.hosts[1:4])
    assert len(orders) == 6  # every order of the three preference-20 hosts turns up
    # The same seed gives the same order, whatever order dnsmasq sends the records in.
    again = {(await Resolver([dnsmasq.server], rng=random.Random(7)).mx_hosts("multi.test")).hosts for _ in range(5)}
    assert len(again) == 1


async def test_no_mx_means_the_domain_itself(resolver: Resolver) -> None:
    assert await resolver.mx_hosts("plain.test") == MxResult("plain.test", ("plain.test",), implicit=True)
    assert await resolver.addresses("plain.test") == ["127.0.0.12", "::1"]


async def test_null_mx_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(PermanentRouteError) as caught:
        await resolver.mx_hosts("nullmx.test")
    assert caught.value.enhanced == "5.1.10" and caught.value.permanent
    assert "null MX" in caught.value.reason
    assert caught.value.reply.startswith("550 5.1.10 ")


async def test_nxdomain_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(PermanentRouteError) as caught:
        await resolver.mx_hosts("nx.test")
    assert caught.value.enhanced == "5.1.2"
    assert "does not exist" in caught.value.reason
    with pytest.raises(PermanentRouteError) as host:
        await resolver.addresses("mail.nx.test")
    assert host.value.enhanced == "5.4.4"


async def test_timeout_is_temporary(resolver: Resolver) -> None:
    with pytest.raises(TemporaryRouteError) as caught:
        await resolver.mx_hosts("slow.test")
    error = caught.value
    assert error.enhanced == "4.4.3" and not error.permanent
    assert "timed out" in error.reason and error.reply.startswith("451 4.4.3 ")


async def test_servfail_is_temporary(dnsmasq: Dnsmasq, resolver: Resolver) -> None:
    query = dns.message.make_query("broken.test.", "MX")
    assert dns.query.udp(query, dnsmasq.host, port=dnsmasq.port, timeout=2).rcode() == dns.rcode.SERVFAIL
    with pytest.raises(TemporaryRouteError) as caught:
        await resolver.mx_hosts("broken.test")
    assert caught.value.enhanced == "4.4.3"
    assert f"{dnsmasq.server} SERVFAIL" in caught.value.reason


async def test_dead_server_is_temporary() -> None:
    resolver = Resolver([f"127.0.0.1:{free_port()}"], timeout=TIMEOUT)
    with pytest.raises(TemporaryRouteError):
        await resolver.mx_hosts("multi.test")


async def test_second_server_answers_when_the_first_is_dead(dnsmasq: Dnsmasq) -> None:
    resolver = Resolver([f"127.0.0.1:{free_port()}", dnsmasq.server], timeout=3 * TIMEOUT)
    assert (await resolver.mx_hosts("multi.test")).hosts[0] == "mx1.multi.test"


async def test_no_system_configuration_is_temporary(monkeypatch: pytest.MonkeyPatch) -> None:
    def unconfigured(*args: Any, **kwargs: Any) -> None:
        raise dns.resolver.NoResolverConfiguration("no nameservers")

    resolver = Resolver()  # the system resolver is read at the first lookup, not here
    monkeypatch.setattr(dns.asyncresolver, "Resolver", unconfigured)
    with pytest.raises(TemporaryRouteError, match="no DNS server is configured") as caught:
        await resolver.mx_hosts("multi.test")
    assert caught.value.enhanced == "4.4.3"


async def test_bad_names_are_permanent(resolver: Resolver) -> None:
    for name in ("a..test", "x" * 64 + ".test"):
        with pytest.raises(PermanentRouteError) as caught:
            await resolver.mx_hosts(name)
        assert caught.value.enhanced == "5.1.2"
    assert resolver.queries == 0


def test_servers_must_be_ip_addresses() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        Resolver(["dns.example:53"])
    with pytest.raises(ValueError):
        Resolver(["127.0.0.1:0"])
    Resolver(["127.0.0.1", "[::1]:5353"])  # nothing is looked up yet


# --- Address lookups ------------------------------------------------------------------------------------


async def test_truncated_udp_answer_is_asked_again_over_tcp(dnsmasq: Dnsmasq, resolver: Resolver) -> None:
    udp = dns.query.udp(dns.message.make_query("many.test.", "A"), dnsmasq.host, port=dnsmasq.port, timeout=2)
    assert udp.flags & dns.flags.TC and len(udp.answer[0]) < len(MANY)  # the premise: UDP cannot carry it
    asked = dnsmasq.log().count("query[A] many.test from")
    addresses = await resolver.addresses("many.test")
    assert sorted(addresses) == sorted(MANY)
    assert resolver.queries == 2  # A and AAAA: the TCP retry is part of the same lookup
    # dnsmasq saw the A question twice: over UDP (truncated answer), then over TCP.
    assert await eventually(lambda: dnsmasq.log().count("query[A] many.test from") == asked + 2)


async def test_ipv6_only_host(resolver: Resolver) -> None:
    assert await resolver.addresses("v6only.test") == ["::1"]
    targets = await resolve_route(Route("v6only.test", False, (Hop("mx", "v6only.test", 25),)), resolver)
    assert targets == [Target("v6only.test", "::1", 25)]


async def test_ip_literals_pass_through(resolver: Resolver) -> None:
    assert await resolver.addresses("127.0.0.9") == ["127.0.0.9"]
    assert await resolver.addresses("::1") == ["::1"]
    assert await resolver.addresses("[IPv6:0:0:0:0:0:0:0:1]") == ["::1"]
    assert resolver.queries == 0


async def test_host_without_address_is_permanent(resolver: Resolver) -> None:
    with pytest.raises(PermanentRouteError, match="no address") as caught:
        await resolver.addresses("multi.test")  # exists (it has MX records) but has no A/AAAA
    assert caught.value.enhanced == "5.4.4"


async def test_query_counter_counts_each_lookup(resolver: Resolver) -> None:
    await resolver.mx_hosts("multi.test")
    await resolver.addresses("mx1.multi.test")
    await resolver.addresses("mx1.multi.test")  # TTL 0: not cached
    assert resolver.queries == 5


async def test_the_same_question_asked_at_once_goes_out_once(resolver: Resolver) -> None:
    """A drain starts many connections to one domain together: one MX, one A and one AAAA lookup for all of them
    (the AAAA no-data answer, which may not be cached, included)."""
    mx = await asyncio.gather(*(resolver.mx_hosts("multi.test") for _ in range(20)))
    assert len({frozenset(result.hosts) for result in mx}) == 1 and resolver.queries == 1  # equal MX shuffled
    addresses = await asyncio.gather(*(resolver.addresses("mx1.multi.test") for _ in range(20)))
    assert all(found == addresses[0] for found in addresses) and resolver.queries == 1 + 2
    waiting = asyncio.ensure_future(resolver.addresses("mx1.multi.test"))
    other = asyncio.ensure_future(resolver.addresses("mx1.multi.test"))
    await asyncio.sleep(0)
    waiting.cancel()  # one asker gives up: the other still gets the answer
    assert await other == addresses[0] and resolver.queries == 1 + 2 + 2
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_lookup_nobody_waits_for_any_more_is_dropped(resolver: Resolver) -> None:
    asker = asyncio.ensure_future(resolver.mx_hosts("slow.test"))  # never answered
    await asyncio.sleep(0.05)
    asker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asker
    for _ in range(5):
        await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []  # no lookup left behind


async def test_cache_respects_ttl(tmp_path: Path) -> None:
    now = [1000.0]
    records = DnsRecords(mx=[("ttl.test", "mx.ttl.test", 5)], hosts=[("mx.ttl.test", "127.0.0.5")], ttl=60)
    with running_dnsmasq(tmp_path, records) as server:
        resolver = Resolver([server.server], timeout=TIMEOUT, clock=lambda: now[0])
        for _ in range(3):
            assert (await resolver.mx_hosts("ttl.test")).hosts == ("mx.ttl.test",)
            assert await resolver.addresses("mx.ttl.test") == ["127.0.0.5"]
        # MX and A are cached; the AAAA no-data answer carries no SOA, so it is asked every time (RFC 2308).
        assert resolver.queries == 2 + 3
        now[0] += 61
        await resolver.mx_hosts("ttl.test")
        assert resolver.queries == 6


# --- route_for: a pure table -----------------------------------------------------------------------------

DOMAINS = (
    DomainConfig("example.test", "default"),
    DomainConfig("alias.test", "alias"),
    DomainConfig("partner.test", "remote", route="smarthost", smart_host="[127.0.0.7]:2525"),
    DomainConfig("*.wild.test", "remote", route="smarthost", smart_host="relay.wild.test"),
    DomainConfig("dnsroute.test", "remote", relay_allowed=True),
)


def config(**server: Any) -> Config:
    return Config(server=ServerConfig(fqdn="mx.example.test", **server), domains=DOMAINS)


def mx(domain: str, port: int = 25) -> Hop:
    return Hop("mx", domain, port)


@pytest.mark.parametrize(("domain", "server", "hops"), [
    ("other.test", {}, (mx("other.test"),)),
    ("Other.TEST.", {}, (mx("other.test"),)),
    ("other.test", {"outbound_port": 2526}, (mx("other.test", 2526),)),
    ("dnsroute.test", {}, (mx("dnsroute.test"),)),
    ("partner.test", {}, (Hop("literal", "127.0.0.7", 2525, True),)),
    ("partner.test", {"smart_host": "[127.0.0.8]"}, (Hop("literal", "127.0.0.7", 2525, True),)),
    ("a.wild.test", {}, (Hop("host", "relay.wild.test", 25, True),)),
    ("other.test", {"smart_host": "[127.0.0.8]"}, (Hop("literal", "127.0.0.8", 25, True),)),
    ("other.test", {"smart_host": "[127.0.0.8]:2525"}, (Hop("literal", "127.0.0.8", 2525, True),)),
    ("other.test", {"smart_host": "127.0.0.8"}, (Hop("literal", "127.0.0.8", 25, True),)),
    ("other.test", {"smart_host": "[::1]:2525"}, (Hop("literal", "::1", 2525, True),)),
    ("other.test", {"smart_host": "smart.test"}, (Hop("host", "smart.test", 25, True),)),
    ("other.test", {"smart_host": "smart.test:587", "outbound_port": 26}, (Hop("host", "smart.test", 587, True),)),
    ("dnsroute.test", {"smart_host": "smart.test"}, (Hop("host", "smart.test", 25, True),)),
    ("other.test", {"smart_host": "smart.test", "attempt_direct_before_smart_host": True},
     (mx("other.test"), Hop("host", "smart.test", 25, True))),
    ("[127.0.0.3]", {}, (Hop("literal", "127.0.0.3", 25),)),
    ("[ipv6:::1]", {}, (Hop("literal", "::1", 25),)),
    ("[127.0.0.3]", {"smart_host": "[127.0.0.8]"}, (Hop("literal", "127.0.0.8", 25, True),)),
])
def test_route_for_remote(domain: str, server: dict[str, Any], hops: tuple[Hop, ...]) -> None:
    route = route_for(domain, config(**server))
    assert not route.local
    assert route.hops == hops
    assert route.domain == domain.lower().rstrip(".")


@pytest.mark.parametrize("domain", ["example.test", "ALIAS.test", "alias.test."])
def test_route_for_local(domain: str) -> None:
    route = route_for(domain, config(smart_host="[127.0.0.8]"))
    assert route.local and route.hops == ()
    assert route.matched is not None and route.matched.type in ("default", "alias")


def test_route_for_keeps_the_remote_domain_settings() -> None:
    assert route_for("partner.test", config()).matched == DOMAINS[2]
    assert route_for("x.y.wild.test", config()).matched == DOMAINS[3]
    assert route_for("wild.test", config()).matched is None  # *.wild.test is sub-domains only


def test_route_for_implicit_default_domain_is_local() -> None:
    route = route_for("mx.example.test", Config(server=ServerConfig(fqdn="mx.example.test")))
    assert route.local


# --- resolve_route ------------------------------------------------------------------------------------------


async def test_resolve_route_lists_every_mx_address(dnsmasq: Dnsmasq) -> None:
    resolver = Resolver([dnsmasq.server], timeout=TIMEOUT, rng=Reversing())
    targets = await resolve_route(route_for("multi.test", config()), resolver)
    assert targets == [
        Target("mx1.multi.test", "127.0.0.11", 25),
        Target("mx2c.multi.test", "127.0.0.23", 25),
        Target("mx2c.multi.test", "::1", 25),
        Target("mx2b.multi.test", "127.0.0.22", 25),
        Target("mx2a.multi.test", "127.0.0.21", 25),
    ]  # mx3 has no address and is skipped


async def test_resolve_route_drops_repeated_addresses(resolver: Resolver) -> None:
    targets = await resolve_route(route_for("shared.test", config()), resolver)
    assert targets == [Target("mx1.multi.test", "127.0.0.11", 25)]


async def test_literal_smart_host_needs_no_dns(resolver: Resolver) -> None:
    targets = await resolve_route(route_for("multi.test", config(smart_host="[127.0.0.8]:2525")), resolver)
    assert targets == [Target("127.0.0.8", "127.0.0.8", 2525, smart_host=True)]
    assert resolver.queries == 0


async def test_named_smart_host_is_resolved_by_address_not_mx(resolver: Resolver) -> None:
    targets = await resolve_route(route_for("nx.test", config(smart_host="smart.test")), resolver)
    assert targets == [Target("smart.test", "127.0.0.50", 25, smart_host=True)]
    assert resolver.queries == 2  # A and AAAA of smart.test; nx.test itself is never looked up


async def test_direct_before_smart_host(resolver: Resolver) -> None:
    settings = config(smart_host="smart.test", attempt_direct_before_smart_host=True)
    targets = await resolve_route(route_for("plain.test", settings), resolver)
    assert targets == [Target("plain.test", "127.0.0.12", 25), Target("plain.test", "::1", 25),
                       Target("smart.test", "127.0.0.50", 25, smart_host=True)]
    # Direct delivery impossible (NXDOMAIN, null MX): the smart host still gets the mail.
    for domain in ("nx.test", "nullmx.test"):
        assert await resolve_route(route_for(domain, settings), resolver) == [targets[-1]]


async def test_resolve_route_failures(resolver: Resolver) -> None:
    cases = [("nx.test", PermanentRouteError, "5.1.2"), ("nullmx.test", PermanentRouteError, "5.1.10"),
             ("noaddr.test", PermanentRouteError, "5.4.4"), ("allslow.test", TemporaryRouteError, "4.4.3"),
             ("broken.test", TemporaryRouteError, "4.4.3")]
    for domain, kind, enhanced in cases:
        with pytest.raises(RouteError) as caught:
            await resolve_route(route_for(domain, config()), resolver)
        assert type(caught.value) is kind and caught.value.enhanced == enhanced, domain


async def test_one_slow_mx_host_does_not_stop_the_others(resolver: Resolver) -> None:
    targets = await resolve_route(route_for("halfslow.test", config()), resolver)
    assert targets == [Target("mx.halfslow.test", "127.0.0.31", 25)]


async def test_temporary_failure_wins_when_nothing_resolves(resolver: Resolver) -> None:
    settings = config(smart_host="host.slow.test", attempt_direct_before_smart_host=True)
    with pytest.raises(TemporaryRouteError):
        await resolve_route(route_for("nx.test", settings), resolver)


async def test_local_route_has_no_targets(resolver: Resolver) -> None:
    assert await resolve_route(route_for("example.test", config()), resolver) == []
    assert resolver.queries == 0
