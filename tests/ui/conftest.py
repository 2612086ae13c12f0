"""UI test fixtures: a qasync loop to run the window's coroutines, and a small in-memory engine facade."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import qasync
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.conf.config_file import validate_config
from engine.events import ConfigChanged, Event, StateChanged
from engine.qmgr.queue import QueuePage
from engine.smtpd.sessions import SessionInfo
from ui.errors import MessageBridge
from ui.main_thread_gc import MainThreadGC

T = TypeVar("T")


class QLoop:
    """Runs a test's coroutine on a qasync loop, as the manager does (Qt events keep flowing)."""

    def __init__(self, loop: qasync.QEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Awaitable[T], timeout: float = 20.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.02)


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[QLoop]:
    qapp.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    try:
        yield QLoop(loop)
    finally:
        loop.close()
        asyncio.set_event_loop(None)


class Recorder(MessageBridge):
    """A message bridge that records what it would show."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.show_box = lambda title, text, unexpected: self.shown.append((title, text))
        self.note.connect(self.notes.append)


@pytest.fixture
def messages() -> Recorder:
    return Recorder()


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat)


def sample_config(tmp_path: Path) -> Config:
    return Config(
        server=ServerConfig(listen=("127.0.0.1:2525",), fqdn="mx.example.test"),
        domains=(DomainConfig("example.test", "default"), DomainConfig("alias.test", "alias"),
                 DomainConfig("relay.test", "remote", relay_allowed=True)),
        mailroot=str(tmp_path / "Mailroot"),
    )


class FakeEngine:
    """The facade in memory (unit tests of the window; the real engine is tested in tests/app)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self.state = "started"
        self.bound_addresses = [("127.0.0.1", 2525)]
        self.mailroot = Path(config.mailroot)
        self.sessions: list[SessionInfo] = []
        self.applied: list[Config] = []
        self.calls: list[str] = []
        self.sink: Callable[[list[Event]], Any] = lambda batch: None

    def config(self) -> Config:
        return self._config

    def _state(self, state: str) -> None:
        previous, self.state = self.state, state
        self.sink([StateChanged(state, previous)])

    async def start(self) -> None:
        self.calls.append("start")
        self._state("started")

    async def stop(self) -> None:
        self.calls.append("stop")
        self._state("stopped")

    async def pause(self) -> None:
        self.calls.append("pause")
        self._state("paused")

    async def resume(self) -> None:
        self.calls.append("resume")
        self._state("started")

    async def apply_config(self, config: Config) -> None:
        validate_config(config)
        self.applied.append(config)
        self._config = config
        self.sink([ConfigChanged(("domains",))])

    async def list_sessions(self) -> list[SessionInfo]:
        return list(self.sessions)

    async def list_queue(self, offset: int = 0, limit: int = 100, sort: str = "age",
                         descending: bool = False) -> QueuePage:
        return QueuePage((), 0)  # an empty queue (the window's Queue node may be shown in any test)

    async def terminate_session(self, session_id: str) -> None:
        self.calls.append(f"terminate {session_id}")

    async def terminate_all_sessions(self) -> int:
        self.calls.append("terminate all")
        return len(self.sessions)


@pytest.fixture
def fake_engine(tmp_path: Path) -> FakeEngine:
    return FakeEngine(sample_config(tmp_path))


@pytest.fixture(autouse=True)
def _application(qapp: QApplication) -> QApplication:
    """Every UI test needs the QApplication (icons are pixmaps), even model-only ones; Python's garbage is
    collected on the GUI thread only, as in the manager (ui/main_thread_gc.py)."""
    if qapp.findChild(MainThreadGC) is None:
        MainThreadGC(qapp)
    return qapp
