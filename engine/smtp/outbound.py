"""One outbound SMTP connection attempt: several messages to one destination, per-recipient outcomes.

The caller gives the ordered list of target addresses (MX hosts or a smart host) and the messages
for one destination. A failure of the session itself (no connection, 4xx/5xx greeting or EHLO,
TLS required but not offered, lost connection) moves the undelivered messages on to the next
target in the same attempt; a reply to MAIL, RCPT, DATA or BDAT is the outcome of those recipients.
How the message goes (DATA or BDAT, BODY=, converted or not) is ``engine.smtp.transfer.choose``.
Every command and reply goes into a transcript (authentication secrets masked).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib import SMTPResponse

from engine.log.formats import OUTBOUND_USER
from engine.log.record import ProtocolRecord
from engine.smtp import binarymime
from engine.smtp.client import Connection, Reply, bdat_command, command, crlf_lines, data_block
from engine.smtp.resolver import Target
from engine.smtp.scache import ConnectionCache, Held, Idle, Key
from engine.smtp.transfer import Hop, choose, chunk_spans

DELIVERED, FAILED, DEFERRED = "delivered", "failed", "deferred"


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered | failed | deferred
    reply: str  # e.g. "550 5.1.1 User unknown"
    enhanced: str  # e.g. "5.1.1"
    remote: str = ""  # the host that answered


@dataclass
class Job:
    """One message for some of its recipients at this destination."""

    queue_id: str
    sender: str
    recipients: list[str]
    content: bytes
    mail_options: tuple[str, ...] = ()
    ret: str = ""  # RFC 3461 parameters, passed on when the next hop supports DSN
    envid: str = ""
    rcpt_params: dict[str, tuple[str, str]] = field(default_factory=dict)  # address -> (NOTIFY, ORCPT)
    binarymime: bool = False  # came with BODY=BINARYMIME: sent so by BDAT, or converted first (RFC 3030 §3)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    dsn_passed: bool = False  # the next hop took over success notices (it supports DSN)
    bytes_sent: int = 0  # message data the next hop accepted (counted once per accepted DATA or BDAT LAST)
    sent: int = 0  # transactions the next hop accepted: one message sent each, whatever its recipients

    def undecided(self) -> list[str]:
        return [r for r in self.recipients if r not in self.outcomes]


@dataclass(frozen=True)
class Settings:
    fqdn: str
    use_helo: bool = False
    tls_required: bool = False
    verify_tls: bool = False  # opportunistic TLS does not verify (RFC 7435); "required" may
    username: str = ""
    password: str = ""
    timeout: float = 600.0
    max_recipients: int = 100
    tls_context: ssl.SSLContext | None = None
    auth_any_host: bool = False  # a remote domain's own credentials: for its hosts, not only a smart host


@dataclass
class Tally:
    """What an attempt met on the wire, for the performance counters."""

    connections: int = 0  # connections attempted (one per target tried)
    refused: int = 0  # connections refused: TCP refused, or a greeting other than 220
    errors: int = 0  # connections that failed on the network: refused, unreachable, timed out, reset, TLS


class Transcript:
    """The dialogue of an attempt, one line per command or reply, with timestamps.

    With a ``protocol_log``, each command and its reply also become one outbound protocol-log record. Commands
    sent together (PIPELINING) wait in order for their replies.
    """

    def __init__(self, protocol_log: Callable[[ProtocolRecord], None] | None = None) -> None:
        self.lines: list[str] = []
        self.remote = ""  # the address of the server talked to now
        self._protocol_log = protocol_log
        self._commands: deque[tuple[str, float]] = deque()
        self._second = -1
        self._stamp = ""

    def note(self, text: str) -> None:
        now = int(time.time())
        if now != self._second:  # one strftime a second, not one a line
            self._second, self._stamp = now, time.strftime("%H:%M:%S", time.localtime(now))
        self.lines.append(f"{self._stamp} {text}")

    def sent(self, text: str) -> None:
        self.note(f">>> {text}")
        self._commands.append((text, time.monotonic()))

    def interim(self, response: Reply) -> None:
        """A reply that is not yet the command's last (354 to DATA)."""
        self.note(f"<<< {response.code} {response.message}")

    def got(self, response: SMTPResponse | Reply | tuple[int, str]) -> None:
        code, message = response if isinstance(response, tuple) else (response.code, response.message)
        for line in str(message).splitlines() or [""]:
            self.note(f"<<< {code} {line}")
        if not self._commands:
            return  # a greeting
        text, started = self._commands.popleft()
        if self._protocol_log is not None:
            verb, _, argument = text.partition(" ")
            reply = f"{code} {str(message).splitlines()[-1] if str(message) else ''}"
            self._protocol_log(ProtocolRecord(
                "out", self.remote, OUTBOUND_USER, "", 0, verb, argument, reply, len(text) + 2,
                len(reply) + 2, int((time.monotonic() - started) * 1000)))

    def lost(self) -> None:
        """The connection ended: commands still waiting get no reply."""
        self._commands.clear()


