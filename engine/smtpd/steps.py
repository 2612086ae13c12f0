"""The awaited steps of an inbound session: connection screening and the password check.

Each returns what the session does next; the protocol holds its input while one runs.
"""

from __future__ import annotations

import asyncio
import logging

from engine.conf.access import NameResult, access_list, decide, ip_listed
from engine.conf.config import Config
from engine.events import ConnectionRefused, EventBus, SessionChanged
from engine.smtpd.machine import CheckPassword, Out, SmtpMachine, shown_name
from engine.smtpd.replies import reply
from engine.smtpd.security import AuthFailed, Security
from engine.smtpd.sessions import LiveSession

log = logging.getLogger(__name__)


def needs_screening(config: Config) -> bool:
    server = config.server
    return bool(server.reverse_dns_lookup or server.connection_list or server.connection_grant != "all_except_listed")


async def screen(config: Config, security: Security, bus: EventBus, peer: str,
                 machine: SmtpMachine) -> tuple[str | None, NameResult | None]:
    """Connection control (and the reverse lookup for Received): (the refusal to greet with or None, the names)."""
    server = config.server
    rules = access_list(server.connection_list)
    names = None
    if server.reverse_dns_lookup or (rules.needs_name and not ip_listed(peer, rules)):
        names = await security.names(config).lookup(peer)
        machine.peer_names, machine.names_looked_up = names, True  # relay rules by name use the same answer
    decision = decide(server.connection_grant, rules, peer, names)
    if decision == "allow":
        return None, names
    reason = "not granted by connection control" if decision == "deny" else \
        "connection control needs the client's name and the reverse DNS lookup failed for now"
    bus.publish(ConnectionRefused(peer, reason))
    log.info("connection from %s refused: %s", peer, reason)
    key = "access_denied" if decision == "deny" else "access_deferred"
    return reply(key, fqdn=config.fqdn, peer=peer), names


async def check_password(config: Config, security: Security, bus: EventBus, peer: str, machine: SmtpMachine,
                         out: CheckPassword, live: LiveSession | None) -> list[Out]:
    """AUTH's verdict, with the lock-out counts (per client address) and the delay after a failure."""
    server = config.server
    limiter = security.limiter
    # The slot is taken before the check: parallel connections cannot all get a verdict.
    locked = limiter.begin(peer, threshold=server.auth_lockout_failures, period=float(server.auth_lockout_seconds))
    if locked:
        return machine.auth_locked(locked)
    account = None
    try:
        if not out.for_other:  # acting for another identity is not supported
            account = await security.check_password(config, bus, out.login, out.password)
    finally:
        limiter.end(peer)  # a failure is recorded right after, with no await between
    if account is not None:
        if live is not None:
            live.user = account
            bus.publish(SessionChanged(live.session_id))
        return machine.auth_checked(account)
    verdict = limiter.failed(peer, threshold=server.auth_lockout_failures, period=float(server.auth_lockout_seconds),
                             base_delay=server.auth_failure_delay_ms / 1000)
    name = shown_name(out.login)
    log.info("AUTH failed from %s for %r (%d failure(s)%s)", peer, name, verdict.failures,
             ", locked out" if verdict.locked else "")
    bus.publish(AuthFailed(peer, name, verdict.failures, verdict.locked))
    if verdict.delay:
        await asyncio.sleep(verdict.delay)
    return machine.auth_checked(None)
