"""Outbound routing: which hosts to try for a recipient domain, and the DNS lookups (MX, A/AAAA) behind it.

Invariants:
- Every lookup ends in a result or a ``RouteError`` that says whether it is permanent (NDR now) or
  temporary (retry later), with an RFC 3463 enhanced status code and a sentence for the NDR.
- Names are looked up as absolute names: a system search list never turns a mail domain into another one.
- Truncated UDP answers are asked again over TCP (dnspython does so when a UDP answer has TC=1).
- ``Resolver.queries`` counts lookups sent to a DNS server (IIS's "DNS Queries Total"); cache hits and
  IP literals do not count.
- ``route_for`` is pure (configuration in, plan out); only ``resolve_route`` and ``Resolver`` touch the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.conf.addresses import classify
from engine.conf.config import Config, DomainConfig
from engine.conf.hostport import join_hostport, split_hostport
from engine.errors import EngineError

# dnspython (some 60 ms to import) is imported where a lookup is made, not at start: an engine that delivers
# nothing remotely never loads it.
if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.name
    import dns.rdata
    import dns.rdatatype
    import dns.resolver

# RFC 3463 / RFC 7505 enhanced status codes of the failures routing can meet.
BAD_DOMAIN = "5.1.2"  # the recipient's domain does not exist
NULL_MX = "5.1.10"  # the domain says it accepts no mail
NO_ROUTE = "5.4.4"  # no address for any host that would take the mail
DNS_TEMPORARY = "4.4.3"  # directory server failure: try again later

CACHE_SIZE = 1024
PER_SERVER_TIMEOUT = 2.0  # seconds one server gets, so that a dead first server leaves time for the next

Records = tuple["dns.rdata.Rdata", ...]


class RouteError(EngineError):
    """No address to deliver to; ``enhanced`` is the RFC 3463 status code, ``reason`` one sentence."""

    def __init__(self, enhanced: str, reason: str) -> None:
        super().__init__(f"{enhanced} {reason}")
        self.enhanced = enhanced
        self.reason = reason

    @property
    def permanent(self) -> bool:
        return self.enhanced.startswith("5")

    @property
    def reply(self) -> str:
        """The failure as an SMTP-style reply line, for per-recipient outcomes and NDR diagnostics."""
        return f"{550 if self.permanent else 451} {self.enhanced} {self.reason}"


class PermanentRouteError(RouteError):
    """A final answer: the mail cannot be routed (NXDOMAIN, null MX, no address record)."""


class TemporaryRouteError(RouteError):
    """The DNS could not answer now (SERVFAIL, REFUSED, time-out, no server configured): retry later."""


@dataclass(frozen=True)
class MxResult:
    """Where mail for ``domain`` goes: the hosts in the order to try them."""

    domain: str
    hosts: tuple[str, ...]
    implicit: bool = False  # no MX records: the domain itself is the host (RFC 5321 §5.1)


def _absolute(text: str) -> dns.name.Name:
    import dns.exception
    import dns.name

    try:
        return dns.name.from_text(text.rstrip(".") + ".")
    except (dns.exception.DNSException, UnicodeError) as exc:  # empty or long labels, bad IDN
        raise PermanentRouteError(BAD_DOMAIN, f"{text!r} is not a valid domain name ({exc})") from exc


def ip_literal(text: str) -> str | None:
    """``text`` as a normalised IP address ("[...]" and "IPv6:" allowed, RFC 5321 literals), or None."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _negative_ttl(answer: dns.resolver.Answer) -> int:
    """RFC 2308: a no-data answer may be cached by its SOA; without an SOA it should not be cached."""
    import dns.rdatatype

    for rrset in answer.response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return min(rrset.ttl, getattr(rrset[0], "minimum", 0))
    return 0


def _server_errors(exc: dns.resolver.NoNameservers) -> str:
    """What each server said, short: "127.0.0.1:5353 SERVFAIL, [::1]:53 timed out"."""
    import dns.rcode

    parts = []
    for server, _tcp, port, error, response in exc.kwargs.get("errors") or []:
        address = str(server).removeprefix("Do53:").rpartition("@")[0] or str(server)
        what = dns.rcode.to_text(response.rcode()) if response is not None else str(error) or type(error).__name__
        parts.append(f"{join_hostport(address, port)} {what}")
    return ", ".join(parts) or "no server answered"


@dataclass
class _Asking:
    """A lookup on the wire and how many askers wait for it."""

    task: asyncio.Task[Records | None]
    waiting: int = 0


