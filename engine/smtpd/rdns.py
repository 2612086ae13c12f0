"""Reverse DNS of inbound clients (dnspython): the PTR name, forward-confirmed by its A/AAAA records, cached.

Used by connection control (domain-name entries) and by "perform reverse DNS lookup on incoming
messages" (the Received header names the client, or says "unverified"). Lookups go to the configured
DNS servers (``dns_servers``) or the system's resolver; one lookup is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from engine.conf.access import NameResult, normalized_ip
from engine.conf.hostport import split_hostport

if TYPE_CHECKING:  # dnspython is imported by the first lookup (a server that looks up nobody never loads it)
    import dns.asyncresolver

MAX_PTR_NAMES = 3  # PTR names tried for the forward check (a client controls its reverse zone)
CACHE_SIZE = 4096
POSITIVE_SECONDS = 300.0
NEGATIVE_SECONDS = 60.0


class PeerNames:
    """Forward-confirmed reverse lookups with a small cache; temporary failures are not cached."""

    def __init__(self, servers: Sequence[str] = (), timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.servers = tuple(servers)
        self.timeout = timeout
        self.lookups = 0
        self._clock = clock
        self._cache: dict[str, tuple[float, NameResult]] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None

    def _dns(self) -> dns.asyncresolver.Resolver:
        import dns.asyncresolver
        import dns.nameserver

        if self._resolver is None:
            if self.servers:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)
                                        for host, port in (split_hostport(s, 53) for s in self.servers)]
            else:
                resolver = dns.asyncresolver.Resolver()
            resolver.lifetime = self.timeout
            resolver.timeout = min(self.timeout, 2.0)
            self._resolver = resolver
        return self._resolver

    async def lookup(self, peer: str) -> NameResult:
        """The verified name of ``peer`` (an IP address as text)."""
        import dns.exception

        address = normalized_ip(peer)
        if address is None:
            return NameResult()
        key = str(address)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        try:
            result = await asyncio.wait_for(self._lookup(address), self.timeout * 2)
        except (TimeoutError, dns.exception.DNSException, OSError):
            return NameResult(temporary=True)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        ttl = POSITIVE_SECONDS if result.name else NEGATIVE_SECONDS
        self._cache[key] = (self._clock() + ttl, result)
        return result

    async def _lookup(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> NameResult:
        import dns.name
        import dns.rdatatype
        import dns.resolver
        import dns.reversename

        resolver = self._dns()
        self.lookups += 1
        try:
            answer = await resolver.resolve(dns.reversename.from_address(str(address)), dns.rdatatype.PTR,
                                            search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return NameResult()
        names = [r.target.to_text(omit_final_dot=True).lower() for r in answer][:MAX_PTR_NAMES]
        rdtype = dns.rdatatype.A if address.version == 4 else dns.rdatatype.AAAA
        for name in names:
            try:
                forward = await resolver.resolve(dns.name.from_text(name + "."), rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            if any(ipaddress.ip_address(r.to_text()) == address for r in forward):
                return NameResult(name=name)
        return NameResult(unverified=names[0] if names else None)