class SessionFailed(Exception):
    """The session with this target cannot go on; the jobs move to the next target."""

    def __init__(self, reply: str, enhanced: str) -> None:
        super().__init__(reply)
        self.reply = reply
        self.enhanced = enhanced


def enhanced_of(code: int, message: str) -> str:
    """The enhanced status in a reply, or the RFC 3463 default for its class."""
    first = message.split(" ", 1)[0]
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] in "245":
        return first
    return {2: "2.0.0", 4: "4.0.0", 5: "5.0.0"}.get(code // 100, "4.0.0")


def _has_8bit(content: bytes) -> bool:
    return not content.isascii()


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(str(message).split())}"


def _outcome_for(code: int, message: str, remote: str) -> Outcome:
    status = DELIVERED if code < 400 else DEFERRED if code < 500 else FAILED
    return Outcome(status, _reply(code, message), enhanced_of(code, message), remote)


async def deliver(targets: Sequence[Target], jobs: list[Job], settings: Settings, transcript: Transcript,
                  tally: Tally | None = None, cache: ConnectionCache | None = None, per_connection: int = 0,
                  on_done: Callable[[Job], None] | None = None, *, places: Held | None = None,
                  destination: str = "", adopted: Idle | None = None) -> None:
    """Try ``targets`` in order until every recipient of ``jobs`` has an outcome; whatever is left is deferred.

    With ``cache``: an idle connection to a target may be reused, and the connection is kept a moment after a
    clean batch, as long as it carries at most ``per_connection`` messages in all. ``on_done`` is told of each job
    whose every recipient has its outcome as soon as it has it (a decided job is never tried again); jobs still
    undecided at the end are deferred here and not told. ``places`` are the connection-limit places of the
    connection: they go with it into the cache (for ``destination``); ``adopted`` is an idle connection the caller
    took over, used for the target it was open to (closed by the caller when no session used it)."""
    tally = tally if tally is not None else Tally()
    hand = _Hand(places, destination, adopted)
    last_failure = ("451 4.4.0 No target to deliver to", "4.4.0")
    for target in targets:
        pending = [job for job in jobs if job.undecided()]
        if not pending:
            return
        try:
            await _session(target, pending, settings, transcript, tally, cache, per_connection, on_done, hand)
        except SessionFailed as failure:
            transcript.note(f"*** {target.host} [{target.address}]: {failure.reply}")
            last_failure = (failure.reply, failure.enhanced)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            if not isinstance(error, aiosmtplib.SMTPResponseException):  # a reply is no connection error
                tally.errors += 1
            text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            transcript.note(f"*** {target.host} [{target.address}]: {text}")
            last_failure = (f"451 4.4.2 Connection to {target.host} failed: {text}", "4.4.2")
    reply, enhanced = last_failure
    if enhanced.startswith("5"):  # a permanent session failure at every target (e.g. 554 greeting)
        reply, enhanced = reply, "4" + enhanced[1:]  # a session-level refusal is retried, as Postfix does
    for job in jobs:
        for rcpt in job.undecided():
            job.outcomes[rcpt] = Outcome(DEFERRED, reply, enhanced)


