"""Our outbound SMTP client after EHLO: reply parsing and command framing as tables, then real servers — Postfix's
smtp-sink (PIPELINING: MAIL, RCPT and DATA in one write) and aiosmtpd (no PIPELINING: one command at a time) —
with per-recipient replies, rejections, a server that hangs up or stops answering, and QUIT on a dismissed
idle connection."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dns_support import free_port
from mta_support import Behaviour, remote_mta
from sink_support import SMTP_SINK, running_sink

from engine.smtp.client import Reply, ReplyError, bdat_command, command, crlf_lines, data_block, parse_replies
from engine.smtp.outbound import DEFERRED, DELIVERED, FAILED, Job, Settings, Tally, Transcript, deliver
from engine.smtp.resolver import Target
from engine.smtp.scache import ConnectionCache

needs_sink = pytest.mark.skipif(SMTP_SINK is None, reason="postfix's smtp-sink is installed by tests/run")


@pytest.mark.parametrize(("data", "replies", "used"), [
    (b"250 OK\r\n", [Reply(250, "OK")], 8),
    (b"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", [Reply(250, "mx.test\nPIPELINING\nSIZE 1000")], 44),
    (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
     [Reply(250, "2.1.0 Ok"), Reply(250, "2.1.5 Ok"), Reply(354, "End data with <CR><LF>.<CR><LF>")], 65),
    (b"250 Ok\n550 5.1.1 no\n", [Reply(250, "Ok"), Reply(550, "5.1.1 no")], 20),  # bare LF, as some servers send
    (b"250\r\n", [Reply(250, "")], 5),  # the code alone
    (b"250 2.1.0 Ok\r\n250-first\r\n250 sec", [Reply(250, "2.1.0 Ok")], 14),  # the rest is still coming
    (b"250-first\r\n", [], 0),
    (b"25", [], 0),
    (b"", [], 0),
    (b"421 4.3.2 shutting down  \r\n", [Reply(421, "4.3.2 shutting down")], 27),
    # RFC 3030: MAIL, RCPT and a BDAT chunk pipelined; a refused chunk; a chunk taken, then the LAST one
    (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 1048576 octets received\r\n",
     [Reply(250, "2.1.0 Ok"), Reply(250, "2.1.5 Ok"), Reply(250, "2.0.0 Ok: 1048576 octets received")], 67),
    (b"452 4.3.1 Insufficient system storage\r\n554 5.5.1 Error: no valid recipients\r\n",
     [Reply(452, "4.3.1 Insufficient system storage"), Reply(554, "5.5.1 Error: no valid recipients")], 77),
    (b"250 2.0.0 1024 octets\r\n250 2.0.0 Ok: queued as 4Q", [Reply(250, "2.0.0 1024 octets")], 23),
])
def test_parse_replies(data: bytes, replies: list[Reply], used: int) -> None:
    assert parse_replies(data) == (replies, used)


@pytest.mark.parametrize("data", [b"hello\r\n", b"2500 x\r\n", b"25x ok\r\n", b"650 ok\r\n", b"250_ok\r\n",
                                  b"250 " + b"x" * 9000, b"250 " + b"x" * 9000 + b"\r\n"])
def test_parse_replies_refuses_what_is_no_reply(data: bytes) -> None:
    with pytest.raises(ReplyError):
        parse_replies(data)


@pytest.mark.parametrize(("args", "line"), [
    (("MAIL", "FROM:<a@b.test>", ["SIZE=10", "BODY=8BITMIME"]), b"MAIL FROM:<a@b.test> SIZE=10 BODY=8BITMIME\r\n"),
    (("MAIL", "FROM:<>", []), b"MAIL FROM:<>\r\n"),
    (("RCPT", "TO:<c@d.test>", ["NOTIFY=NEVER"]), b"RCPT TO:<c@d.test> NOTIFY=NEVER\r\n"),
    (("QUIT", "", []), b"QUIT\r\n"),
])
def test_command(args: tuple[str, str, list[str]], line: bytes) -> None:
    assert command(*args) == line


def test_command_refuses_control_characters_and_encodes_utf8_only_when_asked() -> None:
    with pytest.raises(ValueError, match="control character"):
        command("RCPT", "TO:<a@b.test>\r\nRSET")
    with pytest.raises(UnicodeEncodeError):
        command("RCPT", "TO:<jörg@b.test>")
    assert command("RCPT", "TO:<jörg@b.test>", encoding="utf-8") == "RCPT TO:<jörg@b.test>\r\n".encode()


@pytest.mark.parametrize(("content", "block"), [
    (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    (b"a\r\nb", b"a\r\nb\r\n.\r\n"),
    (b".lead\r\n..two\r\nmid.dle\r\n.\r\n", b"..lead\r\n...two\r\nmid.dle\r\n..\r\n.\r\n"),
    (b"bare\nlf\rcr\r\n", b"bare\r\nlf\r\ncr\r\n.\r\n"),
    (b"x\r\n.\r\n", b"x\r\n..\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b"a\r", b"a\r\n.\r\n"),
    (b"a\n.b", b"a\r\n..b\r\n.\r\n"),
    (b"", b"\r\n.\r\n"),
])
def test_data_block(content: bytes, block: bytes) -> None:
    assert data_block(content) == block


@pytest.mark.parametrize(("content", "lines"), [
    (b"a\r\nb\r\n", b"a\r\nb\r\n"),
    (b"a\r\nb", b"a\r\nb"),  # BDAT adds no line end
    (b".lead\r\n.\r\n", b".lead\r\n.\r\n"),  # nor dots
    (b"bare\nlf\rcr\r\n", b"bare\r\nlf\r\ncr\r\n"),
    (b"", b""),
])
def test_crlf_lines(content: bytes, lines: bytes) -> None:
    assert crlf_lines(content) == lines


@pytest.mark.parametrize(("size", "last", "line"), [
    (0, True, b"BDAT 0 LAST\r\n"), (48, True, b"BDAT 48 LAST\r\n"), (1048576, False, b"BDAT 1048576\r\n"),
])
def test_bdat_command(size: int, last: bool, line: bytes) -> None:
    assert bdat_command(size, last) == line


def _jobs(count: int, domain: str = "remote.test") -> list[Job]:
    return [Job(f"Q{n}", "s@example.test", [f"a{n}@{domain}", f"b{n}@{domain}"],
                f"Subject: {n}\r\n\r\n.a line with a dot\r\nbare\nline {n}\r\n".encode()) for n in range(count)]


@needs_sink
async def test_pipelined_transactions_through_smtp_sink(tmp_path: Path) -> None:
    """smtp-sink offers PIPELINING: each message's MAIL, RCPTs and DATA leave before their first reply comes; every
    message arrives whole on one connection (dots unstuffed by the sink, line ends made CRLF)."""
    port = free_port()
    with running_sink(tmp_path / "sink", "127.0.0.4", port) as sink:
        jobs, transcript, tally = _jobs(3), Transcript(), Tally()
        await deliver([Target("mx.remote.test", "127.0.0.4", port)], jobs, Settings("out.test", timeout=10),
                      transcript, tally)
        for _ in range(500):  # the sink writes its dumps after its reply
            if len(sink.dumps()) == 3:
                break
            await asyncio.sleep(0.01)
        dumps = sink.dumps()
    assert tally.connections == 1
    assert all(o.status == DELIVERED and o.reply.startswith("250") for job in jobs for o in job.outcomes.values())
    assert all(len(job.outcomes) == 2 and job.sent == 1 for job in jobs)
    said = [line.split(" ", 1)[1] for line in transcript.lines]
    first = said.index(next(line for line in said if line.startswith(">>> MAIL")))
    assert [line.split(" ")[1] for line in said[first:first + 4]] == ["MAIL", "RCPT", "RCPT", "DATA"]
    assert said[first + 3] == f">>> DATA ({len(jobs[0].content)} bytes)"  # smtp-sink has no CHUNKING; the real size
    assert said[first + 4].startswith("<<< 250") and said[first + 7].startswith("<<< 354")
    bodies = [d.message.replace(b"\r\n", b"\n").split(b"\n\n", 1)[-1] for d in dumps]  # (dumps end lines in LF)
    assert sorted(bodies) == [f".a line with a dot\nbare\nline {n}\n".encode() for n in range(3)], bodies


@needs_sink
@pytest.mark.parametrize(("option", "status", "code"), [("-f", FAILED, "5"), ("-r", DEFERRED, "4")])
async def test_pipelined_rejected_recipients_leave_the_connection_usable(
        tmp_path: Path, option: str, status: str, code: str) -> None:
    """Every RCPT refused: the pipelined DATA is refused too, the transaction is reset, and the next message goes
    on the same connection."""
    port = free_port()
    with running_sink(tmp_path / "sink", "127.0.0.4", port, option, "RCPT"):
        jobs, transcript, tally = _jobs(2), Transcript(), Tally()
        await deliver([Target("mx.remote.test", "127.0.0.4", port)], jobs, Settings("out.test", timeout=10),
                      transcript, tally)
    assert tally.connections == 1
    outcomes = [o for job in jobs for o in job.outcomes.values()]
    assert len(outcomes) == 4 and all(o.status == status and o.reply.startswith(code) for o in outcomes), outcomes
    assert sum(">>> RSET" in line for line in transcript.lines) == 2
    assert any(">>> QUIT" in line for line in transcript.lines)


@needs_sink
async def test_server_that_hangs_up_mid_pipeline_defers_what_is_undecided(tmp_path: Path) -> None:
    port = free_port()
    with running_sink(tmp_path / "sink", "127.0.0.4", port, "-q", "RCPT"):
        jobs, transcript = _jobs(2), Transcript()
        await deliver([Target("mx.remote.test", "127.0.0.4", port)], jobs, Settings("out.test", timeout=10),
                      transcript)
    outcomes = [o for job in jobs for o in job.outcomes.values()]
    assert len(outcomes) == 4 and all(o.status == DEFERRED and o.enhanced == "4.4.2" for o in outcomes), outcomes


async def test_lock_step_without_pipelining_and_per_recipient_replies() -> None:
    """aiosmtpd offers no PIPELINING: one command, one reply; a refused recipient fails alone."""
    port = free_port()
    behaviour = Behaviour(reject={"b1@remote.test": "550 5.1.1 no such user"})
    async with remote_mta("127.0.0.4", port, behaviour) as mx:
        jobs, transcript = _jobs(2), Transcript()
        await deliver([Target("mx.remote.test", "127.0.0.4", port)], jobs, Settings("out.test", timeout=10),
                      transcript)
    assert jobs[0].outcomes["a0@remote.test"].status == DELIVERED
    assert jobs[1].outcomes["a1@remote.test"].status == DELIVERED
    failed = jobs[1].outcomes["b1@remote.test"]
    assert (failed.status, failed.reply, failed.enhanced) == (FAILED, "550 5.1.1 no such user", "5.1.1")
    said = [line.split(" ", 1)[1][:3] for line in transcript.lines if " >>> " in line or " <<< " in line]
    said = said[said.index(">>>", 3):]  # from the first command after EHLO
    assert ">>>" in said and all(not (a == b == ">>>") for a, b in itertools.pairwise(said))
    assert [m.recipients for m in mx.messages] == [["a0@remote.test", "b0@remote.test"], ["a1@remote.test"]]
    assert mx.quits == 1


@contextlib.asynccontextmanager
async def _mute_after_ehlo(port: int) -> AsyncIterator[list[bytes]]:
    """A server on a real socket that greets, answers EHLO with PIPELINING and then never answers again."""
    heard: list[bytes] = []
    ended = asyncio.Event()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mute.test\r\n")
        line = await reader.readline()
        heard.append(line)
        writer.write(b"250-mute.test\r\n250 PIPELINING\r\n")
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                heard.append(data)
        writer.close()
        ended.set()

    server = await asyncio.start_server(session, "127.0.0.4", port)
    try:
        yield heard
        await ended.wait()  # our side closed: the session sees its end
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_that_stops_answering_times_out_and_defers() -> None:
    port = free_port()
    async with _mute_after_ehlo(port) as heard:
        jobs, transcript = _jobs(1), Transcript()
        await deliver([Target("mx.remote.test", "127.0.0.4", port)], jobs, Settings("out.test", timeout=0.5),
                      transcript)
    assert all(o.status == DEFERRED and "TimeoutError" in o.reply for o in jobs[0].outcomes.values())
    assert b"".join(heard[1:]).count(b"\r\n") == 4  # MAIL, 2 RCPT, DATA in one go, nothing after


async def test_a_dismissed_idle_connection_says_quit() -> None:
    """An idle connection taken out of the cache and not used is closed with a QUIT, not just dropped."""
    port = free_port()
    async with remote_mta("127.0.0.4", port) as mx:
        cache = ConnectionCache(idle_time=60.0)
        await deliver([Target("mx.remote.test", "127.0.0.4", port)], _jobs(1), Settings("out.test", timeout=10),
                      Transcript(), cache=cache, per_connection=20, destination="remote.test")
        assert mx.quits == 0 and len(mx.messages) == 1
        idle = cache.adopt("remote.test", 1, 20)
        assert idle is not None
        cache.dismiss(idle.client)
        await cache.close()
        assert mx.quits == 1


@pytest.mark.parametrize("tls", [False, True])
async def test_hand_over_under_uvloop_plain_and_after_starttls(tmp_path: Path, config_factory, tls: bool) -> None:
    """The engine runs on uvloop, whose transports (TCP, and TLS after STARTTLS) are not asyncio's: the connection
    aiosmtplib greeted (and secured) goes on with our client there too. The next hop is a real smtpsvc, which
    offers PIPELINING."""
    import uvloop
    from engine_support import start_server
    from security_support import tls_files

    files = tls_files(tmp_path / "remote", "mx.remote.test") if tls else None
    server = {"tls_certificate": str(files.certificate), "tls_key": str(files.key)} if files else {}
    remote = await start_server(config_factory(fqdn="mx.remote.test", **server))
    jobs, transcript = _jobs(2, "example.test"), Transcript()

    async def send() -> None:
        await deliver([Target("mx.remote.test", "127.0.0.1", remote.port)], jobs, Settings("out.test", timeout=10),
                      transcript)

    try:
        await asyncio.to_thread(uvloop.run, send())
    finally:
        await remote.server.stop()
    assert all(o.status == DELIVERED for job in jobs for o in job.outcomes.values()), transcript.lines
    assert any("TLS: TLSv1." in line for line in transcript.lines) == tls
    said = [line.split(" ", 1)[1] for line in transcript.lines]
    mail = next(n for n, line in enumerate(said) if line.startswith(">>> MAIL"))
    # smtpsvc offers CHUNKING: the message goes by BDAT, in the write of its MAIL and RCPTs (pipelined)
    assert said[mail + 3] == ">>> BDAT 48 LAST" and said[mail + 4].startswith("<<< 250")
