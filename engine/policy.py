"""Inbound policy as pure functions: who may relay, and what a recipient address is allowed to be."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from engine.addresses import classify, domain_of
from engine.config import Config

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue  # validation reports bad entries; a bad one never widens access
    return tuple(networks)


def peer_in(peer: str, entries: Iterable[str]) -> bool:
    """True when the client address is inside one of the listed addresses or networks."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(tuple(entries)))


def relay_permitted(peer: str, authenticated: bool, config: Config) -> bool:
    server = config.server
    if authenticated and server.authenticated_may_relay:
        return True
    return peer_in(peer, server.relay_allowed)


def recipient_allowed(address: str, peer: str, authenticated: bool, config: Config) -> bool:
    """Local domains and relay-enabled remote domains take mail from anyone; others only from relays."""
    route = classify(domain_of(address), config.effective_domains)
    if route.kind == "local":
        return True
    if route.domain is not None and route.domain.relay_allowed:
        return True
    return relay_permitted(peer, authenticated, config)