@dataclass
class _Hand:
    """What one batch's connection carries from target to target: its places and a connection taken over."""

    places: Held | None
    destination: str
    adopted: Idle | None

    def reuse(self, key: Key, room: int, limit: int,
              cache: ConnectionCache | None) -> tuple[Connection, int] | None:
        """The connection taken over, when it is to this target and has room; else an idle one from the cache."""
        adopted = self.adopted
        if adopted is not None and adopted.key == key and adopted.sent + room <= limit:
            adopted.in_use, self.adopted = True, None
            return adopted.client, adopted.sent
        return cache.take(key, room, limit) if cache is not None and limit else None

    def keep(self, cache: ConnectionCache, key: Key, client: Connection, sent: int) -> bool:
        """Into the cache with this connection's places (they are the cache's from then on)."""
        handed = self.places.handover() if self.places is not None else None
        if cache.put(key, client, sent, handed, self.destination):
            self.places = None
            return True
        if handed is not None:
            handed.leave()  # the connection closes now: its places are free
        self.places = None
        return False


def _cache_key(target: Target, settings: Settings) -> Key:
    """Sessions that may share a connection: same place, same EHLO name, TLS and AUTH."""
    return (target.address, target.port, target.host, target.smart_host, settings.fqdn, settings.use_helo,
            settings.tls_required, settings.verify_tls, id(settings.tls_context), settings.username,
            settings.password, settings.auth_any_host)


async def _session(target: Target, jobs: list[Job], settings: Settings, transcript: Transcript,
                   tally: Tally, cache: ConnectionCache | None = None, per_connection: int = 0,
                   on_done: Callable[[Job], None] | None = None, hand: _Hand | None = None) -> None:
    transcript.lost()  # what an earlier target left unanswered
    transcript.remote = target.address
    key = _cache_key(target, settings)
    hand = hand if hand is not None else _Hand(None, "", None)
    reused = hand.reuse(key, len(jobs), per_connection, cache)
    connection: Connection | None = None
    sent = 0
    if reused is not None:
        connection, sent = reused
        transcript.note(f"reusing the connection to {target.host} [{target.address}]:{target.port}")
        try:
            transcript.sent("RSET")
            transcript.got((await connection.execute(b"RSET\r\n"))[0])
        except (OSError, TimeoutError):
            connection.close()  # it went away while idle: a new one
            connection, sent = None, 0
    if connection is None:
        client = await _connect(target, settings, transcript, tally)
        try:
            await _greet(client, target, settings, transcript)
            connection = _hand_over(client, settings)
        except BaseException:
            client.close()
            raise
    try:
        for job in jobs:
            await _send_job(connection, target, job, settings, transcript)
            sent += 1
            if on_done is not None and not job.undecided():
                on_done(job)
        if cache is not None and per_connection and sent < per_connection and connection.is_connected \
                and hand.keep(cache, key, connection, sent):
            connection = None  # kept for the next batch to this host
            return
        transcript.sent("QUIT")
        reply = await connection.quit()
        if reply is not None:  # everything is decided; a rude goodbye changes nothing
            transcript.got(reply)
    finally:
        if connection is not None:
            connection.close()


def _hand_over(client: aiosmtplib.SMTP, settings: Settings) -> Connection:
    """The greeted (secured, authenticated) connection goes on with our client: its transport changes protocol."""
    transport = client.transport
    if transport is None or not client.is_connected:
        raise aiosmtplib.SMTPServerDisconnected("the connection was lost after EHLO")
    return Connection.take_over(transport, dict(client.esmtp_extensions), settings.timeout)


async def _connect(target: Target, settings: Settings, transcript: Transcript, tally: Tally) -> aiosmtplib.SMTP:
    tally.connections += 1
    transcript.note(f"connecting to {target.host} [{target.address}]:{target.port}")
    client = aiosmtplib.SMTP(
        hostname=target.address, port=target.port, local_hostname=settings.fqdn, timeout=settings.timeout,
        start_tls=False, validate_certs=settings.verify_tls, tls_context=settings.tls_context,
    )
    try:
        greeting = await client.connect()
    except aiosmtplib.SMTPConnectResponseError as error:
        tally.refused += 1
        transcript.got((error.code, error.message))
        raise SessionFailed(_reply(error.code, error.message), enhanced_of(error.code, error.message)) from error
    except aiosmtplib.SMTPConnectError as error:
        if isinstance(error.__cause__, ConnectionRefusedError):
            tally.refused += 1
        raise
    transcript.got(greeting)
    return client


