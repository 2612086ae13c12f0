"""Who is asking the admin server: HTTP Basic or a session cookie, checked against the operators file.

Failed logins are delayed and locked out per client address by the rules of SMTP AUTH
(engine.smtpd.authlimit, with the server's auth_lockout_* and auth_failure_delay_ms options). A password
that was checked recently is remembered as a keyed digest for ``CHECK_CACHE_S`` seconds, so a command line
or an event stream does not pay scrypt on every request. Sessions live in memory only: a restarted server
asks for a new login.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.admin.operators import operator_store
from engine.conf.config import Config
from engine.errors import EngineError
from engine.events import Event
from engine.smtpd.authlimit import AuthLimiter
from engine.smtpd.security import AuthFailed, AuthRefusedLocked
from engine.smtpd.users import UserStore

SESSION_IDLE_S = 30 * 60  # a browser session left alone this long must log in again
SESSION_MAX_S = 12 * 3600
MAX_SESSIONS = 1000
CHECK_CACHE_S = 300.0


class AuthError(EngineError):
    """No valid credentials: a wrong name or password, no operators file, or a locked-out address."""

    def __init__(self, message: str, *, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


class ForbiddenError(EngineError):
    """The operator's role does not allow this (a viewer asking for a change, a cross-site form...)."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    csrf: str = ""  # the session's CSRF token ("" for HTTP Basic, which carries no cookie)
    session: str = ""


def parse_basic(header: str) -> tuple[str, str] | None:
    """(name, password) of an ``Authorization: Basic`` header, or None when it is something else."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon else None


@dataclass
class _Session:
    identity: Identity
    created: float
    seen: float


class OperatorAuth:
    """The operators file of the current configuration, the failure limiter and the browser sessions."""

    def __init__(self, config: Callable[[], Config], default_path: Path | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 publish: Callable[[Event], None] = lambda event: None) -> None:
        self._config = config
        self._publish = publish
        self._default_path = default_path
        self._clock = clock
        self.limiter = AuthLimiter(clock)
        self._stores: dict[str, UserStore] = {}
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._checked: dict[str, tuple[bytes, str, float]] = {}  # casefolded name -> (digest, record, until)
        self._key = secrets.token_bytes(32)

    def store(self) -> UserStore | None:
        configured = self._config().server.operators_file
        path = Path(configured) if configured else self._default_path
        if path is None:
            return None
        store = self._stores.get(str(path))
        if store is None:
            self._stores = {str(path): (store := operator_store(path))}
        return store

    async def login(self, name: str, password: str, peer: str) -> Identity:
        """The operator ``name`` if ``password`` is theirs; AuthError (after the failure delay) otherwise."""
        server = self._config().server
        locked = self.limiter.locked_for(peer)
        if locked > 0:
            self._publish(AuthRefusedLocked(peer, locked))
            raise AuthError(f"too many failed logins from {peer}: locked out for {int(locked) + 1} more seconds",
                            locked=True)
        store = self.store()
        if store is None:
            raise AuthError("no operators are configured: add one with `smtpsvc operator add NAME`")
        if await self._check(store, name, password):
            role = store.role(name) or ""
            return Identity(store.canonical(name) or name, role)
        verdict = self.limiter.failed(peer, threshold=server.auth_lockout_failures,
                                      period=server.auth_lockout_seconds,
                                      base_delay=server.auth_failure_delay_ms / 1000)
        self._publish(AuthFailed(peer, f"operator {name}", verdict.failures, verdict.locked))
        await asyncio.sleep(verdict.delay)
        if verdict.locked:
            raise AuthError(f"wrong operator name or password; {peer} is now locked out for "
                            f"{server.auth_lockout_seconds} seconds", locked=True)
        raise AuthError("wrong operator name or password")

    async def _check(self, store: UserStore, name: str, password: str) -> bool:
        record = store.record(name)
        digest = hmac.new(self._key, password.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
        cached = self._checked.get(name.casefold())
        now = self._clock()
        if cached is not None and record is not None and cached[1] == record and cached[2] > now:
            return hmac.compare_digest(cached[0], digest)
        ok = await asyncio.to_thread(store.check, name, password)
        if ok and record is not None:
            if len(self._checked) > MAX_SESSIONS:
                self._checked.clear()
            self._checked[name.casefold()] = (digest, record, now + CHECK_CACHE_S)
        return ok

    # -- sessions (the HTML manager) --------------------------------------------------------------------

    def open_session(self, identity: Identity) -> Identity:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        opened = Identity(identity.name, identity.role, csrf=secrets.token_urlsafe(32), session=token)
        self._sessions[token] = _Session(opened, now, now)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return opened

    def session(self, token: str) -> Identity | None:
        """The session's operator, if the session is still open and the operator still exists with that role."""
        entry = self._sessions.get(token)
        now = self._clock()
        if entry is None:
            return None
        if now - entry.seen > SESSION_IDLE_S or now - entry.created > SESSION_MAX_S:
            del self._sessions[token]
            return None
        store = self.store()
        if store is None or store.role(entry.identity.name) != entry.identity.role:
            del self._sessions[token]  # deleted, or its role changed: log in again
            return None
        entry.seen = now
        self._sessions.move_to_end(token)
        return entry.identity

    def close_session(self, token: str) -> None:
        self._sessions.pop(token, None)
