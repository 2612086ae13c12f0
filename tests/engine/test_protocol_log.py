"""The protocol log against the real engine on loopback: every format parses, secrets never appear, files roll
over on the (injected) clock and by size, outbound sessions are logged, and a full disk costs lines, not mail."""

from __future__ import annotations

import asyncio
import base64
import smtplib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from engine_support import Running, start_server
from security_support import users_file

from engine.conf.config import Config, DomainConfig
from engine.conf.options import W3C_LOG_FIELDS
from engine.events import ErrorEvent
from engine.log import formats, tail
from engine.log.protocol_log import LogFiles
from engine.log.record import ProtocolRecord
from engine.log.settings import LogSettings, current_log_file, log_settings
from engine.server import VirtualServer

PASSWORD = "s3cret-Pa55word"
MESSAGE = b"From: a@example.test\r\nSubject: log me\r\n\r\nbody\r\n"


def talk(port: int, *, login: bool = False) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        if login:
            client.login("alice", PASSWORD)
        client.noop()
        client.sendmail("a@example.test", ["b@example.test", "c@alias.test"], MESSAGE)
        client.rset()


def log_lines(directory: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text("utf-8").splitlines() for p in sorted(directory.rglob("*.log"))}


def parse(fmt: str, lines: list[str]) -> list[dict[str, str]]:
    if fmt == "w3c":
        return formats.parse_w3c(lines)
    parser = formats.parse_ncsa if fmt == "ncsa" else formats.parse_iis
    return [parser(line) for line in lines]