async def _greet(client: aiosmtplib.SMTP, target: Target, settings: Settings, transcript: Transcript) -> None:
    command = "HELO" if settings.use_helo else "EHLO"
    transcript.sent(f"{command} {settings.fqdn}")
    response = await (client.helo() if settings.use_helo else client.ehlo())
    transcript.got(response)
    if response.code != 250:
        raise SessionFailed(_reply(response.code, response.message), enhanced_of(response.code, response.message))
    if not settings.use_helo and client.supports_extension("starttls"):
        transcript.sent("STARTTLS")
        try:
            # A verified certificate must name the host we meant (the MX or smart host name), not its address.
            response = await client.starttls(validate_certs=settings.verify_tls,
                                             server_hostname=target.host if settings.verify_tls else None)
        except ssl.SSLCertVerificationError as error:
            transcript.note(f"*** certificate of {target.host} not accepted: {error.verify_message}")
            raise SessionFailed(f"451 4.7.5 The certificate of {target.host} could not be verified: "
                                f"{error.verify_message}", "4.7.5") from error
        except aiosmtplib.SMTPResponseException as error:
            transcript.got((error.code, error.message))
            if settings.tls_required:
                raise SessionFailed(f"451 4.7.5 STARTTLS refused by {target.host}", "4.7.5") from error
            return
        transcript.got(response)
        transcript.note(f"TLS: {client.get_transport_info('ssl_object').version()}")
        transcript.sent(f"EHLO {settings.fqdn}")
        transcript.got(await client.ehlo())
    elif settings.tls_required:
        raise SessionFailed(f"451 4.7.5 TLS is required but {target.host} does not offer STARTTLS", "4.7.5")
    # The server's credentials go to our smart host only, never to any MX; a remote domain's own to its hosts.
    if settings.username and (target.smart_host or settings.auth_any_host):
        transcript.sent("AUTH ******** (credentials masked)")
        try:
            response = await client.login(settings.username, settings.password)
        except aiosmtplib.SMTPException as error:
            code = getattr(error, "code", 454)
            message = getattr(error, "message", str(error))
            transcript.got((code, message))
            raise SessionFailed(f"454 4.7.0 Authentication to {target.host} failed: {code} {message}",
                                "4.7.0") from error
        transcript.got(response)


async def _send_job(connection: Connection, target: Target, job: Job, settings: Settings,
                    transcript: Transcript) -> None:
    undecided = job.undecided()
    hop = Hop.of(connection.extensions)
    transfer = choose(hop, job.binarymime, _has_8bit(job.content))
    if transfer.convert:
        # A hop without CHUNKING and BINARYMIME cannot take it as it is: convert it (once: any hop takes the result).
        try:
            job.content, job.binarymime = await asyncio.to_thread(binarymime.convert, job.content), False
        except binarymime.Unconvertible as error:
            transcript.note(f"*** BINARYMIME message {job.queue_id} cannot be converted: {error}")
            for rcpt in undecided:
                job.outcomes[rcpt] = Outcome(FAILED, f"554 5.6.3 Conversion required but not possible: {error}",
                                             "5.6.3")
            return
        transfer = choose(hop, False, _has_8bit(job.content))
        transcript.note(f"BINARYMIME message {job.queue_id} converted for {transfer.command} "
                        f"({len(job.content)} bytes)")
    encoding = "ascii" if job.sender.isascii() and all(r.isascii() for r in undecided) else "utf-8"
    options = list(job.mail_options)
    if encoding == "utf-8":
        if not connection.supports("smtputf8"):
            for rcpt in undecided:
                job.outcomes[rcpt] = Outcome(FAILED, f"553 5.6.7 {target.host} does not support SMTPUTF8",
                                             "5.6.7", target.host)
            return
        options.append("SMTPUTF8")
    if transfer.command == "DATA":
        payload, size = data_block(job.content), len(job.content)
    else:  # BDAT carries the octets as they are; only a message that is not BINARYMIME must have CRLF lines
        payload = job.content if transfer.body == "BINARYMIME" else crlf_lines(job.content)
        size = len(payload)
    if connection.supports("size"):
        options.append(f"SIZE={size}")
    if transfer.body:
        options.append(f"BODY={transfer.body}")
    job.dsn_passed = connection.supports("dsn")
    if job.dsn_passed:
        options += [f"RET={job.ret}"] if job.ret else []
        options += [f"ENVID={job.envid}"] if job.envid else []
    for start in range(0, len(undecided), settings.max_recipients):
        chunk = undecided[start : start + settings.max_recipients]
        envelope = _Envelope(connection, target.host, job, chunk, options, encoding, transcript)
        if transfer.command == "BDAT":
            await _bdat_transaction(envelope, payload)
        else:
            await _data_transaction(envelope, payload, size)


