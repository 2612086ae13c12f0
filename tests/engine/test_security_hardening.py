"""Hostile clients against the real engine: fuzzed command lines and DATA endings (no exception escapes, every
reply well formed, nothing smuggled past the end of DATA), slow-loris and connection floods bounded in time
and count while a normal client is still served."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import make_config, start_server
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from security_support import Talk, ThreadedServer, connect_from, threaded_server

from engine.conf.config import ServerConfig
from engine.events import ErrorEvent
from engine.smtpd.limits import automatic_ceiling, connection_limits

REPLY_LINE = re.compile(r"^[2-5]\d\d[ -]")
ENHANCED = re.compile(r"^[45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}( |$)")
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def assert_well_formed(data: bytes) -> list[str]:
    assert data.endswith(b"\r\n"), data[-200:]
    lines = data[:-2].split(b"\r\n")
    texts = [line.decode("utf-8") for line in lines]  # never undecodable bytes
    for text in texts:
        assert REPLY_LINE.match(text), text
        if text[0] in "45":
            assert ENHANCED.match(text), text
    return texts


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    config = make_config(tmp_path_factory.mktemp("fuzz"), max_bad_commands=10_000)
    with threaded_server(config) as server:
        yield server


VERBS = ["EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY", "EXPN", "HELP", "ETRN", "AUTH",
         "STARTTLS", "BDAT", "TURN", "mail from:", "rcpt to:", "\x00", "\xff", ""]
ARGS = st.one_of(
    st.sampled_from(["", "client.test", "FROM:<a@example.test>", "TO:<b@example.test>", "FROM:<>", "TO:<>",
                     "FROM:<a@example.test> SIZE=99999999999999999999999", "TO:<b@example.test> NOTIFY=NEVER,X",
                     "FROM:<a@example.test> BODY=8BITMIME SMTPUTF8", 'TO:<"a\\"b"@example.test>', "PLAIN =",
                     "TO:<@a,@b:c@example.test>", "FROM:<" + "a" * 300 + "@example.test>", "TO:<b@[1.2.3.4]>"]),
    st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=80),
    st.integers(0, 3000).map(lambda n: "x" * n),
)
LINE = st.tuples(st.sampled_from(VERBS), ARGS).map(lambda va: f"{va[0]} {va[1]}".strip().encode("utf-8", "replace"))
RAW_LINE = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@FUZZ
@given(lines=st.lists(st.one_of(LINE, RAW_LINE), min_size=1, max_size=12), bare=st.booleans())
def test_fuzzed_command_lines(fuzz_server: ThreadedServer, lines: list[bytes], bare: bool) -> None:
    sock = connect_from(fuzz_server.port)
    ending = b"\n" if bare else b"\r\n"
    try:
        sock.sendall(b"".join(line + ending for line in lines) + b"\r\n.\r\nQUIT\r\n")
        data = read_until_closed(sock)
    finally:
        sock.close()
    texts = assert_well_formed(data)
    assert texts[0].startswith("220 ")
    assert texts[-1].startswith(("221 2.0.0", "421 "))
    assert not fuzz_server.events_of(ErrorEvent)


PIECES = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r", b"\r\n..\r\n", b"\r\n.x\r\n",
          b"\r\nMAIL FROM:<smuggled@example.test>\r\n", b"RCPT TO:<victim@elsewhere.test>\r\n", b"\r\nDATA\r\n",
          b"text", b"\r\n", b"\n", b"\r", b".", b"\x00", b"\xff\xfe", b"\r\n\r\n"]


@FUZZ
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=14))
def test_fuzzed_data_endings_never_end_data_early(fuzz_server: ThreadedServer, pieces: list[bytes]) -> None:
    body = b"Subject: fuzz\r\n\r\n" + b"".join(pieces)
    stream = b"\r\n" + body + b"\r\n.\r\n"
    assume(stream.find(b"\r\n.\r\n") == len(stream) - 5)  # only the real end is CRLF.CRLF
    sock = connect_from(fuzz_server.port)
    try:
        sock.sendall(b"EHLO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
                     + body + b"\r\n.\r\nNOOP\r\nQUIT\r\n")
        texts = assert_well_formed(read_until_closed(sock))
    finally:
        sock.close()
    replies = [line for line in texts if line[3:4] == " "]  # last lines of the replies
    # Exactly one reply to the end of DATA and one to NOOP: nothing smuggled inside the body was answered.
    assert [r[:3] for r in replies] == ["220", "250", "250", "250", "354", replies[5][:3], "250", "221"], replies
    assert replies[5].startswith(("250 2.6.0", "550 5.6.0")), replies
    if b"\n" in body.replace(b"\r\n", b"") or b"\r" in body.replace(b"\r\n", b""):
        assert replies[5].startswith("550 5.6.0")  # bare CR/LF refused by default (bare_newline = reject)
    assert replies[6] == "250 2.0.0 OK"
    assert not fuzz_server.events_of(ErrorEvent)


@pytest.fixture(scope="module")
def normalizing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    config = make_config(tmp_path_factory.mktemp("normalize"), bare_newline="normalize")
    with threaded_server(config) as server:
        yield server


@FUZZ
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=14))
def test_fuzzed_data_endings_normalized(normalizing_server: ThreadedServer, pieces: list[bytes]) -> None:
    """bare_newline = normalize: bare CR/LF become CRLF in the stored message, and still never end DATA."""
    body = b"Subject: fuzz\r\n\r\n" + b"".join(pieces)
    stream = b"\r\n" + body + b"\r\n.\r\n"
    assume(stream.find(b"\r\n.\r\n") == len(stream) - 5)
    sock = connect_from(normalizing_server.port)
    try:
        sock.sendall(b"HELO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
                     + body + b"\r\n.\r\nQUIT\r\n")
        texts = assert_well_formed(read_until_closed(sock))
    finally:
        sock.close()
    assert [t[:3] for t in texts] == ["220", "250", "250", "250", "354", "250", "221"], texts
    assert texts[5].startswith("250 2.6.0")
    assert not normalizing_server.events_of(ErrorEvent)


def test_automatic_limits() -> None:
    assert connection_limits(ServerConfig(), files=1024) == (automatic_ceiling(1024), automatic_ceiling(1024) // 2)
    assert automatic_ceiling(1024) == 704
    assert connection_limits(ServerConfig(max_connections=10), files=1024) == (10, 10)
    assert connection_limits(ServerConfig(max_connections_per_peer=3), files=1024) == (704, 3)


def normal_transaction(port: int, source: str = "127.0.0.1") -> str:
    talk, banner = Talk.open(port, source)
    try:
        assert banner[0].startswith("220 "), banner
        for line in ("EHLO client.test", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA"):
            talk.cmd(line)
        return talk.cmd("Subject: normal\r\n\r\nstill served\r\n.")
    finally:
        talk.close()


async def test_slow_loris_is_timed_out_while_others_are_served(tmp_path: Path, config_factory) -> None:
    running = await start_server(config_factory(connection_timeout=2))
    try:
        def loris() -> tuple[float, list[bool], float]:
            started = time.monotonic()
            socks = [connect_from(running.port) for _ in range(40)]
            for sock in socks:
                sock.sendall(b"EHLO half-a-line")  # never finished
            dripper = connect_from(running.port)
            answer = normal_transaction(running.port)
            served = time.monotonic() - started
            assert answer.startswith("250 2.6.0"), answer
            dripped = 0
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(12):  # a byte every 0.4 s: activity, but never a command
                    dripper.sendall(b"N")
                    dripped += 1
                    time.sleep(0.4)
            assert dripped < 12  # closed on it before the bytes ran out
            closed = []
            for sock in [*socks, dripper]:
                data = read_until_closed(sock, timeout=5)
                closed.append(b"421 4.4.2 mx.example.test Timeout" in data)
                sock.close()
            return served, closed, time.monotonic() - started

        served, closed, total = await asyncio.to_thread(loris)
        assert served < 1.5
        assert all(closed)
        assert total < 10
        await running.wait_for(lambda: len(running.server.sessions) == 0)
    finally:
        await running.server.stop()


async def test_connection_flood_is_bounded(config_factory) -> None:
    running = await start_server(config_factory(max_connections=10, max_connections_per_peer=6))
    try:
        def flood() -> tuple[list[str], list[str], str]:
            socks = []
            banners = []
            for _ in range(12):  # from one address: 6 allowed
                sock = connect_from(running.port, "127.0.0.2")
                socks.append(sock)
                banners.append(Talk(sock).line())
            others = []
            for n in range(6):  # from other addresses: the total (10) runs out after 4 more
                sock = connect_from(running.port, f"127.0.1.{n + 1}")
                socks.append(sock)
                others.append(Talk(sock).line())
            for sock in socks:
                sock.close()
            time.sleep(0.3)
            return banners, others, normal_transaction(running.port)

        banners, others, answer = await asyncio.to_thread(flood)
        assert [b[:3] for b in banners] == ["220"] * 6 + ["421"] * 6
        assert banners[-1] == "421 4.3.2 Too many connections from your address, try again later"
        assert [b[:3] for b in others] == ["220"] * 4 + ["421"] * 2
        assert others[-1] == "421 4.3.2 Too many connections, try again later"
        assert answer.startswith("250 2.6.0")
        snapshot = await running.server.counters_snapshot()
        assert snapshot["Inbound Connections Refused"] == 8
    finally:
        await running.server.stop()


async def test_endless_line_and_pipelined_flood_are_bounded(config_factory) -> None:
    running = await start_server(config_factory())
    try:
        def talk() -> tuple[str, str, int]:
            client, _ = Talk.open(running.port)
            client.send(b"NOOP " + b"x" * 600_000 + b"\r\n")
            too_long = client.reply()[-1]
            # 20,000 pipelined commands sent before reading a single reply: every one answered, in order.
            client.send(b"NOOP\r\n" * 20_000)
            answers = [client.reply()[-1] for _ in range(20_000)]
            after = client.cmd("EHLO client.test")
            client.close()
            return too_long, after, answers.count("250 2.0.0 OK")

        too_long, after, noops = await asyncio.to_thread(talk)
        assert too_long == "500 5.5.2 Line too long"
        assert noops == 20_000 and after.startswith("250 ")
    finally:
        await running.server.stop()