@pytest.mark.parametrize("fmt", ["w3c", "ncsa", "iis"])
async def test_every_command_logged_in_each_format_without_secrets(
        fmt: str, tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    users = users_file(tmp_path / "users", {"alice": PASSWORD})
    config = config_factory(log_format=fmt, log_dir=str(tmp_path / "Logs"), auth_basic=True,
                            auth_plaintext_allowed=True, users_file=str(users), log_fields=W3C_LOG_FIELDS)
    running = await start_server(config)
    try:
        await asyncio.to_thread(talk, running.port, login=True)
        await running.wait_for(lambda: len(running.drop_files()) == 1)
    finally:
        await running.server.stop()
    files = log_lines(tmp_path / "Logs" / "SMTPSVC1")
    today = datetime.now(UTC).strftime("%y%m%d")
    assert list(files) == [f"{ {'w3c': 'ex', 'ncsa': 'nc', 'iis': 'in'}[fmt]}{today}.log".replace(" ", "")]
    [lines] = files.values()
    entries = parse(fmt, lines)
    methods = [e["cs-method"] for e in entries]
    assert methods == ["EHLO", "AUTH", "NOOP", "MAIL", "RCPT", "RCPT", "DATA", "RSET", "QUIT"]
    by_method = {e["cs-method"]: e for e in entries}
    assert by_method["AUTH"]["cs-uri-query"] == "PLAIN" and by_method["AUTH"]["sc-status"] == "235"
    assert by_method["DATA"]["cs-uri-query"].startswith("<") and by_method["DATA"]["sc-status"] == "250"
    assert entries[0]["c-ip"] == "127.0.0.1" and entries[0]["cs-username"] == "client.test"
    text = "\n".join(lines)
    blob = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    assert PASSWORD not in text and blob not in text and blob[:12] not in text
    tail = await running.server.protocol_log_tail(3)  # the window's Protocol Log (also while stopped)
    assert tail.enabled and tail.fmt == fmt and tail.unreadable == 0 and tail.path.endswith(next(iter(files)))
    assert [entry["cs-method"] for entry in tail.entries] == ["DATA", "RSET", "QUIT"]


def test_the_tail_of_a_large_file_keeps_its_fields_and_skips_what_is_not_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "ex261207.log"
    fields = ["time", "c-ip", "cs-method"]
    body = [f"00:00:{n % 60:02} 192.0.2.{n % 250} NOOP" for n in range(50_000)]  # more than TAIL_BYTES
    path.write_text("\n".join(["#Software: smtpsvc", "#Fields: " + " ".join(fields), *body,
                               "not-an-entry", "23:59:59 192.0.2.9 QUIT", "23:59:59 192.0.2.9 DA"]), "utf-8")
    assert path.stat().st_size > tail.TAIL_BYTES
    entries, unreadable = tail.read_tail(path, "w3c", 2)  # the last line has no newline yet: not read
    assert entries == [{"time": "00:00:19", "c-ip": "192.0.2.249", "cs-method": "NOOP"},
                       {"time": "23:59:59", "c-ip": "192.0.2.9", "cs-method": "QUIT"}]
    assert unreadable == 1
    assert tail.read_tail(tmp_path / "absent.log", "w3c", 10) == ([], 0)
    ncsa = tmp_path / "nc261207.log"
    ncsa.write_text('127.0.0.1 - client.test [07/Dec/2026:10:00:00 +0000] "EHLO client.test SMTP" 250 120\n'
                    "garbage\n", "utf-8")
    entries, unreadable = tail.read_tail(ncsa, "ncsa", 10)
    assert [e["cs-method"] for e in entries] == ["EHLO"] and unreadable == 1


def test_the_last_lines_and_those_written_since(tmp_path: Path) -> None:
    """What `smtpsvc log tail [-f]` prints over --connect (log.lines): whole lines only, then from an offset on."""
    path = tmp_path / "ex261207.log"
    path.write_bytes(b"#Fields: time cs-method\n10:00:00 EHLO\n10:00:01 MAIL\n10:00:02 DA")  # the last: unfinished
    assert tail.read_lines(path, 2) == (["10:00:00 EHLO", "10:00:01 MAIL"], 52, True)
    assert tail.read_lines(path, 0) == ([], 52, True)
    assert tail.read_lines(path, 50)[0] == ["#Fields: time cs-method", "10:00:00 EHLO", "10:00:01 MAIL"]
    assert tail.read_lines(path, 10, offset=52) == ([], 52, True)  # nothing whole since
    with path.open("ab") as file:
        file.write(b"TA\n10:00:03 QUIT\n")
    assert tail.read_lines(path, 10, offset=52) == (["10:00:02 DATA", "10:00:03 QUIT"], 80, True)
    path.write_bytes(b"#Fields: time\n")  # started again (a new file under the name): from its start
    assert tail.read_lines(path, 10, offset=80) == (["#Fields: time"], 14, True)
    assert tail.read_lines(tmp_path / "absent.log", 10) == ([], 0, False)
    big = tmp_path / "big.log"
    big.write_bytes(b"".join(b"%06d\n" % n for n in range(300_000)))  # more than TAIL_BYTES
    lines, end, _ = tail.read_lines(big, 3)
    assert lines == ["299997", "299998", "299999"] and end == big.stat().st_size
    lines, end, _ = tail.read_lines(big, 3, offset=0)  # a MiB at a time: the follower calls again from `end`
    assert lines[0] == "000000" and end == len(lines) * 7 < big.stat().st_size
    big.write_bytes(b"x" * (tail.TAIL_BYTES + 5) + b"\nafter\n")  # a line longer than a read: its first MiB skipped
    assert tail.read_lines(big, 1, offset=0) == ([], tail.TAIL_BYTES, True)
    assert tail.read_lines(big, 1, offset=tail.TAIL_BYTES) == (["xxxxx", "after"], tail.TAIL_BYTES + 12, True)


async def test_files_roll_over_on_the_clock(tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    now = [datetime(2026, 3, 5, 23, 59, 0, tzinfo=UTC).timestamp()]
    config = config_factory(log_dir=str(tmp_path / "Logs"), log_period="hourly")
    server = VirtualServer(config, clock=lambda: now[0])
    await server.start()
    running = Running(server)
    try:
        await asyncio.to_thread(talk, running.port)
        await running.wait_for(lambda: server.protocol_log is not None and server.protocol_log.written == 8)
        now[0] += 120  # past midnight: a new day and a new hour
        await asyncio.to_thread(talk, running.port)
        await running.wait_for(lambda: len(running.drop_files()) == 2)
    finally:
        await server.stop()
    files = log_lines(tmp_path / "Logs" / "SMTPSVC1")
    assert list(files) == ["ex26030523.log", "ex26030600.log"]
    for lines in files.values():
        assert lines[1] == "#Version: 1.0" and lines[3].startswith("#Fields: date time ")
        entries = formats.parse_w3c(lines)
        assert len(entries) == 8
    assert {e["date"] for e in formats.parse_w3c(files["ex26030600.log"])} == {"2026-03-06"}


def _settings(directory: Path, **changes: object) -> LogSettings:
    values: dict[str, object] = dict(enabled=True, fmt="w3c", directory=directory, period="size", max_bytes=600,
                                     fields=("time", "cs-method", "cs-uri-query"), local_time=False,
                                     computer="mx.example.test")
    values.update(changes)
    return LogSettings(**values)  # type: ignore[arg-type]


def _record(verb: str) -> ProtocolRecord:
    return ProtocolRecord("in", "127.0.0.1", "c.test", "127.0.0.1", 25, verb, "x" * 40, "250 ok", 1, 1, 0)


def test_size_rollover_and_changed_fields(tmp_path: Path) -> None:
    files = LogFiles("smtpsvc test")
    settings = _settings(tmp_path)
    for _ in range(6):
        files.write(settings, [(0.0, _record("NOOP")) for _ in range(5)])
    files.write(_settings(tmp_path, fields=("time", "cs-method")), [(0.0, _record("RSET"))])
    files.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "extend1.log" and len(names) > 2
    assert all(p.stat().st_size <= 600 for p in tmp_path.iterdir())
    total = [e for name in names for e in formats.parse_w3c((tmp_path / name).read_text().splitlines())]
    assert [e["cs-method"] for e in total] == ["NOOP"] * 30 + ["RSET"]
    assert total[-1] == {"time": "00:00:00", "cs-method": "RSET"}
    assert current_log_file(settings, 0.0) == tmp_path / names[-1]
    again = LogFiles("smtpsvc test")  # a restart goes on with the last file of the series
    again.write(settings, [(0.0, _record("HELO"))])
    assert again.path == tmp_path / names[-1]
    again.close()


async def test_outbound_sessions_are_logged(tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    sink = await start_server(config_factory(log_enabled=False, listen=("127.0.0.1:0",)))
    relay_dir = tmp_path / "relay"
    relay_config = config_factory(log_dir=str(tmp_path / "RelayLogs"),
                                  smart_host=f"[127.0.0.1]:{sink.port}")
    relay_config = Config(server=relay_config.server, mailroot=str(relay_dir), domains=(
        DomainConfig("relay.example", "default"), DomainConfig("example.test", "remote", relay_allowed=True)))
    relay = await start_server(relay_config)
    try:
        def send() -> None:
            with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
                client.sendmail("a@relay-src.test", ["x@example.test"], MESSAGE)
        await asyncio.to_thread(send)
        await sink.wait_for(lambda: len(sink.drop_files()) == 1)
        # the sink stores before it answers: the relay logs BDAT once the 250 is back and the message is gone
        await relay.wait_for(lambda: not relay.queue_files())
    finally:
        await relay.server.stop()
        await sink.server.stop()
    [lines] = log_lines(tmp_path / "RelayLogs" / "SMTPSVC1").values()
    outbound = [e for e in formats.parse_w3c(lines) if e["cs-username"] == formats.OUTBOUND_USER]
    assert [e["cs-method"] for e in outbound][:4] == ["EHLO", "MAIL", "RCPT", "BDAT"]  # smtpsvc offers CHUNKING
    assert all(e["c-ip"] == "127.0.0.1" and e["sc-status"].startswith(("2", "3")) for e in outbound)


@pytest.mark.expect_errors
async def test_a_full_disk_costs_log_lines_not_mail(tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    config = config_factory(log_dir=str(tmp_path / "Logs"))
    site = tmp_path / "Logs" / "SMTPSVC1"
    site.mkdir(parents=True)
    full = current_log_file(log_settings(config, None), datetime.now(UTC).timestamp())
    full.symlink_to("/dev/full")  # every write: ENOSPC
    running = await start_server(config)
    try:
        for _ in range(3):
            await asyncio.to_thread(talk, running.port)
        await running.wait_for(lambda: len(running.drop_files()) == 3)
        protocol_log = running.server.protocol_log
        assert protocol_log is not None
        await running.wait_for(lambda: protocol_log.dropped == 24)
    finally:
        await running.server.stop()
    errors = [e for e in running.events if isinstance(e, ErrorEvent) and e.source == "log"]
    assert len(errors) == 1 and "No space left on device" in errors[0].message


async def test_settings_changed_while_running(tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    from dataclasses import replace

    running = await start_server(config_factory(log_dir=str(tmp_path / "Logs")))
    server = running.server
    protocol_log = server.protocol_log
    assert protocol_log is not None
    try:
        async def talk_and_wait(total: int) -> None:
            await asyncio.to_thread(talk, running.port)
            await running.wait_for(lambda: protocol_log.written == total)

        await talk_and_wait(8)
        fields = ("time", "c-ip", "cs-method", "sc-status")
        await server.apply_config(replace(server.config(), server=replace(server.config().server, log_fields=fields)))
        await talk_and_wait(16)
        await server.apply_config(replace(server.config(), server=replace(server.config().server, log_format="ncsa")))
        await talk_and_wait(24)
        await server.apply_config(replace(server.config(), server=replace(server.config().server, log_enabled=False)))
        await asyncio.to_thread(talk, running.port)
        await running.wait_for(lambda: len(running.drop_files()) == 4)
    finally:
        await server.stop()
    files = log_lines(tmp_path / "Logs" / "SMTPSVC1")
    [w3c] = [lines for name, lines in files.items() if name.startswith("ex")]
    [ncsa] = [lines for name, lines in files.items() if name.startswith("nc")]
    entries = formats.parse_w3c(w3c)
    assert len(entries) == 16 and set(entries[-1]) == set(fields)
    assert sum(line.startswith("#Fields: ") for line in w3c) == 2
    assert len([formats.parse_ncsa(line) for line in ncsa]) == 8  # and nothing once logging was turned off