def _refused_session(reply: Reply) -> SessionFailed:
    return SessionFailed(_reply(reply.code, reply.message), enhanced_of(reply.code, reply.message))


class _Envelope:
    """MAIL and RCPT of one transaction, sent ahead of DATA or BDAT when PIPELINING is offered (RFC 2920: two
    round trips a message instead of 3 + recipients), else one at a time; their replies decide the recipients."""

    def __init__(self, connection: Connection, remote: str, job: Job, chunk: list[str], options: list[str],
                 encoding: str, transcript: Transcript) -> None:
        self.connection, self.remote, self.job, self.chunk = connection, remote, job, chunk
        self.transcript = transcript
        self.pipelined = connection.supports("pipelining")
        self.lines = [command("MAIL", f"FROM:<{job.sender}>", options, encoding)]
        for rcpt in chunk:
            notify, orcpt = job.rcpt_params.get(rcpt, ("", ""))
            rcpt_options = [f"NOTIFY={notify}"] * bool(notify and job.dsn_passed)
            rcpt_options += [f"ORCPT={orcpt}"] * bool(orcpt and job.dsn_passed)
            self.lines.append(command("RCPT", f"TO:<{rcpt}>", rcpt_options, encoding))
        self.texts = [line[:-2].decode(encoding) for line in self.lines]
        self.futures: list[asyncio.Future[Reply]] = []
        self.accepted: list[str] = []
        self.refused = False  # MAIL was refused

    def send_with(self, first: Sequence[bytes | memoryview], text: str) -> None:
        """Pipelined: MAIL, the RCPTs and ``first`` (DATA, or a BDAT chunk with its command) in one write."""
        self.futures = self.connection.send(*self.lines, *first, replies=len(self.lines) + 1)
        for said in [*self.texts, text]:  # (lock-step: each command is said when sent; pipelined: all are out now)
            self.transcript.sent(said)

    async def reply_to(self, index: int) -> Reply:
        if self.pipelined:
            return await self.futures[index]
        self.transcript.sent(self.texts[index])
        return await self.connection.send(self.lines[index])[0]

    async def read(self) -> None:
        """The replies to MAIL and the RCPTs (lock-step: sends them); a 421 ends the session."""
        job, transcript = self.job, self.transcript
        mail = await self.reply_to(0)
        transcript.got(mail)
        if mail.code == 421:
            raise _refused_session(mail)
        self.refused = mail.code != 250
        if self.refused:
            for rcpt in self.chunk:
                job.outcomes[rcpt] = _outcome_for(mail.code, mail.message, self.remote)
        for number, rcpt in enumerate(self.chunk, 1):
            if self.refused and not self.pipelined:
                break
            answer = await self.reply_to(number)
            transcript.got(answer)
            if answer.code == 421:
                raise _refused_session(answer)
            if self.refused:
                continue
            if answer.code in (250, 251):
                self.accepted.append(rcpt)
            else:
                job.outcomes[rcpt] = _outcome_for(answer.code, answer.message, self.remote)

    def doomed(self) -> bool:
        """Pipelined: whether replies already in show that no recipient can get the message (MAIL refused, every
        RCPT refused), so no further BDAT chunk goes out."""
        settled = [f.result() for f in self.futures[: len(self.lines)] if f.done() and f.exception() is None]
        if settled and settled[0].code != 250:
            return True
        return len(settled) == len(self.lines) and not any(r.code in (250, 251) for r in settled[1:])

    def decide(self, outcome: Outcome) -> None:
        for rcpt in self.accepted:
            self.job.outcomes[rcpt] = outcome
        if outcome.status == DELIVERED:
            self.job.bytes_sent += len(self.job.content)  # the message, not its dot-stuffing
            self.job.sent += 1


