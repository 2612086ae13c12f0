"""Inbound SMTP as a sans-I/O machine: one session's state and rules; lines in, ``Out`` actions out.

The machine reads no socket, writes no file and awaits nothing. The protocol (``inbound.py``) feeds it
command lines and the facts of what it did (a message body read, a spool committed, a password checked, a
TLS handshake finished) and carries out the actions it returns, in order: replies (only from
``replies.R``), the start of DATA or of one BDAT chunk, the TLS switch, a password to check, an ETRN to run,
an event to publish, a counter to count, the connection to close.

Invariants: every reply comes from the table and every 500-504 counts toward ``max_bad_commands`` (the
last one is replaced by 421 and a close); a BDAT chunk's bytes are always consumed, even when the command
is refused, so message bytes are never read as commands (a BDAT whose size cannot be read closes the
connection for that reason); DATA and BDAT never mix in one transaction, and BODY=BINARYMIME needs BDAT
(remote recipients too: delivery converts the message for a hop without BINARYMIME, RFC 3030 §3, see
smtp/binarymime.py); a STARTTLS handshake starts the session over (no HELO, not authenticated); the
password only passes through in a ``CheckPassword`` action and is kept nowhere.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from engine.bounce import dsn_params
from engine.conf.access import NameResult
from engine.conf.addresses import AddressError, ParamSyntaxError, Path, parse_path
from engine.conf.config import Config
from engine.events import Event
from engine.smtpd.policy import RELAY_NAME_NEEDED, recipient_refusal
from engine.smtpd.received import rfc5322_now
from engine.smtpd.replies import is_syntax_or_sequence_error, reply
from engine.smtpd.security import AuthRefusedLocked, AuthSucceeded

VERSION = "0.1.0"
MAX_AUTH_LINE = 12288  # RFC 4954: a client's line in the AUTH exchange
AUTH_MECHANISMS = ("PLAIN", "LOGIN")
ALLOWED_BEFORE_TLS = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT"})  # RFC 3207 §4 with require_tls

Counter = Literal["messages_refused_for_size", "messages_refused_for_relay"]
Mode = Literal["command", "data", "chunk", "auth_plain", "auth_login_user", "auth_login_password", "auth_check",
               "tls", "etrn", "lookup", "commit", "closed"]
Body = Literal["", "DATA", "BDAT"]
StorageError = Literal["", "storage", "local"]


# -- the actions -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    text: str  # one reply, CRLF between its lines, none at the end


@dataclass(frozen=True)
class Challenge:
    text: str  # "334 <base64>": the next line is the client's answer, not a command


@dataclass(frozen=True)
class BeginData:
    go_ahead: str  # the 354, sent once the spool is open (else ``spool_failed``)


@dataclass(frozen=True)
class BeginChunk:
    size: int
    last: bool
    keep: bool  # False: read and throw away (refused, or over the size limit)
    first: bool  # the transaction's first chunk: open the spool


@dataclass(frozen=True)
class Commit:
    """The body is complete and acceptable: commit the spool, then call ``committed`` or ``commit_failed``."""


@dataclass(frozen=True)
class DropSpool:
    """The transaction failed: discard the spool, if one is open."""


@dataclass(frozen=True)
class BeginTls:
    """Switch to TLS after the 220; anything the client sent with STARTTLS is thrown away."""


@dataclass(frozen=True)
class CheckPassword:
    login: str
    password: str
    for_other: bool  # an authorization identity other than the login: not supported, always a failure


@dataclass(frozen=True)
class Etrn:
    domain: str


@dataclass(frozen=True)
class LookUpName:
    """Relaying depends on the client's name: look it up (reverse DNS, forward-confirmed), then ``name_found``."""


@dataclass(frozen=True)
class Publish:
    event: Event


@dataclass(frozen=True)
class Count:
    counter: Counter


@dataclass(frozen=True)
class Close:
    """Close the connection after the replies before it are written."""


Out = Reply | Challenge | BeginData | BeginChunk | Commit | DropSpool | BeginTls | CheckPassword | Etrn | LookUpName \
    | Publish | Count | Close


