"""Inbound SMTP's I/O: a plain asyncio Protocol that reads, feeds the session machine and carries out its actions.

All rules live in ``machine.SmtpMachine``; this module owns the socket, the timer, the spool, TLS (every
byte through ``tls_layer.TlsLayer`` once it starts) and the few awaits a session has (connection
screening, a password check, a name lookup, ETRN, the commit).
While one of those runs, input waits in the buffer (reading pauses when it grows), so pipelined commands
are answered in order. Replies are written once per batch of input (RFC 2920 PIPELINING: one write for
all the replies to the commands that came together), and reading stops while the client does not read
what we write.

Invariants: ``250`` after DATA or BDAT LAST is sent only after ``Intake.commit`` returned. Nothing a
client sent in clear text with STARTTLS is ever read as a command: the buffer is dropped when the 220
is written, and every later byte goes through TLS. No password is kept, logged or put in an event.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

from engine.cleanup.headers import HeaderScanner
from engine.cleanup.intake import DsnRequest, SpoolFile, is_storage_error
from engine.conf.access import NameResult, access_list, decide, ip_listed
from engine.conf.hostport import join_hostport
from engine.events import (
    ConnectionLimitReached,
    ConnectionRefused,
    ErrorEvent,
    SessionChanged,
    SessionClosed,
    SessionOpened,
)
from engine.log.record import ProtocolRecord
from engine.smtpd.data_stream import DataStream
from engine.smtpd.limits import connection_limits
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
    shown_name,
)
from engine.smtpd.received import protocol_name, received_header
from engine.smtpd.replies import reply
from engine.smtpd.security import AuthFailed, shared_security
from engine.smtpd.services import InboundServices
from engine.smtpd.sessions import LiveSession
from engine.smtpd.tls import describe
from engine.smtpd.tls_layer import TlsFailed, TlsLayer

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 30  # seconds a client gets for its TLS handshake (less if the idle time-out is)
INPUT_HIGH_WATER = 1024 * 1024  # input buffered while the session waits before we stop reading
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
        self.transport: asyncio.Transport | None = None
        self.live: LiveSession | None = None
        self.machine: SmtpMachine | None = None
        self.peer_names: NameResult | None = None
        self.tls_info = ""
        self._tls: TlsLayer | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._in = bytearray()
        self._out: list[bytes] = []
        self._busy = True  # until the greeting: input waits
        self._closing = False
        self._reading_paused = False
        self._writing_paused = False
        self._skipping = False  # throwing away the rest of an over-long line
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._timeout = float(self.config.server.connection_timeout)
        self._task: asyncio.Task[None] | None = None
        # The body being read: DATA (``_stream``) or one BDAT chunk (``_chunk_left`` bytes still to come).
        self._spool: SpoolFile | None = None
        self._stream: DataStream | None = None
        self._headers: HeaderScanner | None = None
        self._chunk: BeginChunk | None = None
        self._chunk_left = 0
        self._size = 0
        self._prefix = 0  # our Received header's length
        # The protocol log: the command being answered (verb, argument, started, bytes out and in before it).
        self._logged: tuple[str, str, float, int, int] | None = None
        self._last_reply = ""
        self._close_after_commit: str | None = None  # terminate() during a commit: the 421 after the 250
        self._eof = False  # the client shut its sending side down (its last input is still answered)

    # -- connection lifecycle -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # (uvloop's are not asyncio's classes)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.live = live = self.services.sessions.open(str(peer[0]), int(peer[1]), self.terminate)
        local = transport.get_extra_info("sockname")
        if local:
            live.listener = join_hostport(str(local[0]), int(local[1]))
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
        self._closing = True
        self._close_live()
        for timer in (self._timer, self._handshake_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._handshake_timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._drop_spool()

    def _close_live(self) -> None:
        live = self.live
        if live is not None and self.services.sessions.get(live.session_id) is live:
            self.services.sessions.close(live)
            self.services.counters.inbound_connections_current -= 1
            self.services.bus.publish(SessionClosed(live.session_id, live.peer, live.messages))

    def _open_session(self) -> None:
        """Limits and connection control, then the greeting."""
        refusal = self._refusal()
        if refusal is None and self._needs_screening():
            self._run(self._screen())
            return
        self._greet(refusal)

    def _greet(self, refusal: str | None) -> None:
        assert self.machine is not None
        if refusal is not None:
            self.services.counters.inbound_connections_refused += 1
            self._carry_out([Reply(refusal), Close()])
            self._flush()
            return
        self._last_activity = self.loop.time()
        self._timer = self.loop.call_later(self._timeout, self._on_timer)
        self._carry_out(self.machine.greeting())
        self._busy = False
        self._process()

    def _refusal(self) -> str | None:
        server = self.config.server
        sessions = self.services.sessions
        if self.services.paused():
            return reply("paused")
        total, per_peer = connection_limits(server)
        if len(sessions) > total:
            self.services.bus.publish(ConnectionLimitReached(self._peer_ip(), total))  # the event log's 4001
            return reply("too_many_connections")
        if self.live is not None and sessions.from_peer(self.live.peer) > per_peer:
            self.services.bus.publish(ConnectionLimitReached(self.live.peer, per_peer, per_peer=True))
            return reply("too_many_from_peer")
        return None

    def _needs_screening(self) -> bool:
        server = self.config.server
        return bool(server.reverse_dns_lookup or server.connection_list
                    or server.connection_grant != "all_except_listed")

    async def _screen(self) -> None:
        """Connection control (and the reverse lookup for Received), then the greeting or the refusal."""
        server = self.config.server
        peer = self._peer_ip()
        rules = access_list(server.connection_list)
        if server.reverse_dns_lookup or (rules.needs_name and not ip_listed(peer, rules)):
            self.peer_names = await self.security.names(self.config).lookup(peer)
            if self.machine is not None:  # relay rules by name use the same answer
                self.machine.peer_names, self.machine.names_looked_up = self.peer_names, True
        decision = decide(server.connection_grant, rules, peer, self.peer_names)
        if decision == "allow":
            self._greet(None)
            return
        reason = "not granted by connection control" if decision == "deny" else \
            "connection control needs the client's name and the reverse DNS lookup failed for now"
        self.services.bus.publish(ConnectionRefused(peer, reason))
        log.info("connection from %s refused: %s", peer, reason)
        key = "access_denied" if decision == "deny" else "access_deferred"
        self._greet(reply(key, fqdn=self.config.fqdn, peer=peer))

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
        self._flush()

    def terminate(self, text: str) -> None:
        """Close the session from outside (administrator, shutdown) with a 421 reply.

        A message whose body is complete and whose commit is under way gets its 250 first (the close
        follows it); any other message not yet committed is never stored: the client got a 421.
        """
        if self.live is not None and self.live.committing:
            self._close_after_commit = text
            return
        self._out.append(text.encode("utf-8") + b"\r\n")
        self._close()

    def _close(self) -> None:
        self._flush()
        self._closing = True
        if self.transport is not None:
            if self._tls is not None and self._tls.established and not self.transport.is_closing():
                self.transport.write(self._tls.close())
            self.transport.close()

    # -- flow control ---------------------------------------------------------------------------

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._busy:
            self._resume_reading()
            self._process()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self._closing:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self._closing:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- input ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        size = len(data)
        if self.live is not None:
            self.live.bytes_in += size
        self.services.counters.bytes_received_total += size
        if self._closing:
            return
        if self._tls is not None:
            data = self._decrypt(self._tls, data)
            if not data:
                return
        self._in += data
        if self._busy or self._writing_paused:
            if len(self._in) > INPUT_HIGH_WATER:
                self._pause_reading()
            return
        self._process()

    def _decrypt(self, tls: TlsLayer, data: bytes) -> bytes:
        """Bytes from the socket through the TLS layer: the plaintext ("" while the handshake runs)."""
        was_established = tls.established
        try:
            plain, reply_records = tls.receive(data)
        except TlsFailed as error:
            log.info("session %s: TLS failed: %s", self.live.session_id if self.live else "?", error)
            self._closing = True
            if self.transport is not None:
                self.transport.close()
            return b""
        if reply_records and self.transport is not None:
            self.transport.write(reply_records)
        if tls.established and not was_established:
            self._tls_established(tls)
        if tls.closed:
            self._close()
            return b""
        return plain

    def eof_received(self) -> bool | None:
        """The client will send nothing more; what it sent is still answered before the connection closes.

        Exim pipelines its last ``BDAT … LAST`` with QUIT and then shuts its sending side down: its message
        must be committed and answered, not dropped with the connection."""
        if self.machine is None or self._closing or (self._tls is not None and not self._tls.established):
            return None  # nothing to answer (or a TLS handshake that cannot finish now): close
        self._eof = True
        if not self._busy and not self._writing_paused:
            self._process()
        return True  # keep the transport open for the replies; _process closes it once the input is done

    def _process(self) -> None:
        """Work through the buffered input until it runs out or the session must wait; then write the replies."""
        machine = self.machine
        assert machine is not None
        try:
            while not self._busy and not self._closing and not self._writing_paused:
                if self._logged is not None and machine.mode in ("command", "closed"):
                    self._log_end()
                if not self._in:
                    break
                mode = machine.mode
                if mode == "data":
                    self._feed_data()
                elif mode == "chunk":
                    self._feed_chunk()
                else:
                    if not self._feed_line(machine):
                        break
            if self._logged is not None and machine.mode in ("command", "closed") and not self._busy:
                self._log_end()  # the last command of the batch, or QUIT
        except Exception as error:  # a bug of ours: never read on, the input cannot be trusted any more
            self._unexpected(error)
        self._flush()
        if self._eof and not self._busy and not self._writing_paused and not self._closing:
            self._close()  # the client half-closed and all it sent is answered: nothing more can come

    def _feed_line(self, machine: SmtpMachine) -> bool:
        """One command line out of the buffer; False when no whole line is there yet."""
        buffer = self._in
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
        if self.services.protocol_log is not None and machine.mode == "command":
            self._log_start(line)
        if self.live is not None:
            self.live.heard(line, machine.mode[:4] == "auth")
        outs = machine.command(line)
        self._note(line, machine)
        self._carry_out(outs)
        return True

    def _log_start(self, line: bytes) -> None:
        live = self.live
        verb, _, arg = line.decode("utf-8", "replace").partition(" ")
        self._logged = (verb.upper(), arg.strip(), time.monotonic(), live.bytes_out if live else 0,
                        (live.bytes_in if live else 0) - len(self._in) - len(line))

    def _log_end(self) -> None:
        """The protocol log's one call site: the command is answered (its last reply is out)."""
        logged, self._logged = self._logged, None
        record = self.services.protocol_log
        if logged is None or record is None:
            return
        verb, arg, started, sent_before, received_before = logged
        live = self.live
        local = self.transport.get_extra_info("sockname") if self.transport is not None else None
        helo = self.machine.helo if self.machine is not None else None
        record(ProtocolRecord(
            "in", self._peer_ip(), helo or "", str(local[0]) if local else "", int(local[1]) if local else 0,
            verb, arg, self._last_reply, (live.bytes_out if live else 0) - sent_before,
            (live.bytes_in if live else 0) - len(self._in) - received_before,
            int((time.monotonic() - started) * 1000)))

    def _note(self, line: bytes, machine: SmtpMachine) -> None:
        live = self.live
        if live is None:
            return
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

    def _feed_data(self) -> None:
        stream, spool, headers = self._stream, self._spool, self._headers
        assert stream is not None and spool is not None and headers is not None
        chunk = bytes(self._in)
        self._in.clear()
        self._last_activity = self.loop.time()
        content, leftover = stream.feed(chunk)
        if content:
            self._size += len(content)
            limit = self.config.server.max_message_size_kb * 1024
            if not limit or self._size <= limit:
                headers.feed(content)
                spool.write(content)
        if leftover:
            self._in += leftover  # commands pipelined after the end of DATA
        if stream.done:
            self._stream = None
            self._body_end(stream.bare_newline)

    def _feed_chunk(self) -> None:
        chunk = self._chunk
        assert chunk is not None
        take = min(self._chunk_left, len(self._in))
        if take:
            self._last_activity = self.loop.time()
            if chunk.keep and self._spool is not None:
                with memoryview(self._in) as view:
                    data = bytes(view[:take])
                if self._headers is not None:
                    self._headers.feed(data)
                self._spool.write(data)
            del self._in[:take]
            self._chunk_left -= take
            self._size += take
        if self._chunk_left:
            return
        self._end_chunk(chunk)

    def _end_chunk(self, chunk: BeginChunk) -> None:
        machine = self.machine
        assert machine is not None
        self._chunk = None
        if machine.last_chunk_kept:
            self._body_end(False)
            return
        self._carry_out(machine.chunk_end(self._spool_error()))

    def _spool_error(self) -> StorageError:
        spool = self._spool
        if spool is None or spool.error is None:
            return "" if spool is not None else "local"
        self._report_storage(spool.error)
        return "storage" if is_storage_error(spool.error) else "local"

    def _body_end(self, bare_newline: bool) -> None:
        machine = self.machine
        assert machine is not None and self._spool is not None
        self._spool.size = self._size + self._prefix
        headers = self._headers
        facts = BodyFacts(self._size, bare_newline, headers.received_count() if headers else 0, self._spool_error())
        self._carry_out(machine.body_end(facts))

    # -- actions --------------------------------------------------------------------------------

    def _carry_out(self, outs: list[Out]) -> None:
        for out in outs:
            if isinstance(out, Reply | Challenge):
                self._say(out.text)
            elif isinstance(out, BeginData):
                self._begin_data(out)
            elif isinstance(out, BeginChunk):
                self._begin_chunk(out)
            elif isinstance(out, Commit):
                if self.live is not None:
                    self.live.committing = True  # from now on a terminate() waits for this message's 250
                self._run(self._commit())
            elif isinstance(out, DropSpool):
                self._drop_spool()
            elif isinstance(out, Count):
                counters: Any = self.services.counters
                setattr(counters, out.counter, getattr(counters, out.counter) + 1)
            elif isinstance(out, Publish):
                self.services.bus.publish(out.event)
            elif isinstance(out, CheckPassword):
                self._run(self._check_password(out))
            elif isinstance(out, Etrn):
                self._run(self._etrn(out.domain))
            elif isinstance(out, LookUpName):
                self._run(self._look_up())
            elif isinstance(out, BeginTls):
                self._flush()  # the 220, in clear text
                self._in.clear()  # sent in clear text with STARTTLS: never read as commands
                context = self.security.tls_context(self.config, self.services.bus)
                if context is None:  # the certificate went away since EHLO
                    self._carry_out([Reply(reply("tls_failed")), Close()])
                    continue
                self._start_tls(context)
            elif isinstance(out, Close):
                self._close()

    def _say(self, text: str) -> None:
        self._last_reply = text
        data = text.encode("utf-8", "backslashreplace") + b"\r\n"  # an echoed argument's invalid UTF-8, escaped
        self._out.append(data)
        if self.live is not None:
            self.live.bytes_out += len(data)
            self.live.said(text)
        self.services.counters.bytes_sent_total += len(data)

    def _flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        if self.transport is None or self.transport.is_closing():
            return
        tls = self._tls
        if tls is not None:
            if not tls.established:
                return  # (nothing is said to a client in the middle of its handshake)
            try:
                data = tls.send(data)
            except TlsFailed:
                self.transport.close()
                return
        self.transport.write(data)

    def _run(self, step: Any) -> None:
        """Start one awaited step; input waits until it is done."""
        self._busy = True
        self._flush()
        self._task = self.loop.create_task(self._step(step))

    async def _step(self, step: Any) -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._unexpected(error)
            self._flush()
            return
        if self._closing or self._task is not asyncio.current_task():
            return  # closed, or the step started the next one
        self._busy = False
        if not self._writing_paused:
            self._resume_reading()
        self._process()

    def _unexpected(self, error: Exception) -> None:
        log.error("session %s: unexpected error", self.live.session_id if self.live else "?", exc_info=error)
        self.services.bus.publish(ErrorEvent("smtp", f"unexpected error in a session: {error!r}"))
        self._drop_spool()
        self._out.append(reply("local_error_closing").encode() + b"\r\n")
        self._close()

    # -- the message body -----------------------------------------------------------------------

    def _open_spool(self) -> StorageError:
        machine = self.machine
        assert machine is not None and machine.transaction is not None
        transaction = machine.transaction
        try:
            spool = self.services.intake.open_spool(transaction.sender, tuple(transaction.recipients))
        except OSError as error:
            self._report_storage(error)
            return "storage" if is_storage_error(error) else "local"
        spool.dsn = DsnRequest(transaction.ret, transaction.envid, dict(transaction.rcpt_params))
        spool.binarymime = transaction.body_type == "BINARYMIME"
        received = received_header(
            helo=machine.helo or "",
            peer_ip=self._peer_ip(),
            peer_name=self._received_name(),
            fqdn=self.config.fqdn,
            protocol=protocol_name(machine.extended, machine.tls_active, machine.authenticated),
            queue_id=spool.queue_id,
            recipients=transaction.recipients,
            tls_info=self.tls_info,
        )
        spool.write(received)
        self._spool = spool
        self._headers = HeaderScanner()
        self._size = 0
        self._prefix = len(received)
        return ""

    def _begin_data(self, out: BeginData) -> None:
        machine = self.machine
        assert machine is not None
        failed = self._open_spool()
        if failed:
            self._carry_out(machine.spool_failed(failed == "storage"))
            return
        self._say(out.go_ahead)
        self._stream = DataStream(normalize_bare_newlines=self.config.server.bare_newline == "normalize")

    def _begin_chunk(self, out: BeginChunk) -> None:
        if out.first and out.keep:
            self._open_spool()  # a failure shows as no spool: the chunk is read and refused at its end
        self._chunk = out
        self._chunk_left = out.size
        if not out.size:
            self._end_chunk(out)

    def _drop_spool(self) -> None:
        spool, self._spool = self._spool, None
        self._stream = None
        if spool is not None:
            spool.discard()

    async def _commit(self) -> None:
        machine = self.machine
        spool = self._spool
        assert machine is not None and spool is not None
        self._spool = None
        live = self.live
        try:
            await self.services.intake.commit(spool, "smtp")
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

    # -- TLS, AUTH, ETRN ------------------------------------------------------------------------

    def _start_tls(self, context: ssl.SSLContext) -> None:
        """From now on every byte goes through TLS; the session waits for the handshake (and its time limit)."""
        self._tls = TlsLayer(context)
        self._busy = True
        timeout = max(1, min(HANDSHAKE_TIMEOUT, int(self._timeout)))
        self._handshake_timer = self.loop.call_later(timeout, self._handshake_timed_out)

    def _handshake_timed_out(self) -> None:
        log.info("session %s: no TLS handshake in time", self.live.session_id if self.live else "?")
        self._closing = True
        if self.transport is not None:
            self.transport.close()

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
        machine = self.machine
        assert machine is not None
        server = self.config.server
        peer = self._peer_ip()
        limiter = self.security.limiter
        # The slot is taken before the check: parallel connections cannot all get a verdict.
        locked = limiter.begin(peer, threshold=server.auth_lockout_failures, period=float(server.auth_lockout_seconds))
        if locked:
            self._carry_out(machine.auth_locked(locked))
            return
        account = None
        try:
            if not out.for_other:  # acting for another identity is not supported
                account = await self.security.check_password(self.config, self.services.bus, out.login, out.password)
        finally:
            limiter.end(peer)  # a failure is recorded right after, with no await between
        if account is not None:
            if self.live is not None:
                self.live.user = account
                self.services.bus.publish(SessionChanged(self.live.session_id))
            self._carry_out(machine.auth_checked(account))
            return
        verdict = limiter.failed(peer, threshold=server.auth_lockout_failures,
                                               period=float(server.auth_lockout_seconds),
                                               base_delay=server.auth_failure_delay_ms / 1000)
        name = shown_name(out.login)
        log.info("AUTH failed from %s for %r (%d failure(s)%s)", peer, name, verdict.failures,
                 ", locked out" if verdict.locked else "")
        self.services.bus.publish(AuthFailed(peer, name, verdict.failures, verdict.locked))
        if verdict.delay:
            await asyncio.sleep(verdict.delay)
        self._carry_out(machine.auth_checked(None))

    async def _look_up(self) -> None:
        machine = self.machine
        assert machine is not None
        self.peer_names = await self.security.names(self.config).lookup(self._peer_ip())
        self._carry_out(machine.name_found(self.peer_names))

    async def _etrn(self, domain: str) -> None:
        machine = self.machine
        assert machine is not None
        self._carry_out(machine.etrn_done(domain, await self.services.etrn(domain)))


def make_protocol_factory(services: InboundServices, loop: asyncio.AbstractEventLoop, *,
                          implicit_tls: bool = False) -> Callable[[], InboundSMTP]:
    """Sessions for one listener; ``implicit_tls``: SMTPS, TLS from the first byte (port 465 style)."""
    return lambda: InboundSMTP(services, loop=loop, implicit_tls=implicit_tls)
