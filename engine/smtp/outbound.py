"""One outbound SMTP connection attempt (aiosmtplib): several messages to one destination, per-recipient outcomes.

The caller gives the ordered list of target addresses (MX hosts or a smart host) and the messages
for one destination. A failure of the session itself (no connection, 4xx/5xx greeting or EHLO,
TLS required but not offered, lost connection) moves the undelivered messages on to the next
target in the same attempt; a reply to MAIL, RCPT or DATA is the outcome of those recipients.
Every command and reply goes into a transcript (authentication secrets masked).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib import SMTPResponse

from engine.log.formats import OUTBOUND_USER
from engine.log.record import ProtocolRecord
from engine.smtp import binarymime
from engine.smtp.resolver import Target
from engine.smtp.scache import ConnectionCache, Held, Idle, Key

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
    binarymime: bool = False  # came with BODY=BINARYMIME: converted before DATA (RFC 3030 §3)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    dsn_passed: bool = False  # the next hop took over success notices (it supports DSN)
    bytes_sent: int = 0  # message data the next hop accepted (counted once per accepted DATA)
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

    With a ``protocol_log``, each command and its reply also become one outbound protocol-log record.
    """

    def __init__(self, protocol_log: Callable[[ProtocolRecord], None] | None = None) -> None:
        self.lines: list[str] = []
        self.remote = ""  # the address of the server talked to now
        self._protocol_log = protocol_log
        self._command: tuple[str, float] | None = None

    def note(self, text: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {text}")

    def sent(self, text: str) -> None:
        self.note(f">>> {text}")
        self._command = (text, time.monotonic())

    def got(self, response: SMTPResponse | tuple[int, str]) -> None:
        code, message = (response.code, response.message) if isinstance(response, SMTPResponse) else response
        for line in str(message).splitlines() or [""]:
            self.note(f"<<< {code} {line}")
        command, self._command = self._command, None
        if self._protocol_log is not None and command is not None:
            text, started = command
            verb, _, argument = text.partition(" ")
            reply = f"{code} {str(message).splitlines()[-1] if str(message) else ''}"
            self._protocol_log(ProtocolRecord(
                "out", self.remote, OUTBOUND_USER, "", 0, verb, argument, reply, len(text) + 2,
                len(reply) + 2, int((time.monotonic() - started) * 1000)))


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
              cache: ConnectionCache | None) -> tuple[aiosmtplib.SMTP, int] | None:
        """The connection taken over, when it is to this target and has room; else an idle one from the cache."""
        adopted = self.adopted
        if adopted is not None and adopted.key == key and adopted.sent + room <= limit:
            adopted.in_use, self.adopted = True, None
            return adopted.client, adopted.sent
        return cache.take(key, room, limit) if cache is not None and limit else None

    def keep(self, cache: ConnectionCache, key: Key, client: aiosmtplib.SMTP, sent: int) -> bool:
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
    transcript.remote = target.address
    key = _cache_key(target, settings)
    hand = hand if hand is not None else _Hand(None, "", None)
    reused = hand.reuse(key, len(jobs), per_connection, cache)
    client: aiosmtplib.SMTP | None = None
    sent = 0
    if reused is not None:
        client, sent = reused
        transcript.note(f"reusing the connection to {target.host} [{target.address}]:{target.port}")
        try:
            transcript.sent("RSET")
            transcript.got(await client.rset())
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()  # it went away while idle: a new one
            client, sent = None, 0
    if client is None:
        client = await _connect(target, settings, transcript, tally)
        try:
            await _greet(client, target, settings, transcript)
        except BaseException:
            client.close()
            raise
    try:
        for job in jobs:
            await _send_job(client, target, job, settings, transcript)
            sent += 1
            if on_done is not None and not job.undecided():
                on_done(job)
        if cache is not None and per_connection and sent < per_connection and client.is_connected \
                and hand.keep(cache, key, client, sent):
            client = None  # kept for the next batch to this host
            return
        try:
            transcript.sent("QUIT")
            transcript.got(await client.quit())
        except (aiosmtplib.SMTPException, OSError):
            pass  # everything is decided; a rude goodbye changes nothing
    finally:
        if client is not None:
            client.close()


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


