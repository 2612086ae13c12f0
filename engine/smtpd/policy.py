"""Inbound policy as pure functions: who may relay, and what a recipient address is allowed to be.

Relay tricks: address forms that some MTA on the way might read as "send it on elsewhere" — the percent
hack (``user%other@local``), source routes (``<@a,@b:user@c>``), bang paths (``other!user@local``), quoted
local parts hiding an ``@`` (``"user@other"@local``), trailing dots and domain literals (``user@[192.0.2.1]``,
which routing would send to that address, even this host's own). Only clients that may relay use them;
for everyone else they are refused like any relay (550 5.7.1), whatever the domain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from engine.conf.access import Decision, NameResult, access_list, decide
from engine.conf.addresses import Path, classify, domain_of
from engine.conf.config import Config, ServerConfig

# recipient_refusal's answer when relaying depends on the client's name and that name is not known (yet):
# look it up and ask again; still unknown (the lookup failed for now) = a temporary refusal, never a relay.
RELAY_NAME_NEEDED: Final = "relay (client name needed)"


def relay_decision(peer: str, authenticated: bool, server: ServerConfig, names: NameResult | None) -> Decision:
    """May this client relay? IIS's Relay Restrictions: 'only the list below' (the default) or 'all except the
    list below'; the list holds addresses, networks and domain names (forward-confirmed reverse DNS)."""
    if authenticated and server.authenticated_may_relay:
        return "allow"
    return decide(server.relay_mode, access_list(server.relay_allowed), peer, names)


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


def relay_needed(path: Path, config: Config) -> str | None:
    """Why delivering to ``path`` would be relaying (a short reason), or None when anyone may send to it:
    the local domains and the remote domains that allow relay, in plain ``user@domain`` form only."""
    trick = relay_trick(path)
    if trick is not None:
        return trick
    route = classify(domain_of(path.address), config.effective_domains)
    if route.kind == "local":
        return None
    if route.domain is not None and route.domain.relay_allowed:
        return None
    return "relay"


def recipient_refusal(path: Path, peer: str, authenticated: bool, config: Config,
                      names: NameResult | None = None) -> str | None:
    """Why the recipient is refused as a relay attempt (a short reason), None when it is accepted, or
    RELAY_NAME_NEEDED. Clients that may relay send anywhere; everyone else only where no relay is needed."""
    why = relay_needed(path, config)
    if why is None:
        return None
    decision = relay_decision(peer, authenticated, config.server, names)
    if decision == "defer":
        return RELAY_NAME_NEEDED
    return None if decision == "allow" else why


def recipient_allowed(path: Path, peer: str, authenticated: bool, config: Config,
                      names: NameResult | None = None) -> bool:
    return recipient_refusal(path, peer, authenticated, config, names) is None
