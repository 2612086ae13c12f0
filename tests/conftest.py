"""Shared fixtures: a real engine on a loopback port, real clients, temporary Mailroots."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from engine_support import Running, make_config
from hypothesis import HealthCheck, settings

from engine.conf.config import Config
from engine.events import ErrorEvent, Event, EventBus
from engine.server import VirtualServer

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# The tests never touch the user's own data, settings or state: a configuration that names no Mailroot (and the
# window's remembered settings) would otherwise use the real default Mailroot, where an engine of another test
# run, or the user's own, may be running. Set before anything reads them; subprocesses inherit them.
_PRIVATE_HOME = tempfile.mkdtemp(prefix="smtpsvc-tests-xdg-")
for _variable, _folder in (("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state")):
    os.environ[_variable] = os.path.join(_PRIVATE_HOME, _folder)
atexit.register(shutil.rmtree, _PRIVATE_HOME, True)

# Hypothesis's deadline and "too slow" check are timing assertions: on a shared, loaded machine (and in CI) they
# fail tests whose logic is right. Properties are checked for what they compute, never for how fast.
settings.register_profile("smtpsvc", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("smtpsvc")


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., Config]:
    return lambda **server: make_config(tmp_path, **server)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    running = Running(VirtualServer(make_config(tmp_path)))
    await running.server.start()
    try:
        yield running
    finally:
        await running.server.stop()


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def logfail(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test on an unexpected ERROR log record (a traceback in the log, "Task exception was never
    retrieved"...) or ErrorEvent from any engine in this process. A test that provokes them on purpose
    is marked ``@pytest.mark.expect_errors`` (and should check them itself)."""
    if request.node.get_closest_marker("expect_errors"):
        yield
        return
    handler = _ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    events: list[ErrorEvent] = []
    publish = EventBus.publish

    def watched(bus: EventBus, event: Event) -> None:
        if isinstance(event, ErrorEvent):
            events.append(event)
        publish(bus, event)

    monkeypatch.setattr(EventBus, "publish", watched)
    try:
        yield
    finally:
        root.removeHandler(handler)
    problems = [f"ERROR log {r.name}: {r.getMessage()}" + (" (with a traceback)" if r.exc_info else "")
                for r in handler.records]
    problems += [f"ErrorEvent {e.source}: {e.message}" for e in events]
    if problems:
        pytest.fail("unexpected errors (mark the test expect_errors if they are its point):\n  "
                    + "\n  ".join(problems[:20]), pytrace=False)


# PySide6 sometimes corrupts a reference count (None's) that only the interpreter's final garbage collection trips
# over: "Fatal Python error: none_dealloc" after every test has passed and the summary is printed (two whole ui/app
# runs of 2026-12-07, one in a fresh Debian chroot). A process that imported Qt therefore ends with the session's own
# exit status without that final teardown; the status (failures, 5 for no tests) is exactly pytest's.
_session_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if "PySide6" in sys.modules and _session_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_session_status[-1])
