"""Connection control as pure functions: access-list entries (IP, network, domain name) and the grant/deny decision.

Entries are single addresses (``192.0.2.7``, ``2001:db8::1``), networks in CIDR or address/mask form
(``10.0.0.0/8``, ``10.0.0.0/255.0.0.0``, ``2001:db8::/32``; host bits must be clear) and domain names
(``example.com`` matches that name and every name under it, ``*.example.com`` only the names under it),
compared with the client's forward-confirmed reverse DNS name.

Invariants: a bad entry never widens access (it is reported by validation and skipped here); when the
decision depends on a name that could not be looked up for a temporary reason, the answer is "defer",
never "allow" (a client must not get in by making its reverse zone time out).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from engine.conf.config import is_domain_name

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Decision = Literal["allow", "deny", "defer"]
GRANT_MODES = ("all_except_listed", "only_listed")


@dataclass(frozen=True)
class NameResult:
    """The outcome of a reverse lookup: the verified name, a name that failed the forward check, or a failure."""

    name: str | None = None  # forward-confirmed PTR name, lower case, no final dot
    unverified: str | None = None  # a PTR name whose A/AAAA records do not include the address
    temporary: bool = False  # the lookup failed for now (time-out, SERVFAIL): nothing is known


@dataclass(frozen=True)
class AccessList:
    networks: tuple[Network, ...]
    domains: tuple[str, ...]  # "example.com" (name and below) or "*.example.com" (below only), lower case

    @property
    def needs_name(self) -> bool:
        return bool(self.domains)


def entry_problem(text: str) -> str | None:
    """Why ``text`` is not an access-list entry, or None."""
    if not text or text != text.strip():
        return f"{text!r}: empty or spaces around the entry"
    if _looks_like_address(text):
        try:
            ipaddress.ip_network(text)
        except ValueError as exc:
            return f"{text!r} is not an IP address or network: {exc}"
        return None
    return None if is_domain_name(text, wildcard=True) else f"{text!r} is not an IP address, network or domain name"


def _looks_like_address(text: str) -> bool:
    return ":" in text or "/" in text or text.replace(".", "").isdigit()


@lru_cache(maxsize=64)
def access_list(entries: tuple[str, ...]) -> AccessList:
    networks: list[Network] = []
    domains: list[str] = []
    for entry in entries:
        if entry_problem(entry) is not None:
            continue
        if _looks_like_address(entry):
            networks.append(ipaddress.ip_network(entry))
        else:
            domains.append(entry.lower().rstrip("."))
    return AccessList(tuple(networks), tuple(domains))


def normalized_ip(peer: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer address, scope id dropped and IPv4-mapped IPv6 (::ffff:a.b.c.d) as IPv4."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def ip_listed(peer: str, rules: AccessList) -> bool:
    address = normalized_ip(peer)
    return address is not None and any(address in network for network in rules.networks)


def name_listed(name: str, rules: AccessList) -> bool:
    name = name.lower().rstrip(".")
    for domain in rules.domains:
        if domain.startswith("*."):
            if name.endswith(domain[1:]):
                return True
        elif name == domain or name.endswith("." + domain):
            return True
    return False


def decide(mode: str, rules: AccessList, peer: str, names: NameResult | None) -> Decision:
    """May ``peer`` connect? ``names`` is needed only when ``rules.needs_name`` and the IP is not listed."""
    listed_value: bool | None
    if ip_listed(peer, rules):
        listed_value = True
    elif not rules.needs_name:
        listed_value = False
    elif names is None or names.temporary:
        listed_value = None
    else:
        listed_value = names.name is not None and name_listed(names.name, rules)
    if listed_value is None:
        return "defer"
    granted = not listed_value if mode == "all_except_listed" else listed_value
    return "allow" if granted else "deny"
