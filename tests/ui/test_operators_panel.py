"""The Security tab's Operators list against a real engine (EngineHost): list, add, set password, remove, and the
engine's refusal to remove the last admin shown to the user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QLoop, Recorder, sample_config
from pytestqt.qtbot import QtBot

from app.host import EngineHost, LocalEngine
from engine.admin.operators import OPERATORS_NAME, operator_store
from ui.server_sheet import ServerSheet
from ui.tasks import TaskRunner


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LocalEngine]:
    config_path = tmp_path / "smtpsvc.toml"
    engine = EngineHost(sample_config(tmp_path), config_path=config_path)
    engine.start_thread()
    try:
        yield LocalEngine(engine)
    finally:
        engine.shutdown()


def test_operators_list_adds_changes_and_removes(qtbot: QtBot, qloop: QLoop, host: LocalEngine, messages: Recorder,
                                                 tmp_path: Path) -> None:
    sheet = ServerSheet(host.config, "stopped", host.apply_config, TaskRunner(messages), messages, operators=host)
    qtbot.addWidget(sheet)
    panel = sheet.operators_panel
    assert panel is not None
    qloop.run(qloop.until(lambda: "No operators yet" in panel.status.text()))
    assert not panel.remove_button.isEnabled() and not panel.password_button.isEnabled()

    panel.ask_operator = lambda name="": ("boss", "boss-secret", "admin")  # type: ignore[method-assign]
    panel.add_button.click()
    qloop.run(qloop.until(lambda: panel.rows() == [("boss", "admin")] and not panel.busy))
    panel.ask_operator = lambda name="": ("watcher", "watcher-secret", "viewer")  # type: ignore[method-assign]
    panel.add_button.click()
    qloop.run(qloop.until(lambda: panel.rows() == [("boss", "admin"), ("watcher", "viewer")] and not panel.busy))
    assert panel.status.text() == "2 operators, 1 administrator."
    store = operator_store(tmp_path / OPERATORS_NAME)  # the file the admin server reads
    assert store.check("watcher", "watcher-secret") and store.role("watcher") == "viewer"

    panel.list.setCurrentItem(panel.list.topLevelItem(1))
    panel.ask_operator = lambda name="": (name, "new-secret", "")  # type: ignore[method-assign]
    panel.password_button.click()
    qloop.run(qloop.until(lambda: not panel.busy))
    assert store.check("watcher", "new-secret") and not store.check("watcher", "watcher-secret")

    sheet.tabs.setCurrentIndex(sheet.tabs.count() - 1)
    sheet.show()
    sheet.grab().save(str(tmp_path / "operators.png"))

    panel.list.setCurrentItem(panel.list.topLevelItem(0))
    panel.confirm_remove = lambda name: True  # type: ignore[method-assign]
    panel.remove_button.click()  # boss is the only admin: the engine refuses, the window says why
    qloop.run(qloop.until(lambda: not panel.busy and bool(messages.shown)))
    assert messages.shown == [("Remove Operator", "Boss is the last admin operator; add another admin first")]
    assert panel.rows() == [("boss", "admin"), ("watcher", "viewer")]

    panel.list.setCurrentItem(panel.list.topLevelItem(1))
    panel.remove_button.click()
    qloop.run(qloop.until(lambda: panel.rows() == [("boss", "admin")] and not panel.busy))
    assert store.names() == ["boss"]
    sheet.reject()


def test_add_refused_by_the_engine_is_shown(qtbot: QtBot, qloop: QLoop, host: LocalEngine,
                                            messages: Recorder) -> None:
    sheet = ServerSheet(host.config, "stopped", host.apply_config, TaskRunner(messages), messages, operators=host)
    qtbot.addWidget(sheet)
    panel = sheet.operators_panel
    assert panel is not None
    qloop.run(qloop.until(lambda: "No operators yet" in panel.status.text()))
    panel.ask_operator = lambda name="": ("bad name:colon", "pw", "admin")  # type: ignore[method-assign]
    panel.add_button.click()
    qloop.run(qloop.until(lambda: bool(messages.shown) and not panel.busy))
    assert messages.shown[0][0] == "Add Operator" and panel.rows() == []


def test_without_the_facade_there_is_no_list(qtbot: QtBot, host: LocalEngine, messages: Recorder) -> None:
    sheet = ServerSheet(host.config, "stopped", host.apply_config, TaskRunner(messages), messages)
    qtbot.addWidget(sheet)
    assert sheet.operators_panel is None
