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
from ui.operators_panel import OperatorsPanel
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


def test_changes_wait_for_apply_and_cancel_drops_them(qtbot: QtBot, qloop: QLoop, host: LocalEngine,
                                                      messages: Recorder, tmp_path: Path) -> None:
    store = operator_store(tmp_path / OPERATORS_NAME)  # the file the admin server reads

    def sheet_with_panel() -> tuple[ServerSheet, OperatorsPanel]:
        sheet = ServerSheet(host.config, "stopped", host.apply_config, TaskRunner(messages), messages,
                            operators=host)
        qtbot.addWidget(sheet)
        assert sheet.operators_panel is not None
        return sheet, sheet.operators_panel

    def ask(name: str, password: str, role: str = "") -> None:
        panel.ask_operator = lambda asked="": (asked or name, password, role)  # type: ignore[method-assign]

    sheet, panel = sheet_with_panel()
    qloop.run(qloop.until(lambda: "No operators yet" in panel.status.text()))
    assert not panel.remove_button.isEnabled() and not panel.password_button.isEnabled()
    assert not sheet.apply_button.isEnabled()

    ask("boss", "boss-secret", "admin")
    panel.add_button.click()
    ask("watcher", "watcher-secret", "viewer")
    panel.add_button.click()
    ask("mailer", "mailer-secret", "poster")
    panel.add_button.click()
    assert panel.rows() == [("boss", "admin"), ("watcher", "viewer"), ("mailer", "poster")]
    assert "3 changes not made yet" in panel.status.text() and sheet.apply_button.isEnabled()
    assert store.names() == [] and not store.path.exists()  # nothing (no password) written before Apply
    panel.list.setCurrentItem(panel.list.topLevelItem(2))
    panel.confirm_remove = lambda name: True  # type: ignore[method-assign]
    panel.remove_button.click()  # a pending add removed again: simply forgotten
    assert panel.rows() == [("boss", "admin"), ("watcher", "viewer")] and len(panel.pending) == 2

    sheet.tabs.setCurrentIndex(sheet.tabs.count() - 1)
    sheet.show()
    sheet.grab().save(str(tmp_path / "operators-pending.png"))
    sheet.apply_button.click()
    qloop.run(qloop.until(lambda: not panel.pending and not sheet.busy and store.names() == ["boss", "watcher"]))
    assert store.check("watcher", "watcher-secret") and store.role("watcher") == "viewer"
    assert panel.status.text() == "2 operators, 1 administrator." and not sheet.apply_button.isEnabled()

    # Set Password and Remove wait too; Cancel drops them and the engine's file is as it was.
    panel.list.setCurrentItem(panel.list.topLevelItem(1))
    ask("", "new-secret")
    panel.password_button.click()
    panel.list.setCurrentItem(panel.list.topLevelItem(1))
    panel.remove_button.click()
    assert panel.rows() == [("boss", "admin")] and store.check("watcher", "watcher-secret")
    sheet.cancel_button.click()
    assert store.names() == ["boss", "watcher"] and store.check("watcher", "watcher-secret")

    # A new sheet: the engine still refuses to remove the last admin, at Apply; the change stays pending.
    sheet, panel = sheet_with_panel()
    qloop.run(qloop.until(lambda: panel.rows() == [("boss", "admin"), ("watcher", "viewer")]))
    panel.confirm_remove = lambda name: True  # type: ignore[method-assign]
    panel.list.setCurrentItem(panel.list.topLevelItem(0))
    panel.remove_button.click()
    sheet.apply_button.click()
    qloop.run(qloop.until(lambda: not sheet.busy and bool(messages.shown)))
    assert messages.shown[0][0].endswith("Properties: the changes were not applied")
    assert "Boss is the last admin operator" in messages.shown[0][1]
    assert store.names() == ["boss", "watcher"] and len(panel.pending) == 1

    # Replacing the only admin works in one Apply: the new admin is added before the old one is removed.
    ask("chief", "chief-secret", "admin")
    panel.add_button.click()
    panel.list.setCurrentItem(panel.list.topLevelItem(1))
    ask("", "changed-secret")
    panel.password_button.click()  # on the pending add: its password, still not written
    assert panel.rows() == [("watcher", "viewer"), ("chief", "admin")]
    sheet.ok_button.click()
    qloop.run(qloop.until(lambda: not sheet.isVisible() and not sheet.busy))
    assert store.names() == ["chief", "watcher"] and not panel.pending
    assert store.check("chief", "changed-secret") and store.role("chief") == "admin"

    # Roles wait for Apply too; promotions go before demotions, so the admin role can change hands at once.
    sheet, panel = sheet_with_panel()
    qloop.run(qloop.until(lambda: panel.rows() == [("chief", "admin"), ("watcher", "viewer")]))
    panel.ask_role = lambda name, current: {"chief": "poster", "watcher": "admin"}[name]  # type: ignore[method-assign]
    for row in (0, 1):
        panel.list.setCurrentItem(panel.list.topLevelItem(row))
        panel.role_button.click()
    assert panel.rows() == [("chief", "poster"), ("watcher", "admin")] and store.role("watcher") == "viewer"
    sheet.apply_button.click()
    qloop.run(qloop.until(lambda: not sheet.busy and not panel.pending))
    assert (store.role("chief"), store.role("watcher")) == ("poster", "admin")
    panel.ask_role = lambda name, current: "viewer"  # type: ignore[method-assign]
    panel.list.setCurrentItem(panel.list.topLevelItem(1))
    panel.role_button.click()  # the only admin: refused at Apply, the change stays pending
    messages.shown.clear()
    sheet.apply_button.click()
    qloop.run(qloop.until(lambda: not sheet.busy and bool(messages.shown)))
    assert "Watcher is the last admin operator" in messages.shown[0][1] and store.role("watcher") == "admin"
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
    sheet.apply_button.click()
    qloop.run(qloop.until(lambda: bool(messages.shown) and not sheet.busy))
    assert "bad name:colon" in messages.shown[0][1] and panel.rows() == [("bad name:colon", "admin")]
    sheet.reject()
    assert panel.rows() == [] and not panel.pending


def test_without_the_facade_there_is_no_list(qtbot: QtBot, host: LocalEngine, messages: Recorder) -> None:
    sheet = ServerSheet(host.config, "stopped", host.apply_config, TaskRunner(messages), messages)
    qtbot.addWidget(sheet)
    assert sheet.operators_panel is None
