"""The hostile pass's SMTP reproductions (shared/reviews/adversarial.md), against a real engine on loopback."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import threading
import time
from dataclasses import replace

from engine_support import start_server
from serve_support import ServeProcess
from smtp_helpers import RawSMTP

from engine.conf.config import DomainConfig
from engine.events import ErrorEvent
from engine.smtpd.security import SecurityWarning


async def test_smuggling_in_normalize_mode_split_after_the_dot_line(config_factory) -> None:
    """Finding 1: ``hello\\n.\\r\\nM`` with a read boundary after the ``M`` must not end DATA."""
    run = await start_server(config_factory(bare_newline="normalize"))
    try:
        def talk() -> list[str]:
            raw = RawSMTP(run.port)
            raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for line in ("EHLO x", "MAIL FROM:<legit@x.test>", "RCPT TO:<x@example.test>", "DATA"):
                raw.cmd(line)
            raw.send(b"Subject: legit\r\n\r\nhello\n.\r\nM")
            # The server's read boundary cannot be observed from here; a pause makes the split all but certain
            # (tests/engine/test_data_stream.py proves every split deterministically).
            time.sleep(0.3)
            raw.send(b"AIL FROM:<spoof@bank.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
                     b"Subject: smuggled\r\nFrom: ceo@bank.test\r\n\r\nevil\r\n.\r\n")
            replies = [raw.read_reply()[-1]]
            replies.append(raw.cmd("QUIT"))
            raw.close()
            return replies

        replies = await asyncio.to_thread(talk)
        assert replies[0].startswith("250 2.6.0") and replies[1].startswith("221"), replies
        [drop] = run.drop_files()
        data = drop.read_bytes()
        assert b"x-sender: legit@x.test" in data.lower() and b"spoof@bank.test" in data  # one message, all content
        assert b"x-receiver: victim" not in data.lower()
    finally:
        await run.server.stop()


QUEUED = re.compile(r"^250 2\.6\.0 <([0-9A-F]+)@")


def _sender_loop(port: int, index: int, acked: list[str], stop: threading.Event, started: threading.Event) -> None:
    """Messages on one connection after another until the server goes away (bounded: 400 messages)."""
    for batch in range(80):
        try:
            raw = RawSMTP(port)
        except OSError:
            return
        try:
            if raw.cmd("EHLO load.test")[:3] != "250":
                return
            for n in range(5):
                raw.send(b"MAIL FROM:<load@example.test>\r\nRCPT TO:<sink@example.test>\r\nDATA\r\n")
                replies = [raw.read_reply()[-1] for _ in range(3)]
                if not replies[2].startswith("354"):
                    return
                raw.send(b"Subject: load %d-%d-%d\r\n\r\n%s\r\n.\r\n" % (index, batch, n, b"x" * 2000))
                match = QUEUED.match(raw.read_reply()[-1])
                if match is None:
                    return  # 421 (shutting down) or anything else: not acknowledged
                acked.append(match.group(1))
                started.set()
        except (OSError, ConnectionError):
            return
        finally:
            raw.close()
        if stop.is_set():
            return


def test_sigterm_under_load_stores_exactly_the_acknowledged_messages(serve: ServeProcess) -> None:
    """Finding 8: a 421 after a complete DATA used to come with the message stored anyway (a duplicate)."""
    serve.start()
    acked: list[str] = []
    stop, started = threading.Event(), threading.Event()
    threads = [threading.Thread(target=_sender_loop, args=(serve.port, i, acked, stop, started)) for i in range(20)]
    for thread in threads:
        thread.start()
    try:
        assert started.wait(30)
        while len(acked) < 300 and any(t.is_alive() for t in threads):
            time.sleep(0.01)  # let the load build up (bounded by the senders' own limit)
        assert serve.proc is not None
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(60) == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    stored = {path.stem for path in (serve.mailroot / "Drop").glob("*.eml")}
    assert len(acked) == len(set(acked)) >= 300
    assert stored == set(acked), (len(stored - set(acked)), len(set(acked) - stored))


async def test_invalid_utf8_arguments_are_refused_without_tracebacks(running, caplog) -> None:
    """Finding 9: ``ETRN \\xff`` gave one traceback each; MAIL/RCPT with invalid UTF-8 left the state half set."""
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        raw.cmd("EHLO x")
        raw.send(b"ETRN \xff\r\n" * 5)
        replies = [raw.read_reply()[-1] for _ in range(5)]
        replies.append(raw.cmd(b"MAIL FROM:<\xff\xfe@b.example> SMTPUTF8"))
        replies.append(raw.cmd(b"MAIL FROM:<ok@b.example>"))
        replies.append(raw.cmd(b"RCPT TO:<\xff@example.test>"))
        replies.append(raw.cmd(b"RCPT TO:<good@example.test>"))
        replies.append(raw.cmd(b"DATA"))
        raw.send(b"Subject: fine\r\n\r\nbody\r\n.\r\n")
        replies.append(raw.read_reply()[-1])
        raw.cmd("QUIT")
        raw.close()
        return replies

    replies = await asyncio.to_thread(talk)
    assert all(r[:1] in "45" and "\\udcff" in r for r in replies[:5]), replies[:5]
    assert replies[5].startswith("501 ") and "UTF-8" in replies[5], replies[5]
    assert replies[6].startswith("250"), replies[6]  # no "nested MAIL": the refused one set nothing
    assert replies[7][:3] in ("501", "553") and replies[8].startswith("250"), replies[7:9]
    assert replies[9].startswith("354") and replies[10].startswith("250 2.6.0"), replies[9:]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert not [e for e in running.events if isinstance(e, ErrorEvent)]
    [drop] = running.drop_files()
    assert b"x-receiver: good@example.test" in drop.read_bytes().lower()


async def test_idn_local_domain_takes_u_label_recipients(config_factory) -> None:
    """Finding 13: with the alias xn--tst-jma.example, RCPT TO:<u@tëst.example> (SMTPUTF8) got 550 Unable to relay."""
    config = config_factory()
    config = replace(config, domains=(*config.domains, DomainConfig("xn--tst-jma.example", "alias")))
    run = await start_server(config)
    try:
        def talk() -> list[str]:
            raw = RawSMTP(run.port)
            replies = [raw.cmd("EHLO x"), raw.cmd("MAIL FROM:<a@b.example> SMTPUTF8"),
                       raw.cmd("RCPT TO:<u@t\u00ebst.example>".encode()), raw.cmd("RCPT TO:<v@xn--tst-jma.example>"),
                       raw.cmd("DATA"), raw.cmd(b"Subject: idn\r\n\r\nhi\r\n."), raw.cmd("QUIT")]
            raw.close()
            return replies

        replies = await asyncio.to_thread(talk)
        assert [r[:3] for r in replies] == ["250", "250", "250", "250", "354", "250", "221"], replies
        [drop] = run.drop_files()
        assert "x-receiver: u@t\u00ebst.example" in drop.read_bytes().decode("utf-8").lower()
    finally:
        await run.server.stop()


async def test_orcpt_and_parameter_syntax(running) -> None:
    """Findings 17 and 18: ORCPT=utf-8 with control characters was taken (and relayed); ``BODY=`` got a
    5.1.7 sender-address reply."""
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        replies = [raw.cmd("EHLO x"), raw.cmd("MAIL FROM:<a@b.example> BODY="), raw.cmd("MAIL FROM:<a@b.example>"),
                   raw.cmd(b"RCPT TO:<x@example.test> ORCPT=utf-8;a\x01\x1bb\x7f"),
                   raw.cmd("RCPT TO:<x@example.test> ORCPT=utf-8;\u00e9t\u00e9@b.example".encode()), raw.cmd("RSET")]
        for _ in range(3):
            for line in ("MAIL FROM:<a@b.example>", "RCPT TO:<x@example.test>", "DATA"):
                raw.cmd(line)
            replies.append(raw.cmd(b"Subject: order\r\n\r\nhi\r\n."))
        raw.cmd("QUIT")
        raw.close()
        return replies

    replies = await asyncio.to_thread(talk)
    assert replies[1].startswith("501 5.5.4"), replies[1]
    assert replies[3].startswith("501 5.5.4") and replies[4].startswith("250"), replies[3:5]
    assert all(QUEUED.match(r) for r in replies[6:]), replies[6:]


async def test_open_relay_settings_are_warned_about(config_factory) -> None:
    """Finding 18: ``relay_allowed = ["0.0.0.0/0"]`` was taken without a word."""
    run = await start_server(config_factory(relay_allowed=("0.0.0.0/0",)))
    try:
        warnings = [e.message for e in run.events if isinstance(e, SecurityWarning)]
        assert any("open relay" in w and "0.0.0.0/0" in w for w in warnings), warnings
    finally:
        await run.server.stop()


async def test_stalled_data_is_on_disk_not_in_memory(running) -> None:
    """Finding 16: 250 KB of DATA then a stall cost about 411 KB of memory per connection (a 256 KB buffer)."""
    sent = 250 * 1024
    raw = await asyncio.to_thread(RawSMTP, running.port)
    try:
        for line in ("EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<x@example.test>", "DATA"):
            await asyncio.to_thread(raw.cmd, line)
        await asyncio.to_thread(raw.send, b"Subject: stall\r\n\r\n" + (b"y" * 998 + b"\r\n") * (sent // 1000))

        def spooled() -> int:
            return max((p.stat().st_size for p in running.server.mailroot.sorttemp.glob("spool-*")), default=0)

        await running.wait_for(lambda: spooled() >= sent - 64 * 1024)  # all but the last 64 KB written out
    finally:
        raw.close()