async def _data_transaction(envelope: _Envelope, block: bytes, size: int) -> None:
    """MAIL, RCPT, DATA and, after 354, the dot-stuffed message."""
    connection, transcript, remote = envelope.connection, envelope.transcript, envelope.remote
    if envelope.pipelined:
        envelope.send_with([b"DATA\r\n"], f"DATA ({size} bytes)")
    async with connection.deadline():  # the replies up to DATA's: one timeout
        await envelope.read()
        if not envelope.accepted and not envelope.pipelined:
            await _rset(connection, transcript)
            return
        if envelope.pipelined:
            go_ahead = await envelope.futures[-1]
        else:
            transcript.sent(f"DATA ({size} bytes)")
            go_ahead = await connection.send(b"DATA\r\n")[0]
    refused = envelope.refused
    if go_ahead.code == 421:
        transcript.got(go_ahead)
        raise _refused_session(go_ahead)
    if go_ahead.code != 354:
        transcript.got(go_ahead)
        envelope.decide(_outcome_for(go_ahead.code if go_ahead.code >= 400 else 451, go_ahead.message, remote))
        refused = True  # the transaction may still be open on the server's side: RSET
    elif not envelope.accepted:  # (pipelined) a server that says 354 with no recipient gets an empty message
        transcript.interim(go_ahead)
        transcript.note(">>> . (nothing to send: no recipient was accepted)")
        transcript.got((await connection.execute(b".\r\n"))[0])
    else:
        transcript.interim(go_ahead)
        done = (await connection.execute(block))[0]
        transcript.got(done)
        if done.code == 421:
            raise _refused_session(done)
        envelope.decide(_outcome_for(done.code, done.message, remote))
    if refused or not envelope.accepted:
        await _rset(connection, transcript)


async def _bdat_transaction(envelope: _Envelope, payload: bytes) -> None:
    """MAIL, RCPT and the message in ``BDAT <n> [LAST]`` chunks (RFC 3030), its octets as they are.

    Pipelined, the first chunk goes with MAIL and RCPT in one write and the others follow as the socket takes them,
    without waiting for replies, unless a reply already in refuses the transaction (RFC 3030 §4.2: no chunk after
    a refusal). A 4xx/5xx to any chunk is the outcome of the accepted recipients, as one to the end of DATA is;
    the transaction is then reset. A lost connection raises, and the message is deferred, as with DATA."""
    connection, transcript, remote = envelope.connection, envelope.transcript, envelope.remote
    view = memoryview(payload)
    spans = chunk_spans(len(payload))

    def piece(number: int) -> tuple[list[bytes | memoryview], str]:
        start, end = spans[number]
        last = number == len(spans) - 1
        return [bdat_command(end - start, last), view[start:end]], f"BDAT {end - start}{' LAST' * last}"

    chunk_replies: list[asyncio.Future[Reply]] = []
    if envelope.pipelined:
        first, text = piece(0)
        envelope.send_with(first, text)
        chunk_replies.append(envelope.futures[-1])
        while len(chunk_replies) < len(spans):
            await connection.writable()  # the chunk before is (nearly) on the wire: replies may be in
            if envelope.doomed() or any(f.done() and f.result().code != 250 for f in chunk_replies):
                break
            lines, text = piece(len(chunk_replies))
            chunk_replies += connection.send(*lines, replies=1)
            transcript.sent(text)
    async with connection.deadline():  # the replies to MAIL and RCPT: one timeout
        await envelope.read()
    if not envelope.pipelined and not envelope.accepted:
        await _rset(connection, transcript)
        return
    outcome: Outcome | None = None
    for number in range(len(spans)):
        if envelope.pipelined:
            if number == len(chunk_replies):
                break  # not sent: a refusal came first
            reply = (await connection.replies([chunk_replies[number]]))[0]
        else:
            if outcome is not None:
                break
            lines, text = piece(number)
            transcript.sent(text)
            reply = (await connection.replies(connection.send(*lines, replies=1)))[0]
        transcript.got(reply)
        if reply.code == 421:
            raise _refused_session(reply)
        if outcome is not None:
            continue  # (pipelined) a chunk after the refused one: its reply is read, nothing more
        if number == len(spans) - 1:
            outcome = _outcome_for(reply.code, reply.message, remote)
        elif reply.code != 250:
            outcome = _outcome_for(reply.code if reply.code >= 400 else 451, reply.message, remote)
    if outcome is not None:
        envelope.decide(outcome)
    if envelope.refused or not envelope.accepted or outcome is None or outcome.status != DELIVERED:
        await _rset(connection, transcript)  # RFC 3030: a refused chunk leaves the transaction to be reset


async def _rset(connection: Connection, transcript: Transcript) -> None:
    transcript.sent("RSET")
    transcript.got((await connection.execute(b"RSET\r\n"))[0])
