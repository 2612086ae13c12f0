"""Inbound SMTP against the real engine on loopback: replies, limits, relay, Drop, with smtplib and raw sockets."""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import replace

import pytest
from engine_support import Running, start_server
from smtp_helpers import ENHANCED, RawSMTP

from engine.events import SessionClosed, SessionOpened
from engine.qmgr.queue import QueueItem
from engine.store.envelope import split_envelope


def send(port: int, sender: str, rcpts: list[str], body: bytes, **kw: object) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(sender, rcpts, body, **kw)  # type: ignore[arg-type]


MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hello\r\n\r\nline one\r\n.leading dot\r\n"


async def test_ehlo_advertises_extensions_and_size(running: Running) -> None:
    def talk() -> tuple[int, str]:
        with smtplib.SMTP("127.0.0.1", running.port) as client:
            code, text = client.ehlo("client.test")
            return code, text.decode()

    code, text = await asyncio.to_thread(talk)
    assert code == 250
    lines = text.splitlines()
    assert lines[0] == "mx.example.test Hello [127.0.0.1]"
    assert set(lines[1:]) == {"SIZE 2097152", "PIPELINING", "8BITMIME", "BINARYMIME", "CHUNKING", "ENHANCEDSTATUSCODES",
                              "SMTPUTF8", "DSN", "ETRN", "HELP"}


async def test_local_message_lands_in_drop_with_envelope_lines(running: Running) -> None:
    refused = await asyncio.to_thread(send, running.port, "a@example.test", ["b@example.test", "c@alias.test"], MESSAGE)
    assert refused == {}
    [path] = running.drop_files()
    data = path.read_bytes()
    sender, recipients, offset = split_envelope(data)
    assert (sender, recipients) == ("a@example.test", ("b@example.test", "c@alias.test"))
    body = data[offset:]
    assert body.startswith(b"Received: from ")
    assert b"by mx.example.test with ESMTP id " + path.stem.encode() in body
    assert body.endswith(MESSAGE)  # dot-stuffing by smtplib undone exactly
    assert running.queue_files() == []
    snapshot = await running.server.counters_snapshot()
    assert snapshot["Messages Received Total"] == 1
    assert snapshot["Directory Drops Total"] == 1


async def test_every_reply_carries_an_enhanced_code(running: Running) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        replies = [raw.cmd(c) for c in (
            "MAIL FROM:<a@example.test>", "HELO client.test", "RCPT TO:<b@example.test>", "MAIL FROM:<bad",
            "MAIL FROM:<a@example.test>", "MAIL FROM:<a@example.test>", "RCPT TO:<x@nowhere.test>",
            "RCPT TO:<b@example.test> NOTIFY=NEVER", "DATA extra", "VRFY b", "VRFY", "EXPN list", "HELP",
            "NOOP", "BOGUS", "RSET x", "RSET", "DATA",
        )]
        raw.close()
        return replies

    replies = await asyncio.to_thread(talk)
    helo = replies.pop(1)
    assert helo.startswith("250 mx.example.test")
    for line in replies:
        assert ENHANCED.match(line), line
    assert replies[0].startswith("503 5.5.1")  # MAIL before HELO
    assert replies[5].startswith("550 5.7.1 Unable to relay for x@nowhere.test")
    assert replies[8].startswith("252 ")


async def test_relay_refused_unless_allowed(tmp_path, config_factory) -> None:
    closed = await start_server(config_factory())
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            await asyncio.to_thread(send, closed.port, "a@example.test", ["x@elsewhere.test"], MESSAGE)
        assert refused.value.recipients["x@elsewhere.test"] == (550, b"5.7.1 Unable to relay for x@elsewhere.test")
        # Remote domain configured with "allow incoming mail to be relayed": accepted from anyone, queued.
        await asyncio.to_thread(send, closed.port, "a@example.test", ["y@relay.test"], MESSAGE)
        assert len(closed.queue_files()) == 1
    finally:
        await closed.server.stop()
    allowed = await start_server(replace(config_factory(), mailroot=str(tmp_path / "M2"),
                                         server=replace(config_factory().server, relay_allowed=("127.0.0.0/8",))))
    try:
        await asyncio.to_thread(send, allowed.port, "a@example.test", ["x@elsewhere.test"], MESSAGE)
        [queued] = allowed.queue_files()
        assert split_envelope(queued.read_bytes())[1] == ("x@elsewhere.test",)
    finally:
        await allowed.server.stop()


