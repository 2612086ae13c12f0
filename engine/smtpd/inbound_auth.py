"""AUTH PLAIN and LOGIN (RFC 4954, 4616) for InboundSMTP: offered only as configured, checked against the users
file, with a growing delay after each failure and a lock-out per client address.

Invariants: the password lives only in local variables of one check and is never logged, stored or put
in an event; an address that is locked out is answered 454 without any check (the right password does
not work from there either); the client's exchange lines are bounded (RFC 4954: 12288 octets).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from typing import TYPE_CHECKING, Any

from engine.events import SessionChanged
from engine.smtpd.replies import reply
from engine.smtpd.security import AuthFailed, AuthRefusedLocked, AuthSucceeded

if TYPE_CHECKING:
    from engine.conf.config import Config
    from engine.smtpd.security import Security
    from engine.smtpd.services import InboundServices
    from engine.smtpd.sessions import LiveSession

log = logging.getLogger(__name__)

MAX_AUTH_LINE = 12288
Credentials = tuple[str, str, str]  # authorization id, login, password


def _decode(text: str) -> bytes | None:
    """RFC 4954 base64 ("=" is an empty response); None when it is not base64."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def split_plain(data: bytes) -> Credentials | None:
    """RFC 4616 ``authzid NUL authcid NUL passwd``, or None when malformed."""
    parts = data.split(b"\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    authzid, login, password = (part.decode("utf-8", "surrogateescape") for part in parts)
    return authzid, login, password


_UNSAFE = re.compile(r"[^\x21-\x7e]")


def shown_name(login: str) -> str:
    """A tried login name as events may show it: printable ASCII, at most 64 characters."""
    return _UNSAFE.sub("?", login)[:64]


class AuthMixin:
    """Mixed into InboundSMTP before aiosmtpd's SMTP; its ``smtp_AUTH`` replaces aiosmtpd's whole AUTH path
    (aiosmtpd's ``auth_PLAIN``/``auth_LOGIN`` stay in ``_auth_methods``, unused, with a callback that fails)."""

    AUTH_MECHANISMS = ("PLAIN", "LOGIN")

    if TYPE_CHECKING:
        services: InboundServices
        config: Config
        security: Security
        live: LiveSession | None
        session: Any
        sender: str | None
        _reader: asyncio.StreamReader

        @property
        def _tls_active(self) -> bool: ...

        async def push(self, status: str | bytes) -> None: ...
        def _note(self, command: str, state: str) -> None: ...
        async def _needs_helo(self) -> bool: ...
        def _peer_ip(self) -> str: ...
        def _reset_timeout(self, duration: float | None = None) -> None: ...
        def terminate(self, text: str) -> None: ...

    def _auth_offered(self) -> bool:
        server = self.config.server
        return server.auth_basic and (self._tls_active or server.auth_plaintext_allowed)

    async def smtp_AUTH(self, arg: str | None) -> None:
        self._note("AUTH", "auth")
        if await self._needs_helo():
            return
        server = self.config.server
        if not server.auth_basic or not self.session.extended_smtp:
            await self.push(reply("not_implemented"))
            return
        if not self._auth_offered():
            await self.push(reply("auth_needs_tls"))
            return
        if self.session.authenticated:
            await self.push(reply("auth_already"))
            return
        if self.sender is not None:
            await self.push(reply("auth_in_transaction"))
            return
        words = (arg or "").split()
        if not words or len(words) > 2:
            await self.push(reply("syntax_auth"))
            return
        mechanism = words[0].upper()
        if mechanism not in self.AUTH_MECHANISMS:
            await self.push(reply("auth_mechanism"))
            return
        peer = self._peer_ip()
        locked = self.security.limiter.locked_for(peer)
        if locked:
            self.services.bus.publish(AuthRefusedLocked(peer, locked))
            await self.push(reply("auth_locked"))
            return
        initial = words[1] if len(words) == 2 else None
        credentials = await (self._read_plain(initial) if mechanism == "PLAIN" else self._read_login(initial))
        if credentials is None:
            return  # aborted or malformed: already answered
        authzid, login, password = credentials
        account = None
        # The slot is taken before the check: parallel connections cannot all get a verdict.
        locked = self.security.limiter.begin(peer, threshold=server.auth_lockout_failures,
                                             period=float(server.auth_lockout_seconds))
        if locked:
            del password, credentials
            self.services.bus.publish(AuthRefusedLocked(peer, locked))
            await self.push(reply("auth_locked"))
            return
        try:
            if authzid in ("", login):  # acting for another identity is not supported
                account = await self.security.check_password(self.config, self.services.bus, login, password)
        finally:
            self.security.limiter.end(peer)  # a failure is recorded right after, with no await between
        del password, credentials  # (strings cannot be wiped; at least hold no reference)
        if account is None:
            await self._auth_failed(peer, login)
            return
        self.session.authenticated = True
        self.session.auth_data = account
        if self.live is not None:
            self.live.user = account
            self.services.bus.publish(SessionChanged(self.live.session_id))
        self.services.bus.publish(AuthSucceeded(peer, account))
        await self.push(reply("auth_ok"))

    async def _auth_failed(self, peer: str, login: str) -> None:
        server = self.config.server
        verdict = self.security.limiter.failed(peer, threshold=server.auth_lockout_failures,
                                               period=float(server.auth_lockout_seconds),
                                               base_delay=server.auth_failure_delay_ms / 1000)
        name = shown_name(login)
        log.info("AUTH failed from %s for %r (%d failure(s)%s)", peer, name, verdict.failures,
                 ", locked out" if verdict.locked else "")
        self.services.bus.publish(AuthFailed(peer, name, verdict.failures, verdict.locked))
        if verdict.delay:
            await asyncio.sleep(verdict.delay)
        await self.push(reply("auth_failed"))

    async def _challenge(self, prompt: bytes) -> bytes | None:
        """Send ``334 <base64 prompt>`` and read the answer; None (already answered) when aborted or bad."""
        await self.push(b"334 " + base64.b64encode(prompt))
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            self.terminate(reply("auth_line_too_long"))
            return None
        except asyncio.IncompleteReadError as error:
            raise ConnectionResetError("connection closed during AUTH") from error
        self._reset_timeout()
        text = line.rstrip(b"\r\n")
        if len(text) > MAX_AUTH_LINE:
            await self.push(reply("auth_line_too_long"))
            return None
        if text == b"*":
            await self.push(reply("auth_aborted"))
            return None
        decoded = _decode(text.decode("ascii", "replace"))
        if decoded is None:
            await self.push(reply("auth_bad_base64"))
        return decoded

    async def _read_plain(self, initial: str | None) -> Credentials | None:
        if initial is None:
            data = await self._challenge(b"")
        else:
            data = _decode(initial)
            if data is None:
                await self.push(reply("auth_bad_base64"))
        if data is None:
            return None
        credentials = split_plain(data)
        if credentials is None:
            await self.push(reply("auth_bad_plain"))
        return credentials

    async def _read_login(self, initial: str | None) -> Credentials | None:
        if initial is None:
            login = await self._challenge(b"Username:")
        else:
            login = _decode(initial)
            if login is None:
                await self.push(reply("auth_bad_base64"))
        if login is None:
            return None
        password = await self._challenge(b"Password:")
        if password is None:
            return None
        if not login or not password:
            await self.push(reply("auth_bad_plain"))
            return None
        return "", login.decode("utf-8", "surrogateescape"), password.decode("utf-8", "surrogateescape")
