"""Inbound SMTP: aiosmtpd's protocol, subclassed for IIS replies, durable DATA and the configured limits.

aiosmtpd provides the connection loop and the STARTTLS switch; this class replaces the commands whose
behaviour we own (EHLO/HELO, MAIL, RCPT, DATA with chunked reads spooled to disk, RSET, NOOP,
VRFY, HELP, QUIT, AUTH), adds an enhanced status code to every reply it did not write itself
(``replies.enhance``), counts bad commands, and writes replies to pipelining clients without
waiting for each one to drain (RFC 2920) while the input buffer still holds commands.
Invariants: ``250`` after DATA is sent only after ``Intake.commit`` returned. Nothing a client sent in
clear text after STARTTLS is ever read as a command (aiosmtpd drops the reader's buffer when the
handshake completes, before any decrypted byte arrives), and the session starts over (EHLO needed,
not authenticated). No password is kept, logged or put in an event.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import MethodType
from typing import Any

from aiosmtpd.smtp import SMTP, TLSSetupException, _AuthMechAttr, login_always_fail

from engine.bounce import dsn_params
from engine.cleanup.headers import HeaderScanner
from engine.cleanup.intake import DsnRequest, SpoolFile, is_storage_error
from engine.conf.access import NameResult, access_list, decide, ip_listed
from engine.conf.addresses import AddressError, parse_path
from engine.conf.hostport import join_hostport
from engine.events import ConnectionRefused, ErrorEvent, SessionChanged, SessionClosed, SessionOpened
from engine.log.record import ProtocolRecord
from engine.smtpd.data_stream import DataStream
from engine.smtpd.inbound_auth import AuthMixin
from engine.smtpd.inbound_tls import TlsMixin
from engine.smtpd.limits import connection_limits
from engine.smtpd.policy import RELAY_NAME_NEEDED, recipient_refusal
from engine.smtpd.received import protocol_name, received_header
from engine.smtpd.replies import enhance, is_syntax_or_sequence_error, reply
from engine.smtpd.security import shared_security
from engine.smtpd.services import InboundServices
from engine.smtpd.sessions import LiveSession
from engine.smtpd.tls import describe

log = logging.getLogger(__name__)

VERSION = "0.1.0"
READ_CHUNK = 256 * 1024
WRITE_HIGH_WATER = 256 * 1024  # replies buffered for a pipelining client before we wait for it
# A reply that echoes a command argument with invalid UTF-8 (kept as surrogates) shows it escaped.
_ECHO_ERRORS = "backslashreplace"
SESSION_EVENT_INTERVAL = 1.0  # at most one SessionChanged per session per second


class InboundSMTP(TlsMixin, AuthMixin, SMTP):
    line_length_limit = READ_CHUNK  # StreamReader buffer; command lines are limited separately

    def __init__(self, services: InboundServices, *, loop: asyncio.AbstractEventLoop,
                 implicit_tls: bool = False) -> None:
        self.services = services
        self.config = services.config()
        server = self.config.server
        self.fqdn = self.config.fqdn
        self._init_aiosmtpd_state(loop, server.connection_timeout)
        self.command_size_limit = server.max_command_line
        self.command_size_limits = collections.defaultdict(lambda: server.max_command_line)
        self.live: LiveSession | None = None
        self._bad_commands = 0
        self._session_bytes = 0
        self.security = services.security or shared_security(services.sessions)
        self.implicit_tls = implicit_tls
        self.peer_names: NameResult | None = None
        self._last_reply = ""  # for the protocol log
        self._terminated = False  # terminate() was called: no message may be stored any more
        self._close_after_commit: str | None = None  # terminate() during a commit: the 421 after the 250
        self._init_security()
        self._reset_transaction()

    def _init_security(self) -> None:
        """The TLS and AUTH attributes aiosmtpd's code paths read, from the configuration of this connection."""
        server = self.config.server
        self.tls_context = self.security.tls_context(self.config, self.services.bus)
        self.require_starttls = server.require_tls and not self.implicit_tls
        self._auth_require_tls = not server.auth_plaintext_allowed
        self._auth_required = not server.auth_anonymous

    def _init_aiosmtpd_state(self, loop: asyncio.AbstractEventLoop, timeout: int) -> None:
        """The state aiosmtpd's ``SMTP.__init__`` sets up, without its per-connection introspection.

        ``SMTP.__init__`` runs ``inspect.getmembers`` over the protocol for every connection: a
        quarter of the cost of a one-message connection. The method tables are the same for every
        instance of a class, so they are computed once per class and bound here. Pinned to aiosmtpd
        1.4 (pyproject); tests/engine/test_inbound_state.py checks that no attribute is missing.
        """
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=loop)
        stamp = email.utils.formatdate(localtime=True)
        self.__ident__ = f"smtpsvc ESMTP MAIL Service, Version: {VERSION} ready at {stamp}"
        self.loop = loop
        self.event_handler = _NO_HANDLER
        self.data_size_limit = None
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        self.hostname = self.fqdn
        self.tls_context = None
        self.require_starttls = False
        self._timeout_duration = float(timeout)
        self._timeout_handle = None
        self._last_activity = 0.0
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = True
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._auth_required = False
        tables = _method_tables(type(self))
        self._auth_methods = {
            mechanism: _AuthMechAttr(getattr(self, name), True) for mechanism, name in tables.auth
        }
        self._handle_hooks = {}
        self._ehlo_hook_ver = None
        self._smtp_methods = {command: MethodType(function, self) for command, function in tables.commands}
        if self.services.protocol_log is not None:
            self._smtp_methods = {command: self._logged(command, method)
                                  for command, method in self._smtp_methods.items()}
        self._enforce_call_limit = False

    def _logged(self, verb: str, method: Callable[[str | None], Any]) -> Callable[[str | None], Any]:
        """The protocol log's one call site: a command handler that reports the command once it is answered."""
        log_record = self.services.protocol_log
        assert log_record is not None

        async def run(arg: str | None) -> None:
            started = time.monotonic()
            live = self.live
            sent_before = live.bytes_out if live is not None else 0
            data_before = self._session_bytes
            await method(arg)
            local = self.transport.get_extra_info("sockname") if self.transport is not None else None
            log_record(ProtocolRecord(
                "in", self._peer_ip(), (self.session.host_name or "") if self.session is not None else "",
                str(local[0]) if local else "", int(local[1]) if local else 0, verb, arg or "", self._last_reply,
                (live.bytes_out if live is not None else 0) - sent_before,
                len(verb) + len(arg or "") + 3 + self._session_bytes - data_before,
                int((time.monotonic() - started) * 1000)))

        return run

    # -- connection lifecycle -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.live is None:
            peer = transport.get_extra_info("peername") or ("?", 0)
            self.live = self.services.sessions.open(str(peer[0]), int(peer[1]), self.terminate)
            local = transport.get_extra_info("sockname")
            if local:
                self.live.listener = join_hostport(str(local[0]), int(local[1]))
            counters = self.services.counters
            counters.inbound_connections_current += 1
            counters.inbound_connections_total += 1
            self.services.bus.publish(SessionOpened(self.live.session_id, self.live.peer))
            if self.implicit_tls:
                self._start_implicit_tls(transport)
                return
        super().connection_made(transport)
        self._tls_established()

    def connection_lost(self, error: Exception | None) -> None:
        if error is not None:  # reset or broken by the network, not closed by either side
            self.services.counters.total_connection_errors += 1
        self._close_live()
        if self.session is None:  # an implicit-TLS connection that never finished its handshake
            asyncio.StreamReaderProtocol.connection_lost(self, error)
            return
        super().connection_lost(error)

    def _close_live(self) -> None:
        if self.live is not None and self.services.sessions.get(self.live.session_id) is self.live:
            self.services.sessions.close(self.live)
            self.services.counters.inbound_connections_current -= 1
            self.services.bus.publish(SessionClosed(self.live.session_id, self.live.peer, self.live.messages))

    def data_received(self, data: bytes) -> None:
        if self.live is not None:
            self.live.bytes_in += len(data)
        self.services.counters.bytes_received_total += len(data)
        super().data_received(data)

    async def _handle_client(self) -> None:
        refusal = self._refusal() or await self._screen()
        if refusal is not None:
            self.services.counters.inbound_connections_refused += 1
            self._write_raw(refusal)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def _refusal(self) -> str | None:
        server = self.config.server
        sessions = self.services.sessions
        if self.services.paused():
            return reply("paused")
        total, per_peer = connection_limits(server)
        if len(sessions) > total:
            return reply("too_many_connections")
        if self.live is not None and sessions.from_peer(self.live.peer) > per_peer:
            return reply("too_many_from_peer")
        return None

    async def _screen(self) -> str | None:
        """Connection control (and the reverse lookup for Received): a refusal reply, or None to go on."""
        server = self.config.server
        if not server.reverse_dns_lookup and not server.connection_list \
                and server.connection_grant == "all_except_listed":
            return None  # the default: nothing to look up, nobody to refuse
        peer = self._peer_ip()
        rules = access_list(server.connection_list)
        if server.reverse_dns_lookup or (rules.needs_name and not ip_listed(peer, rules)):
            self.peer_names = await self.security.names(self.config).lookup(peer)
        decision = decide(server.connection_grant, rules, peer, self.peer_names)
        if decision == "allow":
            return None
        reason = "not granted by connection control" if decision == "deny" else \
            "connection control needs the client's name and the reverse DNS lookup failed for now"
        self.services.bus.publish(ConnectionRefused(peer, reason))
        log.info("connection from %s refused: %s", peer, reason)
        key = "access_denied" if decision == "deny" else "access_deferred"
        return reply(key, fqdn=self.fqdn, peer=peer)

    def _received_name(self) -> str:
        """The client's name for the Received header: verified reverse DNS, "unverified", or "" (lookups off)."""
        if not self.config.server.reverse_dns_lookup:
            return ""
        names = self.peer_names
        return names.name if names is not None and names.name else "unverified"

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Note activity; one timer per session re-arms itself instead of a new timer per command."""
        now = self.loop.time()
        self._last_activity = now
        if self._timeout_handle is None:
            self._timeout_handle = self.loop.call_later(duration or self._timeout_duration, self._timeout_cb)

    def _timeout_cb(self) -> None:
        idle = self.loop.time() - self._last_activity
        if idle < self._timeout_duration:
            self._timeout_handle = self.loop.call_later(self._timeout_duration - idle, self._timeout_cb)
            return
        self._write_raw(reply("timeout", fqdn=self.fqdn))
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def terminate(self, text: str) -> None:
        """Close the session from outside (administrator, shutdown) with a 421 reply.

        A message whose DATA is complete and whose commit is under way gets its 250 first (the close
        follows it); any other message not yet committed is never stored: the client got a 421.
        """
        self._terminated = True
        if self.live is not None and self.live.committing:
            self._close_after_commit = text
            return
        self._write_raw(text)
        if self.transport is not None:
            self.transport.close()

    # -- replies --------------------------------------------------------------------------------

    def _write_raw(self, text: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        data = text.encode("utf-8", _ECHO_ERRORS) + b"\r\n"
        self._count_out(len(data))
        self.transport.write(data)  # type: ignore[attr-defined]

    def _count_out(self, size: int) -> None:
        if self.live is not None:
            self.live.bytes_out += size
        self.services.counters.bytes_sent_total += size

    async def push(self, status: str | bytes) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        text = enhance(text)
        if is_syntax_or_sequence_error(text):
            self._bad_commands += 1
            if self._bad_commands >= self.config.server.max_bad_commands:
                text = reply("too_many_errors")
        await self._send(text)
        if text.startswith("421") and self.transport is not None:
            self.transport.close()

    async def _send(self, text: str) -> None:
        self._last_reply = text
        data = text.encode("utf-8", _ECHO_ERRORS) + b"\r\n"
        self._count_out(len(data))
        self._writer.write(data)
        # Pipelining: more commands already buffered means the client is not waiting for this
        # reply alone; flush when it would wait on us, or when too much is queued for it.
        pending_input = len(_buffer_of(self._reader))
        transport: Any = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        if not pending_input or buffered > WRITE_HIGH_WATER:
            await self._writer.drain()

    async def _send_lines(self, code: str, lines: list[str]) -> None:
        for index, line in enumerate(lines):
            separator = " " if index == len(lines) - 1 else "-"
            await self._send(f"{code}{separator}{line}")

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):  # a client that failed the handshake: not our error
            log.info("session %s: TLS handshake failed: %r", self.live.session_id if self.live else "?",
                     error.__cause__)
            return reply("tls_failed")
        log.exception("session %s: unexpected error", self.live.session_id if self.live else "?")
        self.services.bus.publish(ErrorEvent("smtp", f"unexpected error in a session: {error!r}"))
        return reply("local_error")

    # -- state ----------------------------------------------------------------------------------

    def _reset_transaction(self) -> None:
        self.sender: str | None = None
        live: LiveSession | None = getattr(self, "live", None)  # (also called before connection_made)
        if live is not None:
            live.sender = ""
        self.recipients: list[str] = []
        self.ret = ""
        self.envid = ""
        self.rcpt_params: dict[str, tuple[str, str]] = {}  # address -> (NOTIFY, ORCPT)
        self.smtputf8 = False
        self.declared_size = 0

    def _set_rset_state(self) -> None:
        super()._set_rset_state()  # type: ignore[no-untyped-call]
        self._reset_transaction()

    def _note(self, command: str, state: str) -> None:
        live = self.live
        if live is not None:
            live.command = command
            live.state = state
            now = time.monotonic()
            if now - live.announced >= SESSION_EVENT_INTERVAL:  # the UI needs news, not every command
                live.announced = now
                self.services.bus.publish(SessionChanged(live.session_id))

    def _peer_ip(self) -> str:
        return self.live.peer if self.live is not None else "?"

    @property
    def _authenticated(self) -> bool:
        return bool(self.session is not None and self.session.authenticated)

    async def _needs_helo(self) -> bool:
        assert self.session is not None
        if not self.session.host_name:
            await self.push(reply("need_helo"))
            return True
        return False

    # -- commands -------------------------------------------------------------------------------

    def ehlo_keywords(self) -> list[str]:
        """The EHLO extension lines: STARTTLS only with a certificate and before TLS, AUTH only where offered."""
        limit = self.config.server.max_message_size_kb * 1024
        return [
            f"SIZE {limit}" if limit else "SIZE",
            "PIPELINING",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "DSN",
            "ETRN",
            *(["STARTTLS"] if self.tls_context is not None and not self._tls_active else []),
            *([f"AUTH {' '.join(self.AUTH_MECHANISMS)}"] if self._auth_offered() else []),
            "HELP",
        ]

    async def smtp_EHLO(self, hostname: str | None) -> None:
        self._note("EHLO", "greeting")
        if not hostname:
            await self.push(reply("syntax_helo", cmd="EHLO"))
            return
        assert self.session is not None
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        if self.live is not None:
            self.live.helo = hostname
        await self._send_lines("250", [f"{self.fqdn} Hello [{self._peer_ip()}]", *self.ehlo_keywords()])

    async def smtp_HELO(self, hostname: str | None) -> None:
        self._note("HELO", "greeting")
        if not hostname:
            await self.push(reply("syntax_helo", cmd="HELO"))
            return
        assert self.session is not None
        self._set_rset_state()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        if self.live is not None:
            self.live.helo = hostname
        await self._send(f"250 {self.fqdn} Hello [{self._peer_ip()}]")

    async def smtp_NOOP(self, arg: str | None) -> None:
        await self.push(reply("noop"))

    async def smtp_RSET(self, arg: str | None) -> None:
        if arg:
            await self.push(reply("syntax_noarg", cmd="RSET"))
            return
        self._set_rset_state()
        self._note("RSET", "idle")
        await self.push(reply("reset"))

    async def smtp_VRFY(self, arg: str | None) -> None:
        if not arg:
            await self.push("501 5.5.4 Syntax: VRFY <address>")
            return
        await self.push(reply("vrfy" if self.services.config().server.allow_verify else "vrfy_disabled"))

    async def smtp_ETRN(self, arg: str | None) -> None:
        """RFC 1985: start delivery of the mail queued for a domain marked "queue for remote triggered delivery"."""
        self._note("ETRN", "idle")
        if await self._needs_helo():
            return
        node = (arg or "").strip()
        if not node or " " in node or node.startswith("#"):
            await self.push("501 5.5.4 Syntax: ETRN <domain> | ETRN @<domain>")
            return
        domain = node.lstrip("@").lower()
        released = await self.services.etrn(domain)
        if released is None:
            await self.push(f"459 4.7.1 Node {domain} not allowed: it is not queued for remote triggered delivery")
        elif released == 0:
            await self.push(f"251 2.0.0 OK, no messages waiting for node {domain}")
        else:
            await self.push(f"253 2.0.0 OK, {released} pending messages for node {domain} started")

    async def smtp_EXPN(self, arg: str | None) -> None:
        await self.push(reply("not_implemented"))

    async def smtp_HELP(self, arg: str | None) -> None:
        await self.push(reply("help" if self.services.config().server.allow_verify else "help_no_vrfy"))

    async def smtp_QUIT(self, arg: str | None) -> None:
        if arg:
            await self.push(reply("syntax_noarg", cmd="QUIT"))
            return
        await self._send(reply("bye", fqdn=self.fqdn))
        if self.transport is not None:
            self.transport.close()

    def _default_domain(self) -> str:
        return self.config.default_domain.name

    async def smtp_MAIL(self, arg: str | None) -> None:
        self._note("MAIL", "envelope")
        if await self._needs_helo():
            return
        assert self.session is not None
        if self.sender is not None:
            await self.push(reply("nested_mail"))
            return
        if self._auth_required and not self._authenticated:
            await self.push(reply("auth_required"))
            return
        if self._session_limit_reached():
            await self.push(reply("session_size"))
            return
        if not arg:
            await self.push(reply("syntax_mail"))
            return
        try:
            path = parse_path(arg, "FROM:", self._default_domain(), allow_null=True)
        except AddressError as error:
            key = "syntax_mail" if not arg.upper().startswith("FROM:") else "bad_sender_address"
            await self.push(reply(key, addr=str(error)))
            return
        if path.params and not self.session.extended_smtp:
            await self.push(reply("bad_param", param=next(iter(path.params))))
            return
        smtputf8 = False
        size = 0
        ret = envid = ""
        for name, value in path.params.items():
            if name == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    await self.push(reply("bad_param_value", param="SIZE"))
                    return
                size = int(value)
            elif name == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    await self.push(reply("bad_param_value", param="BODY"))
                    return
            elif name in ("RET", "ENVID"):
                try:
                    if name == "RET":
                        ret = dsn_params.parse_ret(value)
                    else:
                        envid = dsn_params.parse_envid(value)
                except dsn_params.DsnParamError:
                    await self.push(reply("bad_param_value", param=name))
                    return
            elif name == "AUTH":
                pass  # RFC 4954 AUTH=<mailbox>: accepted and not trusted
            elif name == "SMTPUTF8":
                if value is not None:
                    await self.push(reply("bad_param_value", param="SMTPUTF8"))
                    return
                smtputf8 = True
            else:
                await self.push(reply("bad_param", param=name[:40]))
                return
        limit = self.config.server.max_message_size_kb * 1024
        if limit and size > limit:
            self.services.counters.messages_refused_for_size += 1
            await self.push(reply("message_size"))
            return
        if not smtputf8 and not path.address.isascii():
            await self.push(reply("smtputf8_needed"))
            return
        self.sender = path.address
        if self.live is not None:
            self.live.sender = path.address or "<>"
        self.ret, self.envid = ret, envid
        self.smtputf8 = smtputf8
        self.declared_size = size
        await self.push(reply("sender_ok", addr=path.address))

    async def smtp_RCPT(self, arg: str | None) -> None:
        self._note("RCPT", "envelope")
        if await self._needs_helo():
            return
        if self.sender is None:
            await self.push(reply("need_mail"))
            return
        if not arg:
            await self.push(reply("syntax_rcpt"))
            return
        try:
            path = parse_path(arg, "TO:", self._default_domain(), allow_null=False)
        except AddressError as error:
            key = "syntax_rcpt" if not arg.upper().startswith("TO:") else "bad_address"
            await self.push(reply(key, addr=str(error)))
            return
        notify = orcpt = ""
        for name, value in path.params.items():
            try:
                if name == "NOTIFY":
                    notify = dsn_params.parse_notify(value)
                elif name == "ORCPT":
                    orcpt = dsn_params.parse_orcpt(value)
                else:
                    await self.push(reply("bad_param", param=name[:40]))
                    return
            except dsn_params.DsnParamError:
                await self.push(reply("bad_param_value", param=name))
                return
        if not self.smtputf8 and not path.address.isascii():
            await self.push(reply("smtputf8_needed"))
            return
        if len(self.recipients) >= self.config.server.max_recipients:
            await self.push(reply("too_many_rcpts"))
            return
        refusal = recipient_refusal(path, self._peer_ip(), self._authenticated, self.config, self.peer_names)
        if refusal == RELAY_NAME_NEEDED and self.peer_names is None:  # relay list has names: look it up once
            self.peer_names = await self.security.names(self.config).lookup(self._peer_ip())
            refusal = recipient_refusal(path, self._peer_ip(), self._authenticated, self.config, self.peer_names)
        if refusal == RELAY_NAME_NEEDED:
            await self.push(reply("relay_deferred", addr=path.address))
            return
        if refusal is not None:
            self.services.counters.messages_refused_for_relay += 1
            log.info("session %s: relay refused for %r (%s)", self.live.session_id if self.live else "?",
                     path.address, refusal)
            await self.push(reply("relay_denied", addr=path.address))
            return
        if path.address not in self.recipients:
            self.recipients.append(path.address)
        if notify or orcpt:
            self.rcpt_params[path.address] = (notify, orcpt)
        await self.push(reply("rcpt_ok", addr=path.address))

    def _session_limit_reached(self) -> bool:
        limit = self.config.server.max_session_size_kb * 1024
        return bool(limit) and self._session_bytes >= limit

    async def smtp_DATA(self, arg: str | None) -> None:
        self._note("DATA", "data")
        if await self._needs_helo():
            return
        if arg:
            await self.push(reply("syntax_data"))
            return
        if self.sender is None:
            await self.push(reply("need_mail"))
            return
        if not self.recipients:
            await self.push(reply("need_rcpt"))
            return
        try:
            spool = self.services.intake.open_spool(self.sender, tuple(self.recipients))
            spool.dsn = DsnRequest(self.ret, self.envid, dict(self.rcpt_params))
        except OSError as error:
            self._report_storage(error)
            await self.push(reply("storage" if is_storage_error(error) else "local_error"))
            return
        try:
            outcome = await self._receive(spool)
        except Exception as error:
            # Mid-DATA we cannot tell message bytes from commands any more: never go on reading.
            spool.discard()
            await self.handle_exception(error)
            self.terminate(reply("local_error").replace("451", "421", 1))
            return
        except BaseException:
            spool.discard()
            raise
        if outcome is not None:
            spool.discard()
            self._set_rset_state()
            await self.push(outcome)
            return
        if self._terminated:  # a 421 went out while the end of DATA waited to be read
            spool.discard()
            return
        try:
            await self._commit_and_answer(spool)
        finally:
            self._end_commit()

    async def _commit_and_answer(self, spool: SpoolFile) -> None:
        if self.live is not None:
            self.live.committing = True  # a shutdown now waits for the 250 (terminate)
        try:
            await self.services.intake.commit(spool, "smtp")
        except OSError as error:
            self._report_storage(error)
            self._set_rset_state()
            await self.push(reply("storage" if is_storage_error(error) else "local_error"))
            return
        if self.live is not None:
            self.live.messages += 1
        self._set_rset_state()
        self._note("DATA", "idle")
        await self.push(reply("queued", addr=f"{spool.queue_id}@{self.fqdn}"))

    def _end_commit(self) -> None:
        if self.live is not None:
            self.live.committing = False
        text = self._close_after_commit
        if text is not None:
            self._close_after_commit = None
            self.terminate(text)

    def _report_storage(self, error: OSError) -> None:
        log.error("cannot store a message: %s", error)
        self.services.bus.publish(ErrorEvent("queue", f"cannot store a message: {error}"))

    async def _receive(self, spool: SpoolFile) -> str | None:
        """Read DATA to its end into ``spool``; returns an error reply, or None when it may be committed."""
        assert self.session is not None
        server = self.config.server
        ssl_info = self.session.ssl
        received = received_header(
            helo=self.session.host_name or "",
            peer_ip=self._peer_ip(),
            peer_name=self._received_name(),
            fqdn=self.fqdn,
            protocol=protocol_name(self.session.extended_smtp, self._tls_active, self._authenticated),
            queue_id=spool.queue_id,
            recipients=self.recipients,
            tls_info=describe(ssl_info.get("ssl_object")) if ssl_info else "",
        )
        spool.write(received)
        await self.push(reply("start_data"))
        stream = DataStream(normalize_bare_newlines=server.bare_newline == "normalize")
        headers = HeaderScanner()
        limit = server.max_message_size_kb * 1024
        size = 0
        reader = self._reader
        while not stream.done:
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                raise ConnectionResetError("connection closed during DATA")
            self._reset_timeout()
            content, leftover = stream.feed(chunk)
            if content:
                size += len(content)
                if not limit or size <= limit:
                    headers.feed(content)
                    spool.write(content)
            if leftover:
                # Commands pipelined after the end of DATA go back in front of the reader's buffer.
                _buffer_of(reader)[0:0] = leftover
        spool.size = size + len(received)
        self._session_bytes += size
        if stream.bare_newline and server.bare_newline == "reject":
            return reply("bare_newline")
        if limit and size > limit:
            self.services.counters.messages_refused_for_size += 1
            return reply("message_size")
        session_limit = server.max_session_size_kb * 1024
        if session_limit and self._session_bytes > session_limit:
            return reply("session_size")
        if headers.received_count() > server.max_hop_count:
            return reply("hop_count")
        if spool.error is not None:
            self._report_storage(spool.error)
            return reply("storage" if is_storage_error(spool.error) else "local_error")
        return None


def _buffer_of(reader: asyncio.StreamReader) -> bytearray:
    """The reader's input buffer: StreamReader has no public way to peek at or push back input."""
    buffer: bytearray = getattr(reader, "_buffer")  # noqa: B009
    return buffer