async def test_mixed_recipients_local_part_dropped_remote_stays_queued(running: Running) -> None:
    await asyncio.to_thread(send, running.port, "a@example.test", ["b@example.test", "r@relay.test"], MESSAGE)
    await running.wait_for(lambda: len(running.drop_files()) == 1)
    [drop] = running.drop_files()
    assert split_envelope(drop.read_bytes())[1] == ("b@example.test",)
    # The queue's files can be on disk a moment before the engine lists the message (the commit's answer comes
    # back to the loop after the rename): wait for the listing itself.
    items: list[object] = []
    for _ in range(500):
        items = list((await running.server.list_queue()).items)
        if items:
            break
        await asyncio.sleep(0.02)
    [item] = items
    assert isinstance(item, QueueItem) and item.queue_id == drop.stem
    assert item.pending == ("r@relay.test",)


async def test_default_domain_stamping_and_postmaster(running: Running) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        out = [raw.cmd("EHLO c"), raw.cmd("MAIL FROM:<spamtest>"), raw.cmd("RCPT TO:<postmaster>"),
               raw.cmd("DATA"), raw.cmd(b"Subject: s\r\n\r\nx\r\n."), raw.cmd("QUIT")]
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert out[1] == "250 2.1.0 <spamtest@example.test>....Sender OK"
    assert out[2] == "250 2.1.5 <postmaster@example.test>"
    assert out[4].startswith("250 2.6.0")
    [drop] = running.drop_files()
    assert split_envelope(drop.read_bytes())[:2] == ("spamtest@example.test", ("postmaster@example.test",))


