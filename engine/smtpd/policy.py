"""Inbound policy as pure functions: who may relay, and what a recipient address is allowed to be.

Relay tricks: address forms that some MTA on the way might read as "send it on elsewhere" — the percent
hack (``user%other@local``), source routes (``<@a,@b:user@c>``), bang paths (``other!user@local``), quoted
local parts hiding an ``@`` (``"user@other"@local``), trailing dots and domain literals (``user@[192.0.2.1]``,
which routing would send to that address, even this host's own). Only clients that may relay use them;
for everyone else they are refused like any relay (550 5.7.1), whatever the domain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from functools import lru_cache

from engine.conf.addresses import Path, classify, domain_of
from engine.conf.config import Config

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


RELAY_TRICKS: tuple[tuple[str, Callable[[Path], bool]], ...] = (
    ("source route", lambda path: bool(path.source_route)),
    ("percent hack", lambda path: "%" in path.address.rpartition("@")[0]),
    ("bang path", lambda path: "!" in path.address.rpartition("@")[0]),
    ("'@' in the local part", lambda path: "@" in path.address.rpartition("@")[0]),
    ("trailing dot", lambda path: path.address.endswith(".")),
    ("domain literal", lambda path: path.address.rpartition("@")[2].startswith("[")),
)


def relay_trick(path: Path) -> str | None:
    """The name of the first relay trick in ``path``, or None."""
    return next((name for name, found in RELAY_TRICKS if found(path)), None)


def recipient_refusal(path: Path, peer: str, authenticated: bool, config: Config) -> str | None:
    """Why the recipient is refused as a relay attempt (a short reason), or None when it is accepted.

    Clients that may relay send anywhere; everyone else reaches the local domains and remote domains that
    allow relay, in plain ``user@domain`` form only.
    """
    if relay_permitted(peer, authenticated, config):
        return None
    trick = relay_trick(path)
    if trick is not None:
        return trick
    route = classify(domain_of(path.address), config.effective_domains)
    if route.kind == "local":
        return None
    if route.domain is not None and route.domain.relay_allowed:
        return None
    return "relay"


def recipient_allowed(path: Path, peer: str, authenticated: bool, config: Config) -> bool:
    return recipient_refusal(path, peer, authenticated, config) is None