@dataclass(frozen=True)
class BodyFacts:
    """What the protocol saw while reading a message body (DATA, or BDAT up to LAST)."""

    size: int  # message bytes, without our Received header
    bare_newline: bool = False
    hops: int = 0  # Received headers
    storage: StorageError = ""  # the spool could not be written


# -- the transaction -------------------------------------------------------------------------------------

@dataclass
class Transaction:
    """One mail transaction: MAIL to the end of the body (or RSET)."""

    sender: str
    size: int = 0  # MAIL SIZE=
    body_type: str = "7BIT"  # BODY=
    smtputf8: bool = False
    ret: str = ""
    envid: str = ""
    recipients: list[str] = field(default_factory=list)
    rcpt_params: dict[str, tuple[str, str]] = field(default_factory=dict)  # address -> (NOTIFY, ORCPT)
    body: Body = ""
    received: int = 0  # BDAT octets so far
    kept: bool = True  # every chunk so far was within the size limit


class ParamError(Exception):
    """An ESMTP parameter the machine refuses; ``text`` is the reply."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _size(draft: Transaction, value: str | None) -> None:
    if value is None or not value.isdigit() or len(value) > 20:
        raise ParamError(reply("bad_param_value", param="SIZE"))
    draft.size = int(value)


def _body(draft: Transaction, value: str | None) -> None:
    if value is None or value.upper() not in ("7BIT", "8BITMIME", "BINARYMIME"):
        raise ParamError(reply("bad_param_value", param="BODY"))
    draft.body_type = value.upper()


def _ret(draft: Transaction, value: str | None) -> None:
    try:
        draft.ret = dsn_params.parse_ret(value)
    except dsn_params.DsnParamError:
        raise ParamError(reply("bad_param_value", param="RET")) from None


def _envid(draft: Transaction, value: str | None) -> None:
    try:
        draft.envid = dsn_params.parse_envid(value)
    except dsn_params.DsnParamError:
        raise ParamError(reply("bad_param_value", param="ENVID")) from None


def _auth(draft: Transaction, value: str | None) -> None:
    """RFC 4954 AUTH=<mailbox>: accepted and not trusted."""


def _smtputf8(draft: Transaction, value: str | None) -> None:
    if value is not None:
        raise ParamError(reply("bad_param_value", param="SMTPUTF8"))
    draft.smtputf8 = True


MAIL_PARAMS: dict[str, Callable[[Transaction, str | None], None]] = {
    "SIZE": _size, "BODY": _body, "RET": _ret, "ENVID": _envid, "AUTH": _auth, "SMTPUTF8": _smtputf8,
}


def _notify(value: str | None) -> tuple[str, str]:
    return dsn_params.parse_notify(value), ""


def _orcpt(value: str | None) -> tuple[str, str]:
    return "", dsn_params.parse_orcpt(value)


RCPT_PARAMS: dict[str, Callable[[str | None], tuple[str, str]]] = {"NOTIFY": _notify, "ORCPT": _orcpt}


def rcpt_params(params: dict[str, str | None]) -> tuple[str, str]:
    """(NOTIFY, ORCPT) of a RCPT command; raises ParamError."""
    notify = orcpt = ""
    for name, value in params.items():
        parser = RCPT_PARAMS.get(name)
        if parser is None:
            raise ParamError(reply("bad_param", param=name[:40]))
        try:
            got_notify, got_orcpt = parser(value)
        except dsn_params.DsnParamError:
            raise ParamError(reply("bad_param_value", param=name)) from None
        notify, orcpt = got_notify or notify, got_orcpt or orcpt
    return notify, orcpt


def decode_base64(text: str) -> bytes | None:
    """RFC 4954 base64 ("=" is an empty response); None when it is not base64."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def split_plain(data: bytes) -> tuple[str, str, str] | None:
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


_BDAT = re.compile(r"(\d{1,18})(?: +(LAST))?", re.IGNORECASE)