class _NoHandler:
    """aiosmtpd wants a handler object; every hook lives in InboundSMTP itself."""


_NO_HANDLER = _NoHandler()


@dataclass(frozen=True)
class _MethodTables:
    commands: tuple[tuple[str, Callable[..., Any]], ...]  # ("EHLO", InboundSMTP.smtp_EHLO): bound per session
    auth: tuple[tuple[str, str], ...]  # ("PLAIN", "auth_PLAIN")


_TABLES: dict[str, _MethodTables] = {}


def _method_tables(cls: type) -> _MethodTables:
    key = f"{cls.__module__}.{cls.__qualname__}"
    tables = _TABLES.get(key)
    if tables is None:
        tables = _TABLES[key] = _compute_tables(cls)
    return tables


def _compute_tables(cls: type) -> _MethodTables:
    names = dir(cls)
    commands = tuple((name[5:], getattr(cls, name)) for name in names if name.startswith("smtp_"))
    auth = tuple(
        (getattr(getattr(cls, name), "__auth_mechanism_name__", name[5:].replace("__", "-")), name)
        for name in names if name.startswith("auth_")
    )
    return _MethodTables(commands, auth)


def make_protocol_factory(services: InboundServices, loop: asyncio.AbstractEventLoop, *,
                          implicit_tls: bool = False) -> Callable[[], Any]:
    """Sessions for one listener; ``implicit_tls``: SMTPS, TLS from the first byte (port 465 style)."""
    return lambda: InboundSMTP(services, loop=loop, implicit_tls=implicit_tls)