async def _send_job(client: aiosmtplib.SMTP, target: Target, job: Job, settings: Settings,
                    transcript: Transcript) -> None:
    undecided = job.undecided()
    if job.binarymime:
        # Sent with DATA (aiosmtplib has no BDAT), so no hop can take BINARYMIME from us: convert it once.
        try:
            job.content, job.binarymime = await asyncio.to_thread(binarymime.convert, job.content), False
        except binarymime.Unconvertible as error:
            transcript.note(f"*** BINARYMIME message {job.queue_id} cannot be converted: {error}")
            for rcpt in undecided:
                job.outcomes[rcpt] = Outcome(FAILED, f"554 5.6.3 Conversion required but not possible: {error}",
                                             "5.6.3")
            return
        transcript.note(f"BINARYMIME message {job.queue_id} converted for DATA ({len(job.content)} bytes)")
    encoding = "ascii" if job.sender.isascii() and all(r.isascii() for r in undecided) else "utf-8"
    options = list(job.mail_options)
    if encoding == "utf-8":
        if not client.supports_extension("smtputf8"):
            for rcpt in undecided:
                job.outcomes[rcpt] = Outcome(FAILED, f"553 5.6.7 {target.host} does not support SMTPUTF8",
                                             "5.6.7", target.host)
            return
        options.append("SMTPUTF8")
    if client.supports_extension("size"):
        options.append(f"SIZE={len(job.content)}")
    if client.supports_extension("8bitmime") and _has_8bit(job.content):
        options.append("BODY=8BITMIME")
    job.dsn_passed = client.supports_extension("dsn")
    if job.dsn_passed:
        options += [f"RET={job.ret}"] if job.ret else []
        options += [f"ENVID={job.envid}"] if job.envid else []
    for start in range(0, len(undecided), settings.max_recipients):
        chunk = undecided[start : start + settings.max_recipients]
        await _transaction(client, target, job, chunk, options, encoding, transcript)


async def _transaction(client: aiosmtplib.SMTP, target: Target, job: Job, chunk: list[str], options: list[str],
                       encoding: str, transcript: Transcript) -> None:
    remote = target.host
    transcript.sent(f"MAIL FROM:<{job.sender}> {' '.join(options)}".rstrip())
    try:
        response = await client.mail(job.sender, options=options, encoding=encoding)
        transcript.got(response)
    except aiosmtplib.SMTPResponseException as error:
        transcript.got((error.code, error.message))
        if error.code == 421:
            raise SessionFailed(_reply(error.code, error.message), enhanced_of(error.code, error.message)) from error
        for rcpt in chunk:
            job.outcomes[rcpt] = _outcome_for(error.code, error.message, remote)
        await _rset(client, transcript)
        return
    accepted: list[str] = []
    for rcpt in chunk:
        notify, orcpt = job.rcpt_params.get(rcpt, ("", ""))
        rcpt_options = [f"NOTIFY={notify}"] * bool(notify and job.dsn_passed)
        rcpt_options += [f"ORCPT={orcpt}"] * bool(orcpt and job.dsn_passed)
        transcript.sent(f"RCPT TO:<{rcpt}> {' '.join(rcpt_options)}".rstrip())
        try:
            response = await client.rcpt(rcpt, options=rcpt_options, encoding=encoding)
            transcript.got(response)
            accepted.append(rcpt)
        except aiosmtplib.SMTPResponseException as error:
            transcript.got((error.code, error.message))
            if error.code == 421:
                raise SessionFailed(_reply(error.code, error.message),
                                    enhanced_of(error.code, error.message)) from error
            job.outcomes[rcpt] = _outcome_for(error.code, error.message, remote)
    if not accepted:
        await _rset(client, transcript)
        return
    content = job.content if job.content.endswith(b"\r\n") else job.content + b"\r\n"
    transcript.sent(f"DATA ({len(content)} bytes)")
    try:
        response = await client.data(content)
        transcript.got(response)
        outcome = _outcome_for(response.code, response.message, remote)
        if outcome.status == DELIVERED:
            job.bytes_sent += len(content)
            job.sent += 1
    except aiosmtplib.SMTPResponseException as error:
        transcript.got((error.code, error.message))
        if error.code == 421:
            raise SessionFailed(_reply(error.code, error.message), enhanced_of(error.code, error.message)) from error
        outcome = _outcome_for(error.code, error.message, remote)
    for rcpt in accepted:
        job.outcomes[rcpt] = outcome


async def _rset(client: aiosmtplib.SMTP, transcript: Transcript) -> None:
    transcript.sent("RSET")
    try:
        transcript.got(await client.rset())
    except aiosmtplib.SMTPResponseException as error:
        transcript.got((error.code, error.message))
