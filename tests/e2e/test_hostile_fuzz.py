"""A fuzz harness for the whole inbound session over a real socket: command lines and parameters from a
hostile grammar, DATA bodies in random chunks with bare CR/LF and dot games, STARTTLS at random points
(with plain text pipelined behind it), AUTH exchanges. Bounded: a fixed number of hypothesis examples.

What must hold for every session: each line sent gets exactly one well-formed reply (no hang, no silence,
no reply out of step), a message is stored exactly when DATA is answered 250, the engine keeps serving,
and nothing reaches the log at ERROR level or as an ErrorEvent (tests/conftest.py's logfail fixture).
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from engine_support import make_config
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from security_support import FQDN, ThreadedServer, TlsFiles, tls_files, users_file

from engine.events import MessageQueued

EXAMPLES = 200  # per mode; under a minute in all on the CI machine
REPLY = re.compile(rb"^[2-5]\d\d[ -]")
DOMAINS = ["example.test", "relay.test", "remote.example", "t\u00ebst.example", "[127.0.0.1]", "x"]
PASSWORD = "fuzz password"


# -- the grammar ---------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)
junk = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ").replace(b"\r\r", b"\r"))
local = st.one_of(st.sampled_from(["a", "postmaster", "b.c", '"q u"', "x" * 70, "\u00fc", "a%b"]), text)
address = st.one_of(
    st.builds(lambda u, d: f"<{u}@{d}>", local, st.sampled_from(DOMAINS)),
    st.sampled_from(["<>", "<", ">", "<@a,@b:u@example.test>", "<u@example.test", "u@example.test", ""]),
)
param = st.one_of(
    st.sampled_from(["SIZE=10", "SIZE=-1", "SIZE=999999999999999999999", "BODY=8BITMIME", "BODY=", "BODY=BINARYMIME",
                     "SMTPUTF8", "SMTPUTF8=yes", "RET=FULL", "RET=HDRS", "ENVID=a+2Bb", "AUTH=<>",
                     "NOTIFY=SUCCESS,FAILURE", "NOTIFY=NEVER", "NOTIFY=NEVER,SUCCESS", "ORCPT=rfc822;a@b.c",
                     "ORCPT=utf-8;a\\x{00}b", "ORCPT=utf-8;\u00e9@b.c", "X=Y", "=", "FOO"]),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["SIZE", "ORCPT", "ENVID", "NOTIFY", "RET"]), text),
)
params = st.lists(param, max_size=3).map(lambda ps: "".join(" " + p for p in ps))
few_params = st.one_of(st.just(""), st.just(""), params)  # valid transactions more often than not
verb = st.sampled_from(["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY", "EXPN", "HELP", "ETRN",
                        "AUTH", "QUIT", "BDAT", "TURN", "mail", "EhLo", "STARTTLS"])


def _line(parts: tuple[str, ...]) -> bytes:
    return " ".join(parts).encode("utf-8", "surrogateescape")


command_line = st.one_of(
    st.builds(lambda h: f"EHLO {h}".encode(), st.sampled_from(["client.test", "[127.0.0.1]", "", "x" * 300])),
    st.builds(lambda a, p: f"MAIL FROM:{a}{p}".encode(), address, params),
    st.builds(lambda a, p: f"RCPT TO:{a}{p}".encode(), address, params),
    st.sampled_from([b"DATA", b"RSET", b"NOOP", b"QUIT", b"HELP", b"VRFY a", b"ETRN relay.test", b"ETRN \xff",
                     b"MAIL FROM:<\xff\xfe@b.c> SMTPUTF8", b"RCPT TO:<\xff@example.test>", b"", b" ", b"\x00",
                     b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH CRAM-MD5", b"AUTH PLAIN =", b"AUTH PLAIN AAA=",
                     b"AUTH PLAIN " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()),
                     b"AUTH PLAIN " + base64.b64encode(b"\0alice\0wrong"), b"STARTTLS now", b"X" * 2000]),
    st.builds(lambda v, rest: v.encode() + b" " + rest, verb, junk),
    junk,
)

body_line = st.one_of(
    st.sampled_from(["", ".", "..", ". ", "Subject: x", "From: a@b.c", "Received: x", "\n.", "\r.", ".\r", "\n",
                     "\r", "a\n.\r", "x\n.\nMAIL FROM:<e@x>", "\u00e9t\u00e9"]),
    text,
)


def _body(lines: list[str]) -> bytes:
    """Lines as a client sends them: CRLF between, dot-stuffed, so the end marker is only the real one."""
    out = []
    for line in lines:
        while "\r\n" in line:
            line = line.replace("\r\n", "\r")
        out.append(("." + line if line.startswith(".") else line).encode("utf-8"))
    return b"\r\n".join(out) + b"\r\n.\r\n"


@dataclass
class Action:
    kind: str  # "line" | "starttls-injected" | "pause-free-burst"
    data: bytes = b""


def _lines(*lines: bytes) -> list[Action]:
    return [Action("line", line) for line in lines]


good_rcpt = st.builds(lambda u, d, p: f"RCPT TO:<{u}@{d}>{p}".encode(),
                      st.sampled_from(["a", "b", "postmaster", "ü"]),
                      st.sampled_from(["example.test", "alias.test", "relay.test", "remote.example"]), few_params)
# Whole steps a real client takes, so that sessions get far (TLS, AUTH, DATA), then mixed with hostile lines.
segment = st.one_of(
    st.just(_lines(b"EHLO client.test")),
    st.just(_lines(b"STARTTLS", b"EHLO client.test")),
    st.just([Action("starttls-injected", b"NOOP\r\n"), *_lines(b"EHLO client.test")]),
    st.just([Action("starttls-injected", b"RSET\r\nMAIL FROM:<i@x>\r\n"), *_lines(b"EHLO client.test")]),
    st.just(_lines(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()))),
    st.builds(lambda mail, rcpts: _lines(mail, *rcpts, b"DATA"),
              st.builds(lambda p: f"MAIL FROM:<s@example.test>{p}".encode(), few_params),
              st.lists(good_rcpt, min_size=1, max_size=3)),
    st.builds(lambda line: _lines(line), command_line),
)
actions = st.builds(lambda greet, parts: (_lines(b"EHLO client.test") if greet else []) + [a for p in parts for a in p],
                    st.integers(0, 3).map(bool), st.lists(segment, min_size=1, max_size=8))  # mostly greeted


@dataclass
class Script:
    actions: list[Action]
    bodies: list[bytes]
    chunking: list[int] = field(default_factory=list)


scripts = st.builds(
    Script,
    actions,
    st.lists(st.lists(body_line, max_size=12).map(_body), min_size=1, max_size=3),
    st.lists(st.integers(1, 64), max_size=8),
)


# -- one session ---------------------------------------------------------------------------------------


class Session:
    def __init__(self, port: int, tls: TlsFiles) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = tls
        self.buffer = b""
        self.closed = False

    def reply(self) -> list[bytes]:
        """One complete reply; a hang (no reply in 20 s) or a malformed line fails the example."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.closed = True
                    assert not lines, f"connection closed inside a reply: {lines!r}"
                    return []
                self.buffer += chunk
            line, _, self.buffer = self.buffer.partition(b"\r\n")
            assert REPLY.match(line), f"malformed reply line {line!r}"
            lines.append(line)
            if line[3:4] == b" ":
                return lines

    def send(self, data: bytes, chunks: Iterator[int] | None = None) -> None:
        if chunks is None:
            self.sock.sendall(data)
            return
        position = 0
        while position < len(data):
            size = next(chunks, len(data))
            self.sock.sendall(data[position:position + size])
            position += size

    def starttls(self) -> None:
        assert not self.buffer, f"plain text left before the handshake: {self.buffer!r}"
        context = ssl.create_default_context()
        self.tls.ca.configure_trust(context)
        self.sock = context.wrap_socket(self.sock, server_hostname=FQDN)

    def close(self) -> None:
        self.sock.close()


