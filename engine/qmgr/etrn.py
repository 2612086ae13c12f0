"""Mail held for ETRN: one rule for delivery (what not to send yet) and for the queue listing (what to say)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.conf.addresses import classify, domain_of
from engine.conf.config import DomainConfig


def holds(domain: str, domains: tuple[DomainConfig, ...]) -> bool:
    """Whether mail to ``domain`` (a recipient's domain) waits for ETRN: a remote domain entry marked
    "queue for remote triggered delivery" (Advanced tab) routes it."""
    route = classify(domain, domains)
    return route.kind == "remote" and route.domain is not None and route.domain.etrn_queue


def is_held(address: str, arrived: float, domains: tuple[DomainConfig, ...], released: Mapping[str, float]) -> bool:
    """A recipient waits for ETRN until the remote side (or the administrator) releases its domain: mail that
    arrived before the last release goes out; later mail waits for the next one."""
    domain = domain_of(address)
    return holds(domain, domains) and arrived > released.get(domain.lower(), -1.0)


def held_domains(pending: Iterable[str], arrived: float, domains: tuple[DomainConfig, ...],
                 released: Mapping[str, float]) -> tuple[str, ...]:
    """The recipient domains of ``pending`` that wait for ETRN, each once, in recipient order."""
    return tuple(dict.fromkeys(domain_of(address).lower() for address in pending
                               if is_held(address, arrived, domains, released)))
