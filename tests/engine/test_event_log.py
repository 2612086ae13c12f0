"""The event log: the stable ID table, entries written by the real engine, rotation, reading back with filters."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from engine_support import start_server

from engine.actor import local_account
from engine.admin import event_log
from engine.admin.control import request
from engine.admin.event_ids import EVENT_TYPES, EventEntry, entry_for
from engine.conf.config import Config
from engine.errors import BindError
from engine.events import (
    AdminAction,
    BadmailPruned,
    CertificateLoaded,
    ConfigChanged,
    ErrorEvent,
    ListenerFailed,
    MessageBadmailed,
    MessageQueued,
    SessionOpened,
)
from engine.events import StateChanged as State
from engine.smtpd.security import AuthFailed

# Published IDs never change meaning: this table is the contract with scripts and monitoring.
STABLE = {1000: "Service", 1001: "Service", 1002: "Service", 1003: "Service", 1004: "Queue", 1100: "Configuration",
          1101: "Administration",
          2000: "Security", 2001: "Security", 2002: "Security", 2003: "TLS", 2004: "TLS", 2005: "TLS", 3000: "Badmail",
          3001: "NDR",
          3002: "NDR", 3003: "Badmail", 4000: "Listener", 4001: "Listener", 5000: "Queue", 5001: "Drop", 5002: "Pickup",
          5003: "Protocol log", 5004: "SMTP", 5099: "Service"}


def test_the_id_table_is_stable() -> None:
    assert {i: t.source for i, t in EVENT_TYPES.items()} == STABLE


@pytest.mark.parametrize(("event", "expected"), [
    (State("started", "starting"), (1000, "Information")),
    (State("stopped", "stopping"), (1001, "Information")),
    (State("paused", "pausing"), (1002, "Information")),
    (State("started", "continuing"), (1003, "Information")),
    (State("starting", "stopped"), None),
    (ListenerFailed("127.0.0.1:25", "Permission denied"), (4000, "Error")),
    (ConfigChanged(("server.max_recipients",)), (1100, "Information")),
    (AdminAction("boss", "127.0.0.1", "queue.delete", '{"id":"Q1"}'), (1101, "Information")),
    (AuthFailed("192.0.2.1", "alice", 5, True), (2000, "Warning")),
    (AuthFailed("192.0.2.1", "alice", 1, False), None),
    (MessageBadmailed("x", "no recipients", "pickup"), (3000, "Warning")),
    (BadmailPruned(("A", "B"), 4096), (3003, "Information")),
    (MessageQueued("Q1", "", ("a@b.test",), 10, "dsn"), (3001, "Information")),
    (MessageQueued("Q1", "a@b.test", ("a@b.test",), 10, "smtp"), None),
    (ErrorEvent("queue", "No space left on device"), (5000, "Error")),
    (ErrorEvent("log", "full"), (5003, "Error")),
    (ErrorEvent("something new", "?"), (5099, "Error")),
    (SessionOpened("S1", "127.0.0.1"), None),
    (CertificateLoaded("/c.pem", "CN=mx", 100 * 86400.0, at=0.0), (2004, "Information")),
    (CertificateLoaded("/c.pem", "CN=mx", 10 * 86400.0, at=0.0), (2005, "Warning")),
    (CertificateLoaded("/c.pem", "CN=mx", 0.0, at=5.0), (2005, "Warning")),
])
def test_entry_for(event: object, expected: tuple[int, str] | None) -> None:
    entry = entry_for(event)  # type: ignore[arg-type]
    assert (None if entry is None else (entry.event_id, entry.level)) == expected
    if entry is not None:
        assert entry.source == EVENT_TYPES[entry.event_id].source and entry.text


def test_rotation_is_bounded_and_reading_filters(tmp_path: Path) -> None:
    entries = [EventEntry(float(n), 1000 + n % 2, "Information" if n % 3 else "Error", "Service", f"entry {n}")
               for n in range(200)]
    for start in range(0, 200, 10):
        event_log.append(tmp_path, entries[start:start + 10], max_bytes=2000)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["events.1.jsonl", "events.2.jsonl", "events.3.jsonl", "events.4.jsonl", "events.jsonl"]
    kept = list(event_log.read_entries(tmp_path))
    assert [e.at for e in kept] == sorted(e.at for e in kept) and kept[-1] == entries[-1]
    assert len(kept) < 200  # the oldest files were dropped
    with (tmp_path / "events.jsonl").open("a") as file:
        file.write('{"broken\n')  # a crash in mid-line
    errors = list(event_log.read_entries(tmp_path, since=150.0, level="Error"))
    assert [e.at for e in errors] == [float(n) for n in range(150, 200) if n % 3 == 0]


@pytest.mark.expect_errors
async def test_the_engine_writes_its_events(tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    running = await start_server(config_factory())
    server = running.server
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        await server.pause()
        await server.resume()
        await server.apply_config(replace(server.config(), server=replace(server.config().server, max_recipients=7)))
        with pytest.raises(BindError):
            await server.apply_config(replace(server.config(), server=replace(
                server.config().server, listen=(*server.config().server.listen, busy))))
    socket_file = server.mailroot.root / "control.sock"
    reply = await request(socket_file, "events.list", level="Warning")
    assert [e["id"] for e in reply] == [4000]
    await server.stop()
    directory = event_log.event_log_dir(server.mailroot.root)
    lines = (directory / "events.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert ids == [1000, 1002, 1003, 1100, 4000, 1001]
    assert json.loads(lines[3])["text"] == f"Changed by {local_account()} (local): server.max_recipients."
    assert all(e.source for e in event_log.read_entries(directory))


async def test_certificate_loads_are_logged(tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    from security_support import tls_files

    tls = tls_files(tmp_path / "tls")
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key)))
    await running.server.stop()
    entries = list(event_log.read_entries(event_log.event_log_dir(running.server.mailroot.root)))
    [loaded] = [e for e in entries if e.source == "TLS"]
    assert loaded.event_id == 2004 and str(tls.certificate) in loaded.text and "valid until" in loaded.text


def test_floods_are_throttled() -> None:
    from engine.admin.event_ids import throttled

    assert not throttled(4001, None, 100.0) and throttled(4001, 100.0, 159.0) and not throttled(4001, 100.0, 160.0)
    assert not throttled(1000, 100.0, 100.0)  # only the kinds that come in floods


async def test_the_connection_limit_is_logged_once_a_minute(tmp_path: Path,
                                                          config_factory: Callable[..., Config]) -> None:
    running = await start_server(config_factory(max_connections=1))
    held = []
    try:
        def connect() -> bytes:
            sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
            held.append(sock)
            return sock.recv(200)

        assert (await asyncio.to_thread(connect)).startswith(b"220")
        for _ in range(3):
            assert (await asyncio.to_thread(connect)).startswith(b"421")
    finally:
        for sock in held:
            sock.close()
        await running.server.stop()
    entries = [e for e in event_log.read_entries(event_log.event_log_dir(running.server.mailroot.root))
               if e.event_id == 4001]
    assert len(entries) == 1 and "The limit of 1 inbound connections is reached" in entries[0].text
