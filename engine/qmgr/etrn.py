"""Mail held for ETRN: one rule for delivery and for the queue listing, and the release times kept across restarts."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from engine.conf.addresses import classify, domain_of
from engine.conf.config import DomainConfig
from engine.store.mailroot import write_durable

log = logging.getLogger(__name__)


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


RELEASES_FILE = "etrn-releases.json"  # in the Mailroot: domain -> when it was last released


def releases_path(mailroot: Path) -> Path:
    return mailroot / RELEASES_FILE


def load_releases(path: Path) -> dict[str, float]:
    """The release times kept by ``save_releases``; none when the file is missing. A damaged file holds the
    mail again (the safe side: nothing is sent that the remote side did not ask for) and is said in the log."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("ignored %s (%s): mail held for ETRN waits for the next release", path, error)
        return {}
    if not isinstance(data, dict):
        log.warning("ignored %s (not an object): mail held for ETRN waits for the next release", path)
        return {}
    return {str(domain).lower(): float(when) for domain, when in data.items()
            if isinstance(when, (int, float)) and not isinstance(when, bool)}


def save_releases(path: Path, released: Mapping[str, float]) -> None:
    """Keep the release times durably, so mail released before a restart is not held again after it."""
    write_durable(path, json.dumps(dict(sorted(released.items())), indent=1).encode())
