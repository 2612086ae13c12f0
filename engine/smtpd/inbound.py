"""Inbound SMTP's I/O: a plain asyncio Protocol that reads, feeds the session machine and carries out its actions.

All rules live in ``machine.SmtpMachine``. The jobs around it have their own modules: ``flow`` (input held
while the session waits, replies batched per read, reading paused under backpressure), ``body`` (DATA and
BDAT into the spool), ``command_log`` (the protocol log's record per command), ``steps`` (the awaited checks)
and ``tls_layer`` (every byte through TLS once it starts). What is left here is the loop: read → machine →
carry out its actions, and the connection's life (greeting, idle timer, terminate, close).

Invariants: ``250`` after DATA or BDAT LAST is sent only after ``Intake.commit`` returned. Nothing a
client sent in clear text with STARTTLS is ever read as a command: the buffer is dropped when the 220
is written, and every later byte goes through TLS. No password is kept, logged or put in an event.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from engine.cleanup.intake import is_storage_error
from engine.conf.access import NameResult
from engine.conf.hostport import join_hostport
from engine.events import ErrorEvent, SessionChanged, SessionClosed, SessionOpened
from engine.smtpd.body import Body, open_body
from engine.smtpd.command_log import CommandLog
from engine.smtpd.flow import Flow
from engine.smtpd.limits import admission
from engine.smtpd.machine import (
    BeginChunk,
    BeginData,
    BeginTls,
    BodyFacts,
    Challenge,
    CheckPassword,
    Close,
    Commit,
    Count,
    DropSpool,
    Etrn,
    LookUpName,
    Out,
    Publish,
    Reply,
    SmtpMachine,
    StorageError,
)
from engine.smtpd.replies import reply
from engine.smtpd.security import shared_security
from engine.smtpd.services import InboundServices
from engine.smtpd.sessions import LiveSession
from engine.smtpd.steps import check_password, needs_screening, screen
from engine.smtpd.tls import describe
from engine.smtpd.tls_layer import TlsFailed, TlsLayer

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 30  # seconds a client gets for its TLS handshake (less if the idle time-out is)
SESSION_EVENT_INTERVAL = 1.0  # at most one SessionChanged per session per second


class InboundSMTP(asyncio.Protocol):
    """One inbound connection."""

    def __init__(self, services: InboundServices, *, loop: asyncio.AbstractEventLoop,
                 implicit_tls: bool = False) -> None:
        self.services = services
        self.config = services.config()
        self.loop = loop
        self.implicit_tls = implicit_tls
        self.security = services.security or shared_security(services.sessions)
        self.flow = Flow()
        self.live: LiveSession | None = None
        self.machine: SmtpMachine | None = None
        self.peer_names: NameResult | None = None
        self.tls_info = ""
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._busy = True  # until the greeting: input waits
        self._skipping = False  # throwing away the rest of an over-long line
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._timeout = float(self.config.server.connection_timeout)
        self._task: asyncio.Task[None] | None = None
        self._body: Body | None = None  # the message being read (DATA, or BDAT up to LAST)
        self._chunk: BeginChunk | None = None  # the BDAT chunk being read
        self._log: CommandLog | None = None
        self._last_reply = ""
        self._close_after_commit: str | None = None  # terminate() during a commit: the 421 after the 250
        self._eof = False  # the client shut its sending side down (its last input is still answered)

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.flow.transport

    # -- connection lifecycle -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.flow.transport = transport = cast(asyncio.Transport, transport)  # (uvloop's are not asyncio's)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.live = live = self.services.sessions.open(str(peer[0]), int(peer[1]), self.terminate)
        local = transport.get_extra_info("sockname")
        if local:
            live.listener = join_hostport(str(local[0]), int(local[1]))
        if self.services.protocol_log is not None:
            self._log = CommandLog(self.services.protocol_log, live.peer, local)
        counters = self.services.counters
        counters.inbound_connections_current += 1
        counters.inbound_connections_total += 1
        self.services.bus.publish(SessionOpened(live.session_id, live.peer))
        context = self.security.tls_context(self.config, self.services.bus)
        limiter = self.security.limiter
        self.machine = SmtpMachine(self.config, live.peer, tls_available=context is not None,
                                   auth_locked=lambda: limiter.locked_for(live.peer))
        if not self.implicit_tls:
            self._open_session()
            return
        refused = "no certificate is installed" if context is None else self._refusal()
        if context is None or refused is not None:  # no handshake (the costly part) for a refused client
            log.info("implicit-TLS connection closed before the handshake: %s", refused)
            if context is not None:
                counters.inbound_connections_refused += 1
            transport.close()
            return
        self._start_tls(context)

    def connection_lost(self, error: Exception | None) -> None:
        if error is not None:  # reset or broken by the network, not closed by either side
            self.services.counters.total_connection_errors += 1
        self.flow.closing = True
        self._close_live()
        for timer in (self._timer, self._handshake_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._handshake_timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._drop_body()

    def _close_live(self) -> None:
        live = self.live
        if live is not None and self.services.sessions.get(live.session_id) is live:
            self.services.sessions.close(live)
            self.services.counters.inbound_connections_current -= 1
            self.services.bus.publish(SessionClosed(live.session_id, live.peer, live.messages))

    def _open_session(self) -> None:
        """Limits and connection control, then the greeting."""
        refusal = self._refusal()
        if refusal is None and needs_screening(self.config):
            self._run(self._screen())
            return
        self._greet(refusal)

    async def _screen(self) -> None:
        assert self.machine is not None
        refusal, self.peer_names = await screen(self.config, self.security, self.services.bus, self._peer_ip(),
                                                self.machine)
        self._greet(refusal)

    def _greet(self, refusal: str | None) -> None:
        assert self.machine is not None
        if refusal is not None:
            self.services.counters.inbound_connections_refused += 1
            self._carry_out([Reply(refusal), Close()])
            self.flow.flush()
            return
        self._last_activity = self.loop.time()
        self._timer = self.loop.call_later(self._timeout, self._on_timer)
        self._carry_out(self.machine.greeting())
        self._busy = False
        self._process()

    def _refusal(self) -> str | None:
        refused = admission(self.config.server, self.services.sessions, self.services.paused(),
                            self.live.peer if self.live is not None else None)
        if refused is None:
            return None
        key, event = refused
        if event is not None:
            self.services.bus.publish(event)
        return reply(key)

    def _received_name(self) -> str:
        """The client's name for the Received header: verified reverse DNS, "unverified", or "" (lookups off)."""
        if not self.config.server.reverse_dns_lookup:
            return ""
        names = self.peer_names
        return names.name if names is not None and names.name else "unverified"

    def _peer_ip(self) -> str:
        return self.live.peer if self.live is not None else "?"

    def _on_timer(self) -> None:
        """One timer per session that re-arms itself, instead of a new timer per command."""
        idle = self.loop.time() - self._last_activity
        if idle < self._timeout:
            self._timer = self.loop.call_later(self._timeout - idle, self._on_timer)
            return
        self._timer = None
        assert self.machine is not None
        self._carry_out(self.machine.timed_out())
        self.flow.flush()

    def terminate(self, text: str) -> None:
        """Close the session from outside (administrator, shutdown) with a 421 reply.

        A message whose body is complete and whose commit is under way gets its 250 first (the close
        follows it); any other message not yet committed is never stored: the client got a 421.
        """
        if self.live is not None and self.live.committing:
            self._close_after_commit = text
            return
        self.flow.replies.append(text.encode("utf-8") + b"\r\n")
        self.flow.close()

    # -- flow control (asyncio's callbacks) -----------------------------------------------------

    def pause_writing(self) -> None:
        self.flow.writing_paused = True
        self.flow.pause_reading()

    def resume_writing(self) -> None:
        self.flow.writing_paused = False
        if not self._busy:
            self.flow.resume_reading()
            self._process()

    # -- input ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        size = len(data)
        if self.live is not None:
            self.live.bytes_in += size
        self.services.counters.bytes_received_total += size
        flow = self.flow
        if flow.closing:
            return
        if flow.tls is not None:
            data = self._decrypt(flow.tls, data)
            if not data:
                return
        flow.input += data
        if self._busy or flow.writing_paused:
            flow.hold()
            return
        self._process()

    def _decrypt(self, tls: TlsLayer, data: bytes) -> bytes:
        """Bytes from the socket through the TLS layer: the plaintext ("" while the handshake runs)."""
        was_established = tls.established
        try:
            plain, reply_records = tls.receive(data)
        except TlsFailed as error:
            log.info("session %s: TLS failed: %s", self.live.session_id if self.live else "?", error)
            self.flow.abort()
            return b""
        if reply_records and self.transport is not None:
            self.transport.write(reply_records)
        if tls.established and not was_established:
            self._tls_established(tls)
        if tls.closed:
            self.flow.close()
            return b""
        return plain

    def eof_received(self) -> bool | None:
        """The client will send nothing more; what it sent is still answered before the connection closes.

        Exim pipelines its last ``BDAT … LAST`` with QUIT and then shuts its sending side down: its message
        must be committed and answered, not dropped with the connection."""
        tls = self.flow.tls
        if self.machine is None or self.flow.closing or (tls is not None and not tls.established):
            return None  # nothing to answer (or a TLS handshake that cannot finish now): close
        self._eof = True
        if not self._busy and not self.flow.writing_paused:
            self._process()
        return True  # keep the transport open for the replies; _process closes it once the input is done

    def _process(self) -> None:
        """Work through the buffered input until it runs out or the session must wait; then write the replies."""
        machine = self.machine
        assert machine is not None
        flow = self.flow
        try:
            while not self._busy and not flow.closing and not flow.writing_paused:
                if self._log is not None and self._log.pending and machine.mode in ("command", "closed"):
                    self._log_end()
                if not flow.input:
                    break
                mode = machine.mode
                if mode == "data":
                    self._feed_data()
                elif mode == "chunk":
                    self._feed_chunk()
                elif not self._feed_line(machine):
                    break
            if (self._log is not None and self._log.pending and machine.mode in ("command", "closed")
                    and not self._busy):
                self._log_end()  # the last command of the batch, or QUIT
        except Exception as error:  # a bug of ours: never read on, the input cannot be trusted any more
            self._unexpected(error)
        flow.flush()
        if self._eof and not self._busy and not flow.writing_paused and not flow.closing:
            self.flow.close()  # the client half-closed and all it sent is answered: nothing more can come

    def _feed_line(self, machine: SmtpMachine) -> bool:
        """One command line out of the buffer; False when no whole line is there yet."""
        buffer = self.flow.input
        end = buffer.find(b"\n")
        limit = machine.line_limit
        if end < 0:
            if len(buffer) > limit + 2:
                self._skipping = True
                buffer.clear()
            return False
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._skipping or len(line) > limit:
            self._skipping = False
            self._carry_out(machine.line_too_long())
            return True
        self._last_activity = self.loop.time()
        live = self.live
        if self._log is not None and machine.mode == "command" and live is not None:
            self._log.start(line, live.bytes_out, live.bytes_in - len(buffer) - len(line))
        if live is not None:
            live.heard(line, machine.mode[:4] == "auth")
        outs = machine.command(line)
        if live is not None:
            self._note(live, line, machine)
        self._carry_out(outs)
        return True

    def _log_end(self) -> None:
        """The protocol log's one call site: the command is answered (its last reply is out)."""
        live, command_log = self.live, self._log
        if live is None or command_log is None:
            return
        helo = self.machine.helo if self.machine is not None else None
        command_log.end(helo or "", self._last_reply, live.bytes_out, live.bytes_in - len(self.flow.input))

    def _note(self, live: LiveSession, line: bytes, machine: SmtpMachine) -> None:
        live.command = line[:4].decode("ascii", "replace").upper() if machine.mode[:4] != "auth" else "AUTH"
        self._sync_live(live, machine)
        now = time.monotonic()
        if now - live.announced >= SESSION_EVENT_INTERVAL:  # the UI needs news, not every command
            live.announced = now
            self.services.bus.publish(SessionChanged(live.session_id))

    @staticmethod
    def _sync_live(live: LiveSession, machine: SmtpMachine) -> None:
        """What Current Sessions shows of the machine's state."""
        live.state = machine.phase
        live.helo = machine.helo or ""
        transaction = machine.transaction
        live.sender = (transaction.sender or "<>") if transaction is not None else ""

    # -- the message body -----------------------------------------------------------------------

    def _feed_data(self) -> None:
        body = self._body
        assert body is not None
        self._last_activity = self.loop.time()
        if body.feed_data(self.flow.input):
            self._body_end(body)

    def _feed_chunk(self) -> None:
        body, chunk = self._body, self._chunk
        assert body is not None and chunk is not None
        if self.flow.input:
            self._last_activity = self.loop.time()
        if body.feed_chunk(self.flow.input):
            self._end_chunk(body)

    def _end_chunk(self, body: Body) -> None:
        machine = self.machine
        assert machine is not None
        self._chunk = None
        if machine.last_chunk_kept:
            self._body_end(body)
            return
        self._carry_out(machine.chunk_end(self._storage_error(body)))

    def _body_end(self, body: Body) -> None:
        machine = self.machine
        assert machine is not None
        body.finish()
        self._carry_out(machine.body_end(
            BodyFacts(body.size, body.bare_newline, body.headers.received_count(), self._storage_error(body))))

    def _storage_error(self, body: Body) -> StorageError:
        spool = body.spool
        if spool is None or spool.error is None:
            return "" if spool is not None else "local"
        self._report_storage(spool.error)
        return "storage" if is_storage_error(spool.error) else "local"

    def _open_body(self) -> Body | StorageError:
        assert self.machine is not None
        try:
            return open_body(self.services.intake, self.machine, peer_ip=self._peer_ip(),
                             peer_name=self._received_name(), fqdn=self.config.fqdn, tls_info=self.tls_info)
        except OSError as error:
            self._report_storage(error)
            return "storage" if is_storage_error(error) else "local"

    def _begin_data(self, out: BeginData) -> None:
        machine = self.machine
        assert machine is not None
        self._drop_body()  # (none is left over: the machine ends every transaction's body)
        body = self._open_body()
        if not isinstance(body, Body):
            self._carry_out(machine.spool_failed(body == "storage"))
            return
        self._body = body
        self._say(out.go_ahead)
        body.begin_data(self.config.server.bare_newline == "normalize")

    def _begin_chunk(self, out: BeginChunk) -> None:
        if out.first:
            self._drop_body()  # a kept chunk's spool from a transaction that ended with RSET
        if out.first and out.keep:
            opened = self._open_body()  # a failure shows as no spool: the chunk is read and refused at its end
            self._body = opened if isinstance(opened, Body) else Body()
        elif self._body is None:
            self._body = Body()  # (a refused chunk: read and thrown away)
        body = self._body
        self._chunk = out
        body.begin_chunk(out.size, out.keep)
        if not out.size:
            self._end_chunk(body)

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.drop()

    async def _commit(self) -> None:
        machine, body = self.machine, self._body
        assert machine is not None and body is not None and body.spool is not None
        spool = body.spool
        self._body = None
        live = self.live
        try:
            await self.services.intake.commit(spool, "smtp", body.headers, body.received)
        except OSError as error:
            self._report_storage(error)
            outs = machine.commit_failed(is_storage_error(error))
        except BaseException:
            spool.discard()
            if live is not None:
                live.committing = False
            raise
        else:
            if live is not None:
                live.messages += 1
            outs = machine.committed(spool.queue_id)
        if live is not None:
            live.committing = False
            self._sync_live(live, machine)
        self._carry_out(outs)
        text, self._close_after_commit = self._close_after_commit, None
        if text is not None:  # terminate() waited for this commit: the reply to the message first, then the 421
            self.terminate(text)

    def _report_storage(self, error: OSError) -> None:
        log.error("cannot store a message: %s", error)
        self.services.bus.publish(ErrorEvent("queue", f"cannot store a message: {error}"))

    # -- actions --------------------------------------------------------------------------------

    def _carry_out(self, outs: list[Out]) -> None:
        for out in outs:
            _ACTIONS[type(out)](self, out)

    def _say(self, text: str) -> None:
        self._last_reply = text
        data = text.encode("utf-8", "backslashreplace") + b"\r\n"  # an echoed argument's invalid UTF-8, escaped
        self.flow.replies.append(data)
        if self.live is not None:
            self.live.bytes_out += len(data)
            self.live.said(text)
        self.services.counters.bytes_sent_total += len(data)

    def _reply(self, out: Reply | Challenge) -> None:
        self._say(out.text)

    def _commit_out(self, _out: Commit) -> None:
        if self.live is not None:
            self.live.committing = True  # from now on a terminate() waits for this message's 250
        self._run(self._commit())

    def _count(self, out: Count) -> None:
        counters: Any = self.services.counters
        setattr(counters, out.counter, getattr(counters, out.counter) + 1)

    def _begin_tls(self, _out: BeginTls) -> None:
        self.flow.flush()  # the 220, in clear text
        self.flow.input.clear()  # sent in clear text with STARTTLS: never read as commands
        context = self.security.tls_context(self.config, self.services.bus)
        if context is None:  # the certificate went away since EHLO
            self._carry_out([Reply(reply("tls_failed")), Close()])
            return
        self._start_tls(context)

    def _run(self, step: Awaitable[None]) -> None:
        """Start one awaited step; input waits until it is done."""
        self._busy = True
        self.flow.flush()
        self._task = self.loop.create_task(self._step(step))

    async def _step(self, step: Awaitable[None]) -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._unexpected(error)
            self.flow.flush()
            return
        if self.flow.closing or self._task is not asyncio.current_task():
            return  # closed, or the step started the next one
        self._busy = False
        if not self.flow.writing_paused:
            self.flow.resume_reading()
        self._process()

    def _unexpected(self, error: Exception) -> None:
        log.error("session %s: unexpected error", self.live.session_id if self.live else "?", exc_info=error)
        self.services.bus.publish(ErrorEvent("smtp", f"unexpected error in a session: {error!r}"))
        self._drop_body()
        self.flow.replies.append(reply("local_error_closing").encode() + b"\r\n")
        self.flow.close()

    # -- TLS, AUTH, name lookup, ETRN -----------------------------------------------------------

    def _start_tls(self, context: ssl.SSLContext) -> None:
        """From now on every byte goes through TLS; the session waits for the handshake (and its time limit)."""
        self.flow.tls = TlsLayer(context)
        self._busy = True
        timeout = max(1, min(HANDSHAKE_TIMEOUT, int(self._timeout)))
        self._handshake_timer = self.loop.call_later(timeout, self._handshake_timed_out)

    def _handshake_timed_out(self) -> None:
        log.info("session %s: no TLS handshake in time", self.live.session_id if self.live else "?")
        self.flow.abort()

    def _tls_established(self, tls: TlsLayer) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        machine = self.machine
        assert machine is not None
        self.tls_info = describe(tls.ssl_object)
        machine.tls_started()
        live = self.live
        if live is not None:
            live.tls, live.user = True, ""
            cipher = tls.ssl_object.cipher()
            if cipher:
                live.cipher = f"{cipher[1]} {cipher[0]}"
            self.services.bus.publish(SessionChanged(live.session_id))
        if self.implicit_tls:
            self._open_session()  # greets now, or starts the screening step, which greets when done
        else:
            self._busy = False  # the plaintext that came with the handshake is processed next

    async def _check_password(self, out: CheckPassword) -> None:
        assert self.machine is not None
        self._carry_out(await check_password(self.config, self.security, self.services.bus, self._peer_ip(),
                                             self.machine, out, self.live))

    async def _look_up(self) -> None:
        machine = self.machine
        assert machine is not None
        self.peer_names = await self.security.names(self.config).lookup(self._peer_ip())
        self._carry_out(machine.name_found(self.peer_names))

    async def _etrn(self, domain: str) -> None:
        machine = self.machine
        assert machine is not None
        self._carry_out(machine.etrn_done(domain, await self.services.etrn(domain)))