def parse_command(line: bytes) -> tuple[str, str | None]:
    """(VERB, argument or None); the verb is ASCII upper case ("" when the line has none)."""
    verb_bytes, _, arg_bytes = line.partition(b" ")
    try:
        verb = verb_bytes.decode("ascii").upper()
    except UnicodeDecodeError:
        verb = "?"
    arg = arg_bytes.strip()
    # RFC 6531 clients send UTF-8; surrogateescape keeps any other byte as it came.
    return verb, arg.decode("utf-8", "surrogateescape") if arg else None


# -- the machine -----------------------------------------------------------------------------------------

class SmtpMachine:
    """One inbound session. ``command`` for each line; the ``*_end``/``*ed`` methods for what the protocol did."""

    def __init__(self, config: Config, peer: str, *, tls_available: bool = False, tls_active: bool = False,
                 auth_locked: Callable[[], float] = lambda: 0.0, stamp: str | None = None) -> None:
        self.config = config
        self.server = config.server
        self.fqdn = config.fqdn
        self.peer = peer
        self.tls_available = tls_available
        self.tls_active = tls_active
        self._auth_locked = auth_locked
        self._stamp = stamp
        self.mode: Mode = "command"
        self.helo: str | None = None
        self.extended = False
        self.user = ""  # the authenticated account, "" when anonymous
        self.transaction: Transaction | None = None
        self.bad_commands = 0
        self.session_bytes = 0
        self.messages = 0
        self._login = ""  # AUTH LOGIN: the name, between its two challenges
        self._chunk_refusal = ""  # BDAT refused: the reply, sent once its bytes are consumed
        self._chunk: BeginChunk | None = None
        self.peer_names: NameResult | None = None  # the client's name, once looked up
        self.names_looked_up = False  # (once per session: a failed lookup is not retried)
        self._pending_rcpt: str | None = None  # the RCPT argument waiting for the client's name

    # -- session facts the protocol reads ----------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        return bool(self.user)

    @property
    def message_limit(self) -> int:
        return self.server.max_message_size_kb * 1024

    @property
    def line_limit(self) -> int:
        return MAX_AUTH_LINE if self.mode.startswith("auth_") else self.server.max_command_line

    @property
    def phase(self) -> str:
        """For Current Sessions: what the session is doing."""
        if self.mode in ("data", "chunk", "commit"):
            return "data"
        if self.mode.startswith("auth"):
            return "auth"
        if self.transaction is not None:
            return "envelope"
        return "idle" if self.helo else "greeting"

    def auth_offered(self) -> bool:
        return self.server.auth_basic and (self.tls_active or self.server.auth_plaintext_allowed)

    def ehlo_keywords(self) -> list[str]:
        """The EHLO extension lines: STARTTLS only with a certificate and before TLS, AUTH only where offered."""
        limit = self.message_limit
        return [
            f"SIZE {limit}" if limit else "SIZE",
            "PIPELINING",
            "8BITMIME",
            "BINARYMIME",
            "CHUNKING",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
            "DSN",
            "ETRN",
            *(["STARTTLS"] if self.tls_available and not self.tls_active else []),
            *([f"AUTH {' '.join(AUTH_MECHANISMS)}"] if self.auth_offered() else []),
            "HELP",
        ]

    # -- replies -----------------------------------------------------------------------------------------

    def _say(self, key: str, **values: object) -> list[Out]:
        return self._reply(reply(key, **values))

    def _reply(self, text: str) -> list[Out]:
        """One reply; a syntax or sequence error counts, and the one over the limit closes the session."""
        if is_syntax_or_sequence_error(text):
            self.bad_commands += 1
            if self.bad_commands >= self.server.max_bad_commands:
                self.mode = "closed"
                return [Reply(reply("too_many_errors")), Close()]
        return [Reply(text)]

    def greeting(self) -> list[Out]:
        stamp = self._stamp or rfc5322_now()
        return [Reply(reply("greeting", fqdn=self.fqdn, version=VERSION, stamp=stamp))]

    def timed_out(self) -> list[Out]:
        self.mode = "closed"
        return [Reply(reply("timeout", fqdn=self.fqdn)), Close()]

    def line_too_long(self) -> list[Out]:
        if self.mode.startswith("auth_"):
            self.mode = "command"
            return self._say("auth_line_too_long")
        return self._say("line_too_long")

    def reset(self) -> None:
        self.transaction = None
        self._chunk = None

    # -- commands ----------------------------------------------------------------------------------------

    def command(self, line: bytes) -> list[Out]:
        """One line from the client (without its CRLF), in command mode or as an answer to a challenge."""
        if self.mode.startswith("auth_"):
            return self._auth_answer(line)
        if self.mode != "command":
            raise RuntimeError(f"a command line in mode {self.mode}")  # the protocol's bug, not the client's
        if not line:
            return self._say("syntax_error")
        verb, arg = parse_command(line)
        handler = COMMANDS.get(verb)
        if handler is None:
            return self._say("unrecognized", cmd=verb[:64] if verb.isprintable() else "?")
        if self.server.require_tls and not self.tls_active and verb not in ALLOWED_BEFORE_TLS:
            return self._say("tls_required")
        return handler(self, arg)

    def _needs_helo(self) -> list[Out] | None:
        return None if self.helo else self._say("need_helo")

    def ehlo(self, arg: str | None) -> list[Out]:
        if not arg:
            return self._say("syntax_helo", cmd="EHLO")
        self.reset()
        self.helo, self.extended = arg, True
        lines = [reply("ehlo_first", fqdn=self.fqdn, peer=self.peer)]
        keywords = self.ehlo_keywords()
        lines += [reply("ehlo_keyword", keyword=k) for k in keywords[:-1]]
        lines.append(reply("ehlo_last", keyword=keywords[-1]))
        return [Reply("\r\n".join(lines))]

    def helo_(self, arg: str | None) -> list[Out]:
        if not arg:
            return self._say("syntax_helo", cmd="HELO")
        self.reset()
        self.helo, self.extended = arg, False
        return self._say("helo", fqdn=self.fqdn, peer=self.peer)

    def noop(self, arg: str | None) -> list[Out]:
        return self._say("noop")

    def rset(self, arg: str | None) -> list[Out]:
        if arg:
            return self._say("syntax_noarg", cmd="RSET")
        self.reset()
        return self._say("reset")

    def vrfy(self, arg: str | None) -> list[Out]:
        if not arg:
            return self._say("syntax_vrfy")
        return self._say("vrfy" if self.server.allow_verify else "vrfy_disabled")

    def expn(self, arg: str | None) -> list[Out]:
        return self._say("not_implemented")

    def help(self, arg: str | None) -> list[Out]:
        return self._say("help" if self.server.allow_verify else "help_no_vrfy")

    def quit(self, arg: str | None) -> list[Out]:
        if arg:
            return self._say("syntax_noarg", cmd="QUIT")
        self.mode = "closed"
        return [Reply(reply("bye", fqdn=self.fqdn)), Close()]

    def etrn(self, arg: str | None) -> list[Out]:
        """RFC 1985: start delivery of the mail queued for a domain marked "queue for remote triggered delivery"."""
        refused = self._needs_helo()
        if refused:
            return refused
        node = (arg or "").strip()
        if not node or " " in node or node.startswith("#"):
            return self._say("syntax_etrn")
        self.mode = "etrn"
        return [Etrn(node.lstrip("@").lower())]

    def etrn_done(self, domain: str, released: int | None) -> list[Out]:
        self.mode = "command"
        if released is None:
            return self._say("etrn_denied", domain=domain)
        if released == 0:
            return self._say("etrn_none", domain=domain)
        return self._say("etrn_started", count=released, domain=domain)

    def _parse(self, arg: str, prefix: str, allow_null: bool) -> Path | str:
        try:
            return parse_path(arg, prefix, self.config.default_domain.name, allow_null=allow_null)
        except AddressError as error:
            if not arg.upper().startswith(prefix):
                return reply("syntax_mail" if allow_null else "syntax_rcpt")
            if isinstance(error, ParamSyntaxError):  # the address was fine: a parameter's syntax is 5.5.4
                return reply("bad_param_syntax", addr=str(error))
            return reply("bad_sender_address" if allow_null else "bad_address", addr=str(error))

    def mail(self, arg: str | None) -> list[Out]:
        refused = self._needs_helo()
        if refused:
            return refused
        if self.transaction is not None:
            return self._say("nested_mail")
        if not self.server.auth_anonymous and not self.authenticated:
            return self._say("auth_required")
        session_limit = self.server.max_session_size_kb * 1024
        if session_limit and self.session_bytes >= session_limit:
            return self._say("session_size")
        if not arg:
            return self._say("syntax_mail")
        path = self._parse(arg, "FROM:", allow_null=True)
        if isinstance(path, str):
            return self._reply(path)
        if path.params and not self.extended:
            return self._say("bad_param", param=next(iter(path.params))[:40])
        draft = Transaction(path.address)
        for name, value in path.params.items():
            parser = MAIL_PARAMS.get(name)
            if parser is None:
                return self._say("bad_param", param=name[:40])
            try:
                parser(draft, value)
            except ParamError as error:
                return self._reply(error.text)
        if self.message_limit and draft.size > self.message_limit:
            return [Count("messages_refused_for_size"), *self._say("message_size")]
        if not draft.smtputf8 and not path.address.isascii():
            return self._say("smtputf8_needed")
        self.transaction = draft
        return self._say("sender_ok", addr=path.address)

    def rcpt(self, arg: str | None) -> list[Out]:
        refused = self._needs_helo()
        if refused:
            return refused
        transaction = self.transaction
        if transaction is None:
            return self._say("need_mail")
        if transaction.body:
            return self._say("bad_sequence")
        if not arg:
            return self._say("syntax_rcpt")
        path = self._parse(arg, "TO:", allow_null=False)
        if isinstance(path, str):
            return self._reply(path)
        try:
            notify, orcpt = rcpt_params(path.params)
        except ParamError as error:
            return self._reply(error.text)
        if not transaction.smtputf8 and not path.address.isascii():
            return self._say("smtputf8_needed")
        if len(transaction.recipients) >= self.server.max_recipients:
            return self._say("too_many_rcpts")
        refusal = recipient_refusal(path, self.peer, self.authenticated, self.config, self.peer_names)
        if refusal == RELAY_NAME_NEEDED and not self.names_looked_up:
            self.mode = "lookup"  # the relay list names domains: look the client up once, then decide
            self._pending_rcpt = arg
            return [LookUpName()]
        if refusal == RELAY_NAME_NEEDED:
            return self._say("relay_deferred", addr=path.address)
        if refusal is not None:
            return [Count("messages_refused_for_relay"), *self._say("relay_denied", addr=path.address)]
        if path.address not in transaction.recipients:
            transaction.recipients.append(path.address)
        if notify or orcpt:
            transaction.rcpt_params[path.address] = (notify, orcpt)
        return self._say("rcpt_ok", addr=path.address)

    def name_found(self, names: NameResult | None) -> list[Out]:
        """The client's name lookup for a RCPT is done (None: it failed for now): the RCPT is decided."""
        self.mode = "command"
        self.peer_names, self.names_looked_up = names, True
        arg, self._pending_rcpt = self._pending_rcpt, None
        return self.rcpt(arg)

    def _body_refusal(self, body: Body) -> str:
        """Why DATA or BDAT cannot start a body now (a reply), or "" when it can."""
        transaction = self.transaction
        if not self.helo:
            return reply("need_helo")
        if transaction is None:
            return reply("need_mail")
        if not transaction.recipients:
            return reply("need_rcpt")
        if body == "DATA" and transaction.body == "BDAT":
            return reply("data_after_bdat")
        if body == "DATA" and transaction.body_type == "BINARYMIME":
            return reply("binarymime_needs_bdat")
        return ""

    def data(self, arg: str | None) -> list[Out]:
        refused = self._needs_helo()
        if refused:
            return refused
        if arg:
            return self._say("syntax_data")
        refusal = self._body_refusal("DATA")
        if refusal:
            return self._reply(refusal)
        assert self.transaction is not None
        self.transaction.body = "DATA"
        self.mode = "data"
        return [BeginData(reply("start_data"))]

    def bdat(self, arg: str | None) -> list[Out]:
        match = _BDAT.fullmatch(arg or "")
        if match is None:  # its chunk cannot be told from commands: the session cannot go on
            self.mode = "closed"
            return [Reply(reply("syntax_bdat")), Close()]
        size, last = int(match.group(1)), match.group(2) is not None
        refusal = self._body_refusal("BDAT")
        transaction = self.transaction
        self.mode = "chunk"
        if refusal or transaction is None:
            self._chunk_refusal = refusal or reply("need_mail")
            self._chunk = BeginChunk(size, last, keep=False, first=False)
            return [self._chunk]
        first = transaction.body == ""
        transaction.body = "BDAT"
        transaction.received += size
        limit = self.message_limit
        transaction.kept = transaction.kept and not (limit and transaction.received > limit)
        self._chunk = BeginChunk(size, last, keep=transaction.kept, first=first)
        return [self._chunk]

    def chunk_end(self, storage: StorageError = "") -> list[Out]:
        """A BDAT chunk other than the accepted LAST one was consumed."""
        self.mode = "command"
        chunk, self._chunk = self._chunk, None
        assert chunk is not None
        if self._chunk_refusal:
            text, self._chunk_refusal = self._chunk_refusal, ""
            return self._reply(text)
        transaction = self.transaction
        assert transaction is not None
        if not transaction.kept:
            self.reset()
            return [DropSpool(), Count("messages_refused_for_size"), *self._say("message_size")]
        if storage:
            self.reset()
            return [DropSpool(), *self._say("storage" if storage == "storage" else "local_error")]
        return self._say("chunk_ok", size=chunk.size)

    @property
    def last_chunk_kept(self) -> bool:
        """The chunk being read is the accepted LAST one: the protocol ends it with ``body_end``."""
        chunk = self._chunk
        return chunk is not None and chunk.last and chunk.keep and not self._chunk_refusal

    def spool_failed(self, storage: bool) -> list[Out]:
        """DATA: the spool could not be opened; the transaction stays (the client may try again)."""
        self.mode = "command"
        assert self.transaction is not None
        self.transaction.body = ""
        return self._say("storage" if storage else "local_error")

    def body_end(self, facts: BodyFacts) -> list[Out]:
        """The end of DATA, or of BDAT's LAST chunk: commit, or refuse (and the transaction is over)."""
        self._chunk = None
        self.session_bytes += facts.size
        refusal = self._message_refusal(facts)
        if refusal:
            self.mode = "command"
            self.reset()
            return [DropSpool(), *refusal]
        self.mode = "commit"
        return [Commit()]

    def _message_refusal(self, facts: BodyFacts) -> list[Out]:
        server = self.server
        if facts.bare_newline and server.bare_newline == "reject":
            return self._say("bare_newline")
        if self.message_limit and facts.size > self.message_limit:
            return [Count("messages_refused_for_size"), *self._say("message_size")]
        session_limit = server.max_session_size_kb * 1024
        if session_limit and self.session_bytes > session_limit:
            return self._say("session_size")
        if facts.hops > server.max_hop_count:
            return self._say("hop_count")
        if facts.storage:
            return self._say("storage" if facts.storage == "storage" else "local_error")
        return []

    def committed(self, queue_id: str) -> list[Out]:
        self.mode = "command"
        self.reset()
        self.messages += 1
        return self._say("queued", addr=f"{queue_id}@{self.fqdn}")

    def commit_failed(self, storage: bool) -> list[Out]:
        self.mode = "command"
        self.reset()
        return self._say("storage" if storage else "local_error")

    # -- STARTTLS ----------------------------------------------------------------------------------------

    def starttls(self, arg: str | None) -> list[Out]:
        if arg:
            return self._say("syntax_noarg", cmd="STARTTLS")
        if self.tls_active:
            return self._say("tls_active")
        if not self.tls_available:
            return self._say("tls_not_available")
        self.mode = "tls"
        return [Reply(reply("tls_ready")), BeginTls()]

    def tls_started(self) -> None:
        """The handshake is done: the session starts over (RFC 3207 §4.2)."""
        self.mode = "command"
        self.tls_active = True
        self.helo, self.extended, self.user = None, False, ""
        self.reset()

    # -- AUTH --------------------------------------------------------------------------------------------

    def auth(self, arg: str | None) -> list[Out]:
        refused = self._needs_helo()
        if refused:
            return refused
        if not self.server.auth_basic or not self.extended:
            return self._say("not_implemented")
        if not self.auth_offered():
            return self._say("auth_needs_tls")
        if self.authenticated:
            return self._say("auth_already")
        if self.transaction is not None:
            return self._say("auth_in_transaction")
        words = (arg or "").split()
        if not words or len(words) > 2:
            return self._say("syntax_auth")
        mechanism = words[0].upper()
        if mechanism not in AUTH_MECHANISMS:
            return self._say("auth_mechanism")
        locked = self._auth_locked()
        if locked:
            return self.auth_locked(locked)
        initial = words[1] if len(words) == 2 else None
        if mechanism == "PLAIN":
            if initial is None:
                self.mode = "auth_plain"
                return [Challenge(reply("auth_challenge", prompt=""))]
            return self._plain(initial)
        if initial is None:
            self.mode = "auth_login_user"
            return [Challenge(reply("auth_challenge", prompt=_b64(b"Username:")))]
        return self._login_user(initial)

    def _auth_answer(self, line: bytes) -> list[Out]:
        mode = self.mode
        self.mode = "command"
        text = line.decode("ascii", "replace")
        if text == "*":
            return self._say("auth_aborted")
        if mode == "auth_plain":
            return self._plain(text)
        if mode == "auth_login_user":
            return self._login_user(text)
        return self._login_password(text)

    def _plain(self, text: str) -> list[Out]:
        data = decode_base64(text)
        if data is None:
            return self._say("auth_bad_base64")
        credentials = split_plain(data)
        if credentials is None:
            return self._say("auth_bad_plain")
        authzid, login, password = credentials
        self.mode = "auth_check"
        return [CheckPassword(login, password, for_other=authzid not in ("", login))]

    def _login_user(self, text: str) -> list[Out]:
        login = decode_base64(text)
        if login is None:
            return self._say("auth_bad_base64")
        self._login = login.decode("utf-8", "surrogateescape")
        self.mode = "auth_login_password"
        return [Challenge(reply("auth_challenge", prompt=_b64(b"Password:")))]

    def _login_password(self, text: str) -> list[Out]:
        login, self._login = self._login, ""
        password = decode_base64(text)
        if password is None:
            return self._say("auth_bad_base64")
        if not login or not password:
            return self._say("auth_bad_plain")
        self.mode = "auth_check"
        return [CheckPassword(login, password.decode("utf-8", "surrogateescape"), for_other=False)]

    def auth_locked(self, seconds: float) -> list[Out]:
        """The address was locked out (or its lock-out filled up) while it sent its credentials."""
        self.mode = "command"
        return [Publish(AuthRefusedLocked(self.peer, seconds)), *self._say("auth_locked")]

    def auth_checked(self, account: str | None) -> list[Out]:
        """The password check's answer (after the failure delay, when it failed)."""
        self.mode = "command"
        if account is None:
            return self._say("auth_failed")
        self.user = account
        return [Publish(AuthSucceeded(self.peer, account)), *self._say("auth_ok")]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


COMMANDS: dict[str, Callable[[SmtpMachine, str | None], list[Out]]] = {
    "EHLO": SmtpMachine.ehlo,
    "HELO": SmtpMachine.helo_,
    "MAIL": SmtpMachine.mail,
    "RCPT": SmtpMachine.rcpt,
    "DATA": SmtpMachine.data,
    "BDAT": SmtpMachine.bdat,
    "RSET": SmtpMachine.rset,
    "NOOP": SmtpMachine.noop,
    "VRFY": SmtpMachine.vrfy,
    "EXPN": SmtpMachine.expn,
    "HELP": SmtpMachine.help,
    "QUIT": SmtpMachine.quit,
    "ETRN": SmtpMachine.etrn,
    "STARTTLS": SmtpMachine.starttls,
    "AUTH": SmtpMachine.auth,
}
