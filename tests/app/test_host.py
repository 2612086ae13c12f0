"""The engine host: its own thread and loop, marshalled calls, batched events, clean shutdown, one per Mailroot."""

from __future__ import annotations

import asyncio
import smtplib
import threading
from pathlib import Path

import pytest

from app.host import EngineHost, LocalEngine
from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.conf.config_file import load_config
from engine.errors import EngineError, MailrootLockedError
from engine.events import Event, SessionClosed, SessionOpened, StateChanged

MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: host\r\n\r\nbody\r\n"


def config(tmp_path: Path) -> Config:
    return Config(server=ServerConfig(listen=("127.0.0.1:0",), fqdn="mx.example.test"),
                  domains=(DomainConfig("example.test", "default"),), mailroot=str(tmp_path / "Mailroot"))


@pytest.fixture
def host(tmp_path: Path):
    engine = EngineHost(config(tmp_path), config_path=tmp_path / "smtpsvc.toml")
    engine.start_thread()
    yield engine
    engine.shutdown()


async def test_calls_run_on_the_engine_thread(host: EngineHost) -> None:
    async def where(server: object) -> str:
        return threading.current_thread().name

    assert await host.call(where) == "smtpsvc-engine"
    assert threading.current_thread().name != "smtpsvc-engine"
    assert host.state == "stopped"
    await LocalEngine(host).start()
    assert host.state == "started" and host.bound_addresses[0][0] == "127.0.0.1"


async def test_events_arrive_in_batches_from_the_engine_thread(host: EngineHost) -> None:
    batches: list[tuple[str, list[Event]]] = []
    host.add_event_sink(lambda batch: batches.append((threading.current_thread().name, batch)))
    await LocalEngine(host).start()
    port = host.bound_addresses[0][1]
    await asyncio.to_thread(lambda: smtplib.SMTP("127.0.0.1", port).quit())
    deadline = asyncio.get_running_loop().time() + 5
    while not any(isinstance(e, SessionClosed) for _, batch in batches for e in batch):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    events = [e for _, batch in batches for e in batch]
    assert {name for name, _ in batches} == {"smtpsvc-engine"}
    assert [e.state for e in events if isinstance(e, StateChanged)] == ["starting", "started"]
    assert [type(e) for e in events if isinstance(e, SessionOpened | SessionClosed)] == [SessionOpened, SessionClosed]
    assert len(batches) < len(events)  # batched, not one hop per event


async def test_shutdown_stops_the_engine_and_keeps_committed_mail(tmp_path: Path) -> None:
    host = EngineHost(config(tmp_path))
    host.start_thread()
    await LocalEngine(host).start()
    port = host.bound_addresses[0][1]

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("a@example.test", ["b@example.test"], MESSAGE)

    await asyncio.to_thread(send)
    await asyncio.to_thread(host.shutdown)
    assert not host.running
    assert len(list((tmp_path / "Mailroot" / "Drop").glob("*.eml"))) == 1
    with pytest.raises(EngineError, match="not running"):
        await LocalEngine(host).start()
    again = EngineHost(config(tmp_path))  # the Mailroot lock was released
    again.start_thread()
    try:
        await LocalEngine(again).start()
    finally:
        await asyncio.to_thread(again.shutdown)


async def test_second_engine_on_the_same_mailroot_is_refused(host: EngineHost, tmp_path: Path) -> None:
    await LocalEngine(host).start()
    second = EngineHost(config(tmp_path))
    second.start_thread()
    try:
        with pytest.raises(MailrootLockedError, match="in use by another smtpsvc engine"):
            await LocalEngine(second).start()
        assert second.state == "stopped" and host.state == "started"
    finally:
        await asyncio.to_thread(second.shutdown)


async def test_apply_config_is_saved(host: EngineHost, tmp_path: Path) -> None:
    await LocalEngine(host).start()
    changed = Config(server=ServerConfig(listen=("127.0.0.1:0",), fqdn="mx.example.test", max_recipients=7),
                     domains=host.config().domains, mailroot=host.config().mailroot)
    await LocalEngine(host).apply_config(changed)
    assert host.config().server.max_recipients == 7
    assert load_config(tmp_path / "smtpsvc.toml").server.max_recipients == 7