def run_script(port: int, tls: TlsFiles, script: Script) -> int:
    """Play one script; returns how many messages were answered 250 after DATA."""
    session = Session(port, tls)
    stored = 0
    bodies = iter(script.bodies * 3)
    try:
        assert session.reply()[-1].startswith(b"220")
        for item in script.actions:
            if session.closed:
                break
            if item.kind == "starttls-injected":
                session.send(b"STARTTLS\r\n" + item.data)
                answer = session.reply()
                if answer and answer[-1].startswith(b"220"):
                    # The injected plain text must have been discarded, not answered.
                    session.starttls()
                elif answer and not answer[-1].startswith(b"421"):
                    for _ in range(item.data.count(b"\r\n")):  # refused: each injected line has its reply
                        if not session.reply():
                            break
                continue
            session.send(item.data + b"\r\n")
            answer = session.reply()
            if not answer:
                break
            code = answer[-1][:3]
            if code == b"354":
                body = next(bodies, b".\r\n")
                session.send(body, iter(script.chunking * (len(body) // 8 + 1)))
                final = session.reply()
                assert final, "no reply to the end of DATA"
                if final[-1].startswith(b"250"):
                    stored += 1
                event(f"DATA answered {final[-1][:3].decode()}")
            elif code == b"334":
                session.send(b"*\r\n")  # abort the exchange: the next reply is its 501
                assert session.reply(), "no reply after aborting AUTH"
            elif code == b"220" and item.data.upper().startswith(b"STARTTLS"):
                session.starttls()
                event("TLS started")
            elif code == b"235":
                event("authenticated")
            elif code in (b"221", b"421"):
                assert session.reply() == [], "the server kept talking after closing"
                break
    finally:
        session.close()
    return stored


def messages_taken(server: ThreadedServer) -> int:
    return sum(1 for event in server.events_of(MessageQueued) if event.source == "smtp")


# -- the tests -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["reject", "normalize"])
def fuzz_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[
        ThreadedServer, TlsFiles, Path]]:
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    tls = tls_files(root / "tls")
    users = users_file(root / "users", {"alice": PASSWORD})
    config = make_config(root, tls_certificate=str(tls.certificate), tls_key=str(tls.key), auth_basic=True,
                         users_file=str(users), auth_failure_delay_ms=0, auth_lockout_failures=0,
                         bare_newline=request.param, max_bad_commands=1000, max_message_size_kb=64,
                         relay_allowed=("127.0.0.0/8",))
    server = ThreadedServer(config).start()
    try:
        yield server, tls, root / "Mailroot"
    finally:
        server.stop()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(script=scripts)
def test_fuzz_inbound_session(fuzz_engine: tuple[ThreadedServer, TlsFiles, Path], script: Script) -> None:
    server, tls, _ = fuzz_engine
    before = messages_taken(server)
    stored = run_script(server.port, tls, script)
    # Stored exactly when answered 250 (the commit, and its event, come before the reply).
    assert messages_taken(server) - before == stored
    check = Session(server.port, tls)  # still serving
    try:
        assert check.reply()[-1].startswith(b"220")
    finally:
        check.close()