# What each of the machine's actions makes the protocol do (one dictionary look-up per action).
_ACTIONS: dict[type, Callable[[InboundSMTP, Any], None]] = {
    Reply: InboundSMTP._reply,
    Challenge: InboundSMTP._reply,
    BeginData: InboundSMTP._begin_data,
    BeginChunk: InboundSMTP._begin_chunk,
    Commit: InboundSMTP._commit_out,
    DropSpool: lambda session, _out: session._drop_body(),
    Count: InboundSMTP._count,
    Publish: lambda session, out: session.services.bus.publish(out.event),
    CheckPassword: lambda session, out: session._run(session._check_password(out)),
    Etrn: lambda session, out: session._run(session._etrn(out.domain)),
    LookUpName: lambda session, _out: session._run(session._look_up()),
    BeginTls: InboundSMTP._begin_tls,
    Close: lambda session, _out: session.flow.close(),
}


def make_protocol_factory(services: InboundServices, loop: asyncio.AbstractEventLoop, *,
                          implicit_tls: bool = False) -> Callable[[], InboundSMTP]:
    """Sessions for one listener; ``implicit_tls``: SMTPS, TLS from the first byte (port 465 style)."""
    return lambda: InboundSMTP(services, loop=loop, implicit_tls=implicit_tls)