class Resolver:
    """Asynchronous MX and address lookups against ``servers`` ("HOST[:PORT]"), or the system's resolver.

    ``timeout`` bounds one lookup as a whole; ``rng`` orders MX hosts of equal preference; ``clock``
    (monotonic seconds) ages the small TTL cache. Tests inject the last two.
    """

    def __init__(self, servers: Sequence[str] = (), timeout: float = 5.0, *,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._servers = [split_hostport(text, 53, allow_zero=False) for text in servers]
        for host, _port in self._servers:
            if ip_literal(host) is None:
                raise ValueError(f"DNS server {host!r} is not an IP address")
        self.timeout = timeout
        self.queries = 0
        self._rng = rng or random.Random()
        self._clock = clock
        self._cache: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], tuple[float, Records]] = {}
        # Lookups on the wire now: the same question asked meanwhile waits for that answer (a drain starts many
        # connections to one domain at once, and an answer that may not be cached is asked once, not per batch).
        self._asking: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], _Asking] = {}
        self._dns: dns.asyncresolver.Resolver | None = None

    def use_servers(self, servers: Sequence[str]) -> None:
        """Ask other DNS servers from the next lookup on (``dns_servers`` applied live); the cache is dropped."""
        parsed = [split_hostport(text, 53, allow_zero=False) for text in servers]
        if parsed != self._servers:
            self._servers, self._dns = parsed, None
            self._cache.clear()

    def _resolver(self) -> dns.asyncresolver.Resolver:
        """The dnspython resolver, made on first use: a machine without resolv.conf fails lookups, not start."""
        import dns.asyncresolver
        import dns.exception
        import dns.nameserver

        if self._dns is None:
            if self._servers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in self._servers]
            else:
                try:
                    resolver = dns.asyncresolver.Resolver()
                except (dns.exception.DNSException, OSError) as exc:
                    raise TemporaryRouteError(DNS_TEMPORARY, f"no DNS server is configured ({exc})") from exc
            resolver.lifetime = self.timeout
            resolver.timeout = min(self.timeout, PER_SERVER_TIMEOUT)
            self._dns = resolver
        return self._dns

    async def _lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Records | None:
        """The records of one type, () when the name has none of that type, None when the name does not exist."""
        key = (name, rdtype)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        asking = self._asking.get(key)
        if asking is None:
            # Its own task, not the asker's: an asker that is cancelled leaves the answer to the others.
            task = asyncio.get_running_loop().create_task(self._ask(name, rdtype))
            asking = self._asking[key] = _Asking(task)
            task.add_done_callback(lambda done: self._asked(key, done))
        asking.waiting += 1
        try:
            return await asyncio.shield(asking.task)
        except asyncio.CancelledError:
            if asking.waiting == 1:
                asking.task.cancel()  # the last one waiting for it gave up: nobody wants the answer
            raise
        finally:
            asking.waiting -= 1

    def _asked(self, key: tuple[dns.name.Name, dns.rdatatype.RdataType], done: asyncio.Task[Records | None]) -> None:
        del self._asking[key]
        if not done.cancelled():
            done.exception()  # seen here: an error nobody waited for any more is not "never retrieved"

    async def _ask(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Records | None:
        """One lookup on the wire (cached by its TTL)."""
        import dns.exception
        import dns.rdatatype
        import dns.resolver

        key = (name, rdtype)
        resolver = self._resolver()
        self.queries += 1
        what = f"{name.to_text(omit_final_dot=True)} ({dns.rdatatype.to_text(rdtype)})"
        try:
            answer = await resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.Timeout as exc:
            raise TemporaryRouteError(DNS_TEMPORARY, f"DNS lookup of {what} timed out after {self.timeout:g} s") \
                from exc
        except dns.resolver.NoNameservers as exc:
            raise TemporaryRouteError(DNS_TEMPORARY, f"DNS lookup of {what} failed: {_server_errors(exc)}") from exc
        except dns.exception.DNSException as exc:
            raise TemporaryRouteError(DNS_TEMPORARY, f"DNS lookup of {what} failed: {exc}") from exc
        records: Records = tuple(answer.rrset) if answer.rrset is not None else ()
        ttl = answer.chaining_result.minimum_ttl if records else _negative_ttl(answer)
        if ttl > 0:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()  # crude but bounded; a relay's working set of domains is far smaller
            self._cache[key] = (self._clock() + ttl, records)
        return records

    async def mx_hosts(self, domain: str) -> MxResult:
        """MX hosts of ``domain`` by preference (equal ones shuffled); the domain itself when it has no MX."""
        import dns.name
        import dns.rdatatype
        import dns.rdtypes.mxbase

        records = await self._lookup(_absolute(domain), dns.rdatatype.MX)
        if records is None:
            raise PermanentRouteError(BAD_DOMAIN, f"the domain {domain} does not exist (NXDOMAIN)")
        mx = [(r.preference, r.exchange) for r in records if isinstance(r, dns.rdtypes.mxbase.MXBase)]
        if not mx:
            return MxResult(domain, (domain,), implicit=True)
        if any(exchange == dns.name.root for _, exchange in mx):
            # RFC 7505: a null MX stands alone; any MX pointing at "." means the domain takes no mail.
            raise PermanentRouteError(NULL_MX, f"the domain {domain} accepts no mail (null MX, RFC 7505)")
        hosts: list[str] = []
        for preference in sorted({preference for preference, _ in mx}):
            # Sorted before the shuffle, so the order depends on the random source only, not on the server's.
            same = sorted({exchange.to_text(omit_final_dot=True).lower() for p, exchange in mx if p == preference})
            self._rng.shuffle(same)
            hosts += [host for host in same if host not in hosts]
        return MxResult(domain, tuple(hosts))

    async def addresses(self, host: str) -> list[str]:
        """IPv4 then IPv6 addresses of ``host``; an IP address is returned as it is, without a lookup."""
        import dns.rdatatype

        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        name = _absolute(host)
        results = await asyncio.gather(self._lookup(name, dns.rdatatype.A), self._lookup(name, dns.rdatatype.AAAA),
                                       return_exceptions=True)
        found = [r.to_text() for result in results if isinstance(result, tuple) for r in result]
        if found:
            return found  # one family is enough to try; the other one's failure is not worth a retry
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if any(result is None for result in results):
            raise PermanentRouteError(NO_ROUTE, f"the host {host} does not exist (NXDOMAIN)")
        raise PermanentRouteError(NO_ROUTE, f"the host {host} has no address (A or AAAA) record")


# --- Routing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One way to reach a domain: its MX hosts, a named host (A/AAAA only), or an IP literal."""

    kind: str  # "mx" | "host" | "literal"
    name: str  # mx: the mail domain; host: a host name; literal: the IP address
    port: int
    smart_host: bool = False


@dataclass(frozen=True)
class Route:
    """What to do with mail for ``domain``: local (Drop) or the hops to try, in order."""

    domain: str
    local: bool
    hops: tuple[Hop, ...] = ()
    matched: DomainConfig | None = None  # the configured domain that matched (TLS required, HELO, ...)


@dataclass(frozen=True)
class Target:
    """One address to connect to; ``host`` is the name it came from (for EHLO transcripts and TLS)."""

    host: str
    address: str
    port: int
    smart_host: bool = False


def smart_host_hop(text: str, default_port: int) -> Hop:
    """A smart host setting as a hop: ``[1.2.3.4]``, ``[v6]:port`` or a bare IP skip DNS, a name gets A/AAAA."""
    host, port = split_hostport(text, default_port)
    literal = ip_literal(host)
    if literal is not None:
        return Hop("literal", literal, port, smart_host=True)
    return Hop("host", host.rstrip("."), port, smart_host=True)


def route_for(domain: str, config: Config) -> Route:
    """The route of one recipient domain; pure. A bad smart host string raises ValueError (config validates it)."""
    domain = domain.lower().rstrip(".")
    match = classify(domain, config.effective_domains)
    if match.kind == "local":
        return Route(domain, local=True, matched=match.domain)
    server = config.server
    port = server.outbound_port
    literal = ip_literal(domain) if domain.startswith("[") else None
    direct = Hop("literal", literal, port) if literal is not None else Hop("mx", domain, port)
    remote = match.domain
    if remote is not None and remote.route == "smarthost" and remote.smart_host:
        # "Forward all mail to smart host" of a remote domain overrides the virtual server's smart host.
        hops: tuple[Hop, ...] = (smart_host_hop(remote.smart_host, port),)
    elif server.smart_host:
        smart = smart_host_hop(server.smart_host, port)
        hops = (direct, smart) if server.attempt_direct_before_smart_host else (smart,)
    else:
        hops = (direct,)
    return Route(domain, local=False, hops=hops, matched=remote)


async def resolve_route(route: Route, resolver: Resolver) -> list[Target]:
    """Every address to try for one delivery attempt, in order, without repeats.

    A hop that fails is skipped while another one gives addresses; when none does, the error raised is
    temporary if any failure was (so the message is retried), else the first permanent one.
    """
    if route.local:
        return []
    per_hop = await asyncio.gather(*(_hop_targets(hop, resolver) for hop in route.hops), return_exceptions=True)
    targets: list[Target] = []
    seen: set[tuple[str, int]] = set()
    errors: list[RouteError] = []
    for result in per_hop:
        if isinstance(result, RouteError):
            errors.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            for target in result:
                if (target.address, target.port) not in seen:
                    seen.add((target.address, target.port))
                    targets.append(target)
    if targets:
        return targets
    raise _worst(errors) if errors else PermanentRouteError(NO_ROUTE, f"no route to {route.domain}")


async def _hop_targets(hop: Hop, resolver: Resolver) -> list[Target]:
    if hop.kind == "literal":
        return [Target(hop.name, hop.name, hop.port, hop.smart_host)]
    hosts = (await resolver.mx_hosts(hop.name)).hosts if hop.kind == "mx" else (hop.name,)
    per_host = await asyncio.gather(*(resolver.addresses(host) for host in hosts), return_exceptions=True)
    targets: list[Target] = []
    errors: list[RouteError] = []
    for host, result in zip(hosts, per_host, strict=True):
        if isinstance(result, RouteError):
            errors.append(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            targets += [Target(host, address, hop.port, hop.smart_host) for address in result]
    if targets or not errors:
        return targets
    if hop.kind == "mx" and len(hosts) > 1:
        worst = _worst(errors)
        raise type(worst)(worst.enhanced, f"no MX host of {hop.name} has an address: "
                          + "; ".join(e.reason for e in errors))
    raise _worst(errors)


def _worst(errors: Sequence[RouteError]) -> RouteError:
    """The error that decides: a temporary one means "try again later", so it wins over permanent ones."""
    return next((e for e in errors if not e.permanent), errors[0])
