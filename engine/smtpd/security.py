"""Security state one virtual server's inbound sessions share: TLS context, users, failed logins, peer names.

Everything here outlives a session and follows the configuration as it changes: a new certificate file
or path is loaded at the next connection, the users file is read again when it changes, a new DNS server
list gets a new resolver. A certificate, key or users file that cannot be used is said at ERROR level,
in the log and as an ErrorEvent, once per file version: at start-up and reload (``check``), and when a
connection first meets it. Password checks (scrypt, CPU-bound) run in worker threads, at most
``PARALLEL_CHECKS`` at a time on threads of their own, so a flood of AUTH commands can take neither the
event loop, nor every core, nor the loop's default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine.conf.config import Config
from engine.events import CertificateLoaded, ErrorEvent, Event, EventBus
from engine.smtpd.authlimit import AuthLimiter
from engine.smtpd.rdns import PeerNames
from engine.smtpd.tls import TlsError, TlsStore, certificate_info
from engine.smtpd.users import UserStore

log = logging.getLogger(__name__)

PARALLEL_CHECKS = 2


@dataclass(frozen=True)
class AuthFailed(Event):
    """A failed AUTH: the peer, the name it tried (never the password), failures remembered, lock-out begun."""

    peer: str
    user: str
    failures: int
    locked: bool


@dataclass(frozen=True)
class AuthRefusedLocked(Event):
    """An AUTH from an address that is locked out; it was not checked."""

    peer: str
    seconds_left: float


@dataclass(frozen=True)
class AuthSucceeded(Event):
    peer: str
    user: str


@dataclass(frozen=True)
class SecurityWarning(Event):
    """A configuration that weakens security (passwords accepted in clear text...)."""

    message: str


class Security:
    """Shared by the sessions of one virtual server; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.tls = TlsStore()
        self.limiter = AuthLimiter(clock)
        self._users: UserStore | None = None
        self._names: PeerNames | None = None
        self._checks: ThreadPoolExecutor | None = None
        self._warned: set[str] = set()
        self._users_error = ""  # the users file problem last said, so that each is said once

    def check(self, config: Config, bus: EventBus) -> None:
        """Load the certificate and the users file now and say what is wrong with them (start-up, reload)."""
        self.tls_context(config, bus)
        if config.server.auth_basic:
            self._users_problem(config, bus)
        relay = open_relay(config.server.relay_mode, config.server.relay_allowed)
        if relay:
            self.warn_once(bus, f"open_relay:{relay}", f"{relay}: this server is an open relay (spammers look for "
                                                       "them); list the clients that may relay instead")

    def tls_context(self, config: Config, bus: EventBus) -> ssl.SSLContext | None:
        server = config.server
        reloads = self.tls.reloads
        context = self.tls.context(server.tls_certificate, server.tls_key)
        if context is not None and self.tls.reloads != reloads:
            self._certificate_loaded(bus, server.tls_certificate)
        error = self.tls.fresh_error()
        if error:
            _error(bus, "tls", f"{error}; STARTTLS is not offered")
        if context is None and server.require_tls:
            key = f"require_tls:{server.tls_certificate}:{self.tls.reloads}"
            if key not in self._warned:
                self._warned.add(key)
                _error(bus, "tls", "TLS is required but no usable certificate is installed: no mail is accepted")
        if server.auth_basic and server.auth_plaintext_allowed:
            self.warn_once(bus, "plaintext_auth",
                           "Basic authentication is offered without TLS: passwords may cross the network in "
                           "clear text")
        return context

    @staticmethod
    def _certificate_loaded(bus: EventBus, path: str) -> None:
        """The event log records each certificate loaded, and warns when it expires soon."""
        try:
            info = certificate_info(Path(path))
        except TlsError:
            return
        bus.publish(CertificateLoaded(path, info.subject, info.not_after.timestamp()))

    def warn_once(self, bus: EventBus, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)
            bus.publish(SecurityWarning(message))

    def _users_problem(self, config: Config, bus: EventBus) -> None:
        store = self.users(config)
        error = store.error if store is not None else ""
        if error and error != self._users_error:
            _error(bus, "auth", f"{error}; nobody can authenticate")
        self._users_error = error

    def users(self, config: Config) -> UserStore | None:
        path = config.server.users_file
        if not path:
            return None
        if self._users is None or str(self._users.path) != path:
            self._users = UserStore(Path(path))
        return self._users

    def names(self, config: Config) -> PeerNames:
        servers = config.server.dns_servers
        if self._names is None or self._names.servers != servers:
            self._names = PeerNames(servers)
        return self._names

    async def check_password(self, config: Config, bus: EventBus, login: str, password: str) -> str | None:
        """The account ``login`` names (with the default logon domain tried too) if the password fits, else None."""
        store = self.users(config)
        self._users_problem(config, bus)
        if store is None:
            return None
        candidates = [login]
        domain = config.server.auth_default_domain
        if domain and "@" not in login:
            candidates.append(f"{login}@{domain}")
        account = next((name for name in candidates if store.record(name) is not None), login)
        if self._checks is None:  # its own threads: the loop's default executor may be busy (or full)
            self._checks = ThreadPoolExecutor(PARALLEL_CHECKS, thread_name_prefix="smtpsvc-auth")
        ok = await asyncio.get_running_loop().run_in_executor(self._checks, store.check, account, password)
        return account if ok else None

    def close(self) -> None:
        if self._checks is not None:
            self._checks.shutdown(wait=False, cancel_futures=True)
            self._checks = None


def open_relay(relay_mode: str, relay_allowed: tuple[str, ...]) -> str:
    """Why the relay settings let any address on the Internet relay, or "" when they do not."""
    if relay_mode != "only_listed":
        return "relay_mode lets every client that is not listed relay"
    for entry in relay_allowed:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_network(entry, strict=False).prefixlen == 0:
                return f"relay_allowed has {entry}"
    return ""


def _error(bus: EventBus, source: str, message: str) -> None:
    log.error("%s", message)
    bus.publish(ErrorEvent(source, message))


_SHARED: weakref.WeakKeyDictionary[object, Security] = weakref.WeakKeyDictionary()


def shared_security(owner: object) -> Security:
    """The Security of the virtual server that owns ``owner`` (its session registry), made on first use."""
    security = _SHARED.get(owner)
    if security is None:
        security = _SHARED[owner] = Security()
    return security
