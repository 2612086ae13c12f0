"""Scriptable remote MTAs for delivery tests: aiosmtpd servers on loopback addresses that record what they get.

A behaviour says what to answer: accept everything, a reply code at a chosen command, 5xx for chosen
recipients, STARTTLS with a trustme certificate, AUTH PLAIN/LOGIN with one account. They run on the
test's own loop with ``loop.create_server`` (no threads), on any 127.0.0.0/8 address.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    authenticated_as: str | None
    tls: bool


@dataclass
class Behaviour:
    greeting: str | None = None  # e.g. "421 4.3.2 busy": said instead of 220, then the connection closes
    at_mail: str | None = None  # reply to MAIL instead of 250
    at_data: str | None = None  # reply after the data instead of 250
    reject: dict[str, str] = field(default_factory=dict)  # recipient -> reply to RCPT
    tls: ssl.SSLContext | None = None  # offer STARTTLS with this context
    account: tuple[str, str] | None = None  # AUTH PLAIN/LOGIN with this user and password
    drop_at_data: bool = False  # close the connection after receiving the data, before replying
    hold_first: asyncio.Event | None = None  # the first message's reply to its data waits until this is set
    holding: asyncio.Event = field(default_factory=asyncio.Event)  # set once that first message is held
    held_taken: asyncio.Event = field(default_factory=asyncio.Event)  # set once it is recorded after the hold


class Handler:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.messages: list[Received] = []
        self.connections = 0
        self.transactions = 0
        self.quits = 0

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if self.behaviour.at_mail:
            return self.behaviour.at_mail
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        self.transactions += 1
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address in self.behaviour.reject:
            return self.behaviour.reject[address]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.behaviour.drop_at_data:
            assert server.transport is not None
            server.transport.close()
            return "250 never seen"
        if self.behaviour.at_data:
            return self.behaviour.at_data
        held = self.behaviour.hold_first is not None and not self.behaviour.holding.is_set()
        if held:
            self.behaviour.holding.set()
            assert self.behaviour.hold_first is not None
            await self.behaviour.hold_first.wait()  # a slow remote: the sender's attempt stays in flight
        content = envelope.original_content or b""
        user = session.auth_data if isinstance(session.auth_data, str) else None
        self.messages.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), content,
                                      list(envelope.mail_options), list(envelope.rcpt_options),
                                      user, session.ssl is not None))
        if held:
            self.behaviour.held_taken.set()
        return "250 2.0.0 Message accepted for delivery"


class _Protocol(SMTP):
    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        handler.connections += 1


class _Refuser(asyncio.Protocol):
    """A remote that says its greeting (a 4xx/5xx instead of 220) and closes: no SMTP session at all."""

    def __init__(self, handler: Handler, greeting: str) -> None:
        self._greeting = greeting
        handler.connections += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._greeting.encode() + b"\r\n")
        transport.close()


def _authenticator(account: tuple[str, str] | None):  # type: ignore[no-untyped-def]
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        login = data.login.decode() if isinstance(data.login, bytes) else data.login
        password = data.password.decode() if isinstance(data.password, bytes) else data.password
        ok = account is not None and (login, password) == account
        return AuthResult(success=ok, auth_data=login if ok else None)
    return check


@asynccontextmanager
async def remote_mta(host: str, port: int, behaviour: Behaviour | None = None) -> AsyncIterator[Handler]:
    """Run one remote MTA on host:port until the block ends; yields its Handler (messages, counts)."""
    behaviour = behaviour or Behaviour()
    handler = Handler(behaviour)
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.Protocol:
        if behaviour.greeting:
            return _Refuser(handler, behaviour.greeting)
        return _Protocol(handler, hostname=f"mta-{host}", loop=loop, enable_SMTPUTF8=True,
                         tls_context=behaviour.tls, auth_require_tls=False,
                         authenticator=_authenticator(behaviour.account), data_size_limit=None)

    server = await loop.create_server(factory, host, port, reuse_address=True)
    try:
        yield handler
    finally:
        server.close()
        await server.wait_closed()
