"""STARTTLS and implicit TLS (SMTPS) for InboundSMTP: the checks around aiosmtpd's switch, and the handshake
of a listener that speaks TLS from the first byte.

aiosmtpd's ``smtp_STARTTLS`` answers 220, puts an SSL protocol between the transport and the session,
and, when the handshake is done, calls ``connection_made`` again: that call empties the reader's
buffer (commands pipelined in clear text after STARTTLS are dropped, never answered) and makes a new
session (EHLO needed again, not authenticated). This mixin refuses STARTTLS without a certificate or
a second time, and keeps the live-session record in step.
"""

from __future__ import annotations

import asyncio
import logging
from asyncio import sslproto
from typing import TYPE_CHECKING, Any, cast

from engine.events import SessionChanged
from engine.smtpd.replies import reply

if TYPE_CHECKING:
    import ssl

    from engine.smtpd.services import InboundServices
    from engine.smtpd.sessions import LiveSession

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 30  # seconds an implicit-TLS client gets for its handshake (less if the idle time-out is)


class TlsMixin:
    """Mixed into InboundSMTP before aiosmtpd's SMTP."""

    if TYPE_CHECKING:
        services: InboundServices
        live: LiveSession | None
        implicit_tls: bool
        tls_context: ssl.SSLContext | None
        loop: asyncio.AbstractEventLoop
        session: Any
        _tls_protocol: Any
        _original_transport: asyncio.BaseTransport | None
        _timeout_duration: float

        async def push(self, status: str | bytes) -> None: ...
        def _note(self, command: str, state: str) -> None: ...
        def _close_live(self) -> None: ...
        def _refusal(self) -> str | None: ...

    @property
    def _tls_active(self) -> bool:
        return self._tls_protocol is not None and self.session is not None and self.session.ssl is not None

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        self._note("STARTTLS", "tls")
        if arg:
            await self.push(reply("syntax_noarg", cmd="STARTTLS"))
            return
        if self._tls_protocol is not None:
            await self.push(reply("tls_active"))
            return
        if self.tls_context is None:
            await self.push(reply("tls_not_available"))
            return
        await super().smtp_STARTTLS(arg)  # type: ignore[misc]

    def _tls_established(self) -> None:
        """After ``connection_made``: note a finished handshake (STARTTLS or implicit) on the live session."""
        if self._tls_protocol is None or self.session is None:
            return
        if self.session.ssl is None:  # implicit TLS: aiosmtpd only fills this in for STARTTLS
            self.session.ssl = self._tls_protocol._extra
        live = self.live
        if live is not None and not live.tls:
            live.tls = True
            live.user = ""
            cipher = self.session.ssl.get("cipher") if isinstance(self.session.ssl, dict) else None
            if isinstance(cipher, tuple) and len(cipher) >= 2:
                live.cipher = f"{cipher[1]} {cipher[0]}"
            self.services.bus.publish(SessionChanged(live.session_id))

    def _start_implicit_tls(self, transport: asyncio.BaseTransport) -> None:
        """SMTPS: the handshake first; aiosmtpd's session starts when it is done (``connection_made`` again)."""
        context = self.tls_context
        refused = "no certificate is installed" if context is None else self._refusal()
        if context is None or refused is not None:  # no handshake (the costly part) for a refused client
            log.info("implicit-TLS connection closed before the handshake: %s", refused)
            if context is not None:
                self.services.counters.inbound_connections_refused += 1
            self._close_live()
            transport.close()
            return
        waiter: asyncio.Future[None] = self.loop.create_future()
        protocol = sslproto.SSLProtocol(self.loop, cast(asyncio.Protocol, self), context, waiter,
                                        server_side=True, ssl_handshake_timeout=self._handshake_timeout())
        self._original_transport = transport
        self._tls_protocol = protocol
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        waiter.add_done_callback(self._implicit_handshake_done)

    def _handshake_timeout(self) -> int:
        return max(1, min(HANDSHAKE_TIMEOUT, int(self._timeout_duration)))

    def _implicit_handshake_done(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled() or waiter.exception() is not None:
            # The SSL protocol never hands a failed connection to us: close its books here.
            log.info("implicit-TLS handshake failed: %r", None if waiter.cancelled() else waiter.exception())
            self._close_live()
            if self._original_transport is not None:
                self._original_transport.close()