async def test_message_size_limit_keeps_connection_usable(tmp_path, config_factory) -> None:
    run = await start_server(config_factory(max_message_size_kb=1))
    try:
        def talk() -> list[str]:
            raw = RawSMTP(run.port)
            out = [raw.cmd("EHLO c"), raw.cmd("MAIL FROM:<a@example.test> SIZE=5000")]
            out.append(raw.cmd("MAIL FROM:<a@example.test>"))
            out.append(raw.cmd("RCPT TO:<b@example.test>"))
            out.append(raw.cmd("DATA"))
            out.append(raw.cmd(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n."))
            out += [raw.cmd("MAIL FROM:<a@example.test>"), raw.cmd("RCPT TO:<b@example.test>"), raw.cmd("DATA"),
                    raw.cmd(b"Subject: small\r\n\r\nok\r\n."), raw.cmd("QUIT")]
            raw.close()
            return out

        out = await asyncio.to_thread(talk)
        assert out[1].startswith("552 5.3.4")
        assert out[5].startswith("552 5.3.4")
        assert out[9].startswith("250 2.6.0")
        assert len(run.drop_files()) == 1
        assert (await run.server.counters_snapshot())["Messages Refused for Size"] == 2
    finally:
        await run.server.stop()


async def test_session_size_limit(config_factory) -> None:
    run = await start_server(config_factory(max_session_size_kb=2))
    try:
        def talk() -> list[str]:
            raw = RawSMTP(run.port)
            out = [raw.cmd("EHLO c")]
            for _ in range(3):
                out += [raw.cmd("MAIL FROM:<a@example.test>"), raw.cmd("RCPT TO:<b@example.test>"),
                        raw.cmd("DATA"), raw.cmd(b"Subject: s\r\n\r\n" + b"y" * 900 + b"\r\n.")]
            raw.close()
            return out

        out = await asyncio.to_thread(talk)
        assert out[4].startswith("250") and out[8].startswith("250")
        assert out[12].startswith("552 5.3.4 Session size")
        assert len(run.drop_files()) == 2
    finally:
        await run.server.stop()


async def test_recipient_limit(config_factory) -> None:
    run = await start_server(config_factory(max_recipients=3))
    try:
        def talk() -> list[str]:
            raw = RawSMTP(run.port)
            out = [raw.cmd("EHLO c"), raw.cmd("MAIL FROM:<a@example.test>")]
            out += [raw.cmd(f"RCPT TO:<u{i}@example.test>") for i in range(5)]
            raw.close()
            return out

        out = await asyncio.to_thread(talk)
        assert [line[:9] for line in out[2:]] == ["250 2.1.5"] * 3 + ["452 4.5.3"] * 2
    finally:
        await run.server.stop()


async def test_connection_limit_answers_421(config_factory) -> None:
    run = await start_server(config_factory(max_connections=2))
    try:
        def talk() -> str:
            first, second = RawSMTP(run.port), RawSMTP(run.port)
            third = RawSMTP(run.port)
            banner = third.banner[0]
            assert third.closed()
            assert first.cmd("NOOP").startswith("250") and second.cmd("NOOP").startswith("250")
            for raw in (first, second, third):
                raw.close()
            return banner

        assert (await asyncio.to_thread(talk)).startswith("421 4.3.2")
        assert (await run.server.counters_snapshot())["Inbound Connections Refused"] == 1
    finally:
        await run.server.stop()


async def test_idle_timeout_sends_421(config_factory) -> None:
    run = await start_server(config_factory(connection_timeout=1))
    try:
        def talk() -> tuple[str, bool]:
            raw = RawSMTP(run.port)
            line = raw.read_line()
            closed = raw.closed()
            raw.close()
            return line, closed

        line, closed = await asyncio.to_thread(talk)
        assert line.startswith("421 4.4.2 mx.example.test Timeout")
        assert closed
    finally:
        await run.server.stop()


async def test_long_command_line_then_connection_still_usable(running: Running) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        out = [raw.cmd("EHLO c"), raw.cmd("NOOP " + "x" * 5000), raw.cmd("NOOP " + "y" * 400_000), raw.cmd("NOOP")]
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert out[1] == "500 5.5.2 Line too long"
    assert out[2] == "500 5.5.2 Line too long"
    assert out[3].startswith("250 2.0.0")


async def test_too_many_bad_commands_closes_with_421(running: Running) -> None:
    def talk() -> tuple[list[str], bool]:
        raw = RawSMTP(running.port)
        out = [raw.cmd("EHLO c")] + [raw.cmd("RCPT TO:<b@example.test>") for _ in range(10)]
        closed = raw.closed()
        raw.close()
        return out, closed

    out, closed = await asyncio.to_thread(talk)
    assert all(line.startswith("503 5.5.1") for line in out[1:10])
    assert out[10].startswith("421 4.7.0")
    assert closed


async def test_pipelining_replies_in_order(running: Running) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        raw.cmd("EHLO c")
        batch = b"".join([
            b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n", b"RCPT TO:<x@far.test>\r\n",
            b"DATA\r\n", b"Subject: p\r\n\r\npipelined\r\n.\r\n", b"MAIL FROM:<c@example.test>\r\n",
            b"RCPT TO:<d@example.test>\r\n", b"DATA\r\n", b"Subject: q\r\n\r\nsecond\r\n.\r\n", b"QUIT\r\n",
        ])
        raw.send(batch)
        out = [raw.read_reply()[-1] for _ in range(9)]
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    codes = [line[:3] for line in out]
    assert codes == ["250", "250", "550", "354", "250", "250", "250", "354", "250"]
    await running.wait_for(lambda: len(running.drop_files()) == 2)


async def test_large_pipeline_without_reading_does_not_deadlock(running: Running) -> None:
    count = 20_000

    def talk() -> int:
        raw = RawSMTP(running.port)
        raw.cmd("EHLO c")
        raw.send(b"NOOP\r\n" * count + b"QUIT\r\n")  # replies (~360 KB) pile up while we write
        seen = 0
        while True:
            line = raw.read_line()
            if line.startswith("221"):
                break
            assert line.startswith("250 2.0.0"), line
            seen += 1
        raw.close()
        return seen

    assert await asyncio.to_thread(talk) == count


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"])
async def test_smtp_smuggling_never_ends_data(running: Running, smuggle: bytes) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        out = [raw.cmd("EHLO c"), raw.cmd("MAIL FROM:<a@example.test>"), raw.cmd("RCPT TO:<b@example.test>"),
               raw.cmd("DATA")]
        raw.send(b"Subject: s\r\n\r\nfirst" + smuggle + b"MAIL FROM:<evil@example.test>\r\n"
                 b"RCPT TO:<victim@example.test>\r\nDATA\r\n\r\nsmuggled\r\n.\r\n")
        out.append(raw.read_reply()[-1])
        out.append(raw.cmd("QUIT"))
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert out[4].startswith("550 5.6.0"), out  # the whole thing was one message, with a bare CR/LF: refused
    assert out[5].startswith("221")
    assert running.drop_files() == []


async def test_bare_newline_normalize_mode_keeps_one_message(config_factory) -> None:
    run = await start_server(config_factory(bare_newline="normalize"))
    try:
        def talk() -> str:
            raw = RawSMTP(run.port)
            for c in ("EHLO c", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA"):
                raw.cmd(c)
            line = raw.cmd(b"Subject: s\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.test>\r\nsecond line\r\n.")
            raw.close()
            return line

        assert (await asyncio.to_thread(talk)).startswith("250 2.6.0")
        [drop] = run.drop_files()
        data = drop.read_bytes()
        assert data.endswith(b"first\r\n\r\nMAIL FROM:<evil@example.test>\r\nsecond line\r\n")
    finally:
        await run.server.stop()


async def test_hop_count_exceeded_is_refused(running: Running) -> None:
    loop_message = b"".join(b"Received: from hop%d by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i for i in range(16))
    with pytest.raises(smtplib.SMTPDataError) as error:
        await asyncio.to_thread(send, running.port, "a@example.test", ["b@example.test"], loop_message + MESSAGE)
    assert error.value.smtp_code == 554 and error.value.smtp_error.startswith(b"5.4.6")
    ok = b"".join(b"Received: from hop%d by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i for i in range(15))
    await asyncio.to_thread(send, running.port, "a@example.test", ["b@example.test"], ok + MESSAGE)
    assert len(running.drop_files()) == 1


async def test_smtputf8_addresses(running: Running) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        out = [raw.cmd("EHLO c"), raw.cmd("MAIL FROM:<jörg@example.test>"),
               raw.cmd("MAIL FROM:<jörg@example.test> SMTPUTF8 BODY=8BITMIME"),
               raw.cmd("RCPT TO:<müller@example.test>"), raw.cmd("DATA"),
               raw.cmd("Subject: ü\r\n\r\nGrüße\r\n.".encode())]
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert out[1].startswith("553 5.6.7")
    assert out[2].startswith("250 2.1.0") and out[3].startswith("250 2.1.5") and out[5].startswith("250 2.6.0")
    [drop] = running.drop_files()
    assert split_envelope(drop.read_bytes())[1] == ("müller@example.test",)
    assert drop.read_bytes().endswith("Grüße\r\n".encode())


async def test_sessions_listed_and_terminated(running: Running) -> None:
    raw = await asyncio.to_thread(RawSMTP, running.port)
    await asyncio.to_thread(raw.cmd, "EHLO c")
    [session] = await running.server.list_sessions()
    assert session.peer == "127.0.0.1" and session.command == "EHLO" and session.bytes_in > 0
    assert (session.helo, session.sender, session.listener, session.cipher) == \
        ("c", "", f"127.0.0.1:{running.port}", "")
    await asyncio.to_thread(raw.cmd, "MAIL FROM:<anna@example.test>")
    [session] = await running.server.list_sessions()
    assert session.sender == "anna@example.test"  # the open transaction's sender
    await asyncio.to_thread(raw.cmd, "RSET")
    [session] = await running.server.list_sessions()
    assert session.sender == ""
    await running.server.terminate_session(session.session_id)
    line = await asyncio.to_thread(raw.read_line)
    assert line.startswith("421 4.3.2")
    await running.wait_for(lambda: not len(running.server.sessions))
    raw.close()
    kinds = [type(e) for e in running.events]
    assert SessionOpened in kinds and SessionClosed in kinds


async def test_pause_refuses_new_connections_keeps_existing(running: Running) -> None:
    existing = await asyncio.to_thread(RawSMTP, running.port)
    await running.server.pause()
    assert running.server.state == "paused"
    newcomer = await asyncio.to_thread(RawSMTP, running.port)
    assert newcomer.banner[0].startswith("421 4.3.2 Service paused")
    newcomer.close()
    assert (await asyncio.to_thread(existing.cmd, "EHLO c")).startswith("250")
    await running.server.resume()
    assert running.server.state == "started"
    again = await asyncio.to_thread(RawSMTP, running.port)
    assert again.banner[0].startswith("220 mx.example.test")
    again.close()
    existing.close()


async def test_second_engine_on_same_mailroot_is_refused(running: Running, config_factory) -> None:
    from engine.errors import MailrootLockedError
    from engine.server import VirtualServer

    second = VirtualServer(config_factory())
    with pytest.raises(MailrootLockedError, match="in use by another smtpsvc"):
        await second.start()
    assert second.state == "stopped"


async def test_facade_domain_operations_take_effect_at_once(running: Running) -> None:
    from engine.conf.config import DomainConfig
    from engine.errors import DomainError

    await running.server.add_domain(DomainConfig("new.test", "alias"))
    await asyncio.to_thread(send, running.port, "a@example.test", ["n@new.test"], MESSAGE)
    assert len(running.drop_files()) == 1
    with pytest.raises(DomainError, match="default domain cannot be deleted"):
        await running.server.delete_domain("example.test")
    await running.server.set_default_domain("new.test")
    kinds = {d.name: d.type for d in running.server.domains()}
    assert kinds["new.test"] == "default" and kinds["example.test"] == "alias"
    await running.server.delete_domain("alias.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asyncio.to_thread(send, running.port, "a@example.test", ["x@alias.test"], MESSAGE)


@pytest.mark.expect_errors
async def test_apply_config_changes_ehlo_size_and_rebinds_listener(running: Running, config_factory) -> None:
    from engine.errors import BindError, ConfigError

    config = running.server.config()
    await running.server.apply_config(replace(config, server=replace(config.server, max_message_size_kb=10)))

    def ehlo() -> str:
        with smtplib.SMTP("127.0.0.1", running.port) as client:
            return client.ehlo()[1].decode()

    assert "SIZE 10240" in await asyncio.to_thread(ehlo)
    with pytest.raises(ConfigError):
        await running.server.apply_config(replace(config, server=replace(config.server, max_recipients=0)))
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    taken = blocker.sockets[0].getsockname()[1]
    old_port = running.port
    try:
        with pytest.raises(BindError):
            await running.server.apply_config(
                replace(config, server=replace(config.server, listen=(f"127.0.0.1:{taken}",))))
    finally:
        blocker.close()
        await blocker.wait_closed()
    assert running.port == old_port
    assert "SIZE 10240" in await asyncio.to_thread(ehlo)  # the old listener still serves


async def test_apply_config_moves_the_listener(running: Running) -> None:
    from engine_support import free_port

    old_port = running.port
    new_port = free_port()
    config = running.server.config()
    await running.server.apply_config(replace(config, server=replace(config.server, listen=(f"127.0.0.1:{new_port}",))))
    assert running.port == new_port
    raw = await asyncio.to_thread(RawSMTP, new_port)
    assert raw.banner[0].startswith("220")
    raw.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(RawSMTP, old_port)
