"""The main window against an in-memory facade: tree, panes, actions, domains, sessions, export, layout."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FakeEngine, QLoop, Recorder
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialogButtonBox, QLabel, QMenu, QToolButton
from pytestqt.qtbot import QtBot

from engine.conf.config import DomainConfig
from engine.events import MessageBadmailed, MessageRemoved, SessionClosed, SessionOpened
from ui.help import HelpWindow, manual_html
from ui.scope import NODE_DESCRIPTIONS, Node
from ui.server_sheet import ServerSheet
from ui.sheet_parts import SubDialog
from ui.tasks import TaskRunner
from ui.tray import TrayNotices, notice_for
from ui.views import ItemView
from ui.window import ManagerWindow


def write_rows(path: str, headers: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([headers, *rows])


@pytest.fixture
def window(qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine, messages: Recorder,
           settings: QSettings) -> Iterator[ManagerWindow]:
    win = ManagerWindow(fake_engine, "testhost", settings, write_rows, messages)
    fake_engine.sink = win.on_engine_events
    win.ops.confirm = lambda title, question: True  # type: ignore[method-assign]
    qtbot.addWidget(win)
    win.show()
    yield win
    qloop.run(win.ops.runner.drain())


def toolbar_click(window: ManagerWindow, action_name: str) -> None:
    button = window.toolbar.widgetForAction(getattr(window.actions_, action_name))
    assert isinstance(button, QToolButton) and button.isEnabled()
    button.click()


def test_tree_and_panes(window: ManagerWindow) -> None:
    tree = window.tree
    assert tree.items[Node.COMPUTER].text(0) == "testhost (local computer)"
    assert tree.items[Node.SERVER].text(0) == "Default SMTP Virtual Server"
    assert [tree.items[Node.SERVER].child(i).text(0) for i in range(9)] == [
        "Domains", "Current Sessions", "Queue", "Pickup", "Drop", "Badmail", "Protocol Log", "Event Viewer",
        "Performance"]
    assert window.node == Node.SERVER
    assert window.children_model.rowCount() == 9
    window.select_node(Node.COMPUTER)
    model = window.servers_model
    assert [model.data(model.index(0, c)) for c in range(4)] == [
        "Default SMTP Virtual Server", "Running", "127.0.0.1", "2525"]
    window.select_node(Node.DOMAINS)
    assert window.stack.currentWidget() is window.panes[Node.DOMAINS]
    assert window.domains_model.rowCount() == 3
    assert window.state_label.text() == "Running"
    assert window.address_label.text() == "Listening on 127.0.0.1:2525"
    assert window.count_label.text() == "3 domains, 0 sessions"


def test_the_server_row_of_the_computer_node_carries_the_servers_verbs(window: ManagerWindow, qloop: QLoop,
                                                                      fake_engine: FakeEngine) -> None:
    window.select_node(Node.COMPUTER)
    a = window.actions_
    assert not a.stop.isEnabled() and not a.properties.isEnabled()  # nothing selected: the computer's own verbs
    window.pane.select_key("server")
    assert not a.start.isEnabled() and a.stop.isEnabled() and a.pause.isEnabled() and a.properties.isEnabled()
    assert [action.text() for action in window.action_menu.actions()][:3] == ["&Start", "S&top", "&Pause"]
    a.stop.trigger()
    qloop.run(qloop.until(lambda: window.state == "stopped"))
    assert a.start.isEnabled() and not a.stop.isEnabled()
    a.properties.trigger()
    assert isinstance(window.ops.sheet, ServerSheet) and window.ops.sheet.isVisible()
    window.ops.sheet.reject()
    assert fake_engine.calls == ["stop"]


def test_the_servers_children_say_what_they_hold(window: ManagerWindow, qtbot: QtBot, qloop: QLoop) -> None:
    from PySide6.QtCore import Qt as QtNs

    from ui.models.nodes import ChildrenModel, NodeRow

    model = window.children_model
    assert model.columns[ChildrenModel.STATUS_COLUMN].title == "Status"

    def status(node: Node) -> str:
        row = model.get(node.value)
        return row.status if row is not None else "?"

    qtbot.waitUntil(lambda: status(Node.DOMAINS) == "3 domains")
    assert status(Node.SESSIONS) == "0 sessions" and status(Node.BADMAIL) == ""  # Badmail not read yet: no guess
    window.on_engine_events([SessionOpened("S1", "127.0.0.1")])
    qtbot.waitUntil(lambda: status(Node.SESSIONS) == "1 session")
    toolbar_click(window, "stop")
    qloop.run(qloop.until(lambda: window.state == "stopped"))
    qtbot.waitUntil(lambda: status(Node.SESSIONS) == "Stopped")
    alone = ChildrenModel()
    alone.sync([NodeRow("badmail", "Badmail", "badmail", "", 5, "4 items", alert=True)])
    assert alone.data(alone.index(0, ChildrenModel.STATUS_COLUMN), QtNs.ItemDataRole.ForegroundRole) is not None


def test_navigation_history(window: ManagerWindow) -> None:
    window.select_node(Node.DOMAINS)
    window.select_node(Node.SESSIONS)
    window.actions_.back.trigger()
    assert window.node == Node.DOMAINS
    window.actions_.forward.trigger()
    assert window.node == Node.SESSIONS
    window.actions_.up.trigger()
    assert window.node == Node.SERVER
    window.panes[Node.SERVER].activated.emit(window.children_model.index(0, 0))
    assert window.node == Node.DOMAINS


def test_start_stop_pause_continue(window: ManagerWindow, fake_engine: FakeEngine, qloop: QLoop) -> None:
    a = window.actions_
    assert not a.start.isEnabled() and a.stop.isEnabled() and a.pause.isEnabled()
    toolbar_click(window, "pause")
    qloop.run(qloop.until(lambda: window.state == "paused"))
    assert a.pause.isChecked() and a.pause.text() == "Continue"
    assert window.tree.items[Node.SERVER].text(0) == "Default SMTP Virtual Server (Paused)"
    toolbar_click(window, "pause")
    qloop.run(qloop.until(lambda: window.state == "started"))
    toolbar_click(window, "stop")
    qloop.run(qloop.until(lambda: window.state == "stopped"))
    assert a.start.isEnabled() and not a.stop.isEnabled() and not a.pause.isEnabled()
    assert window.address_label.text() == "Configured: 127.0.0.1:2525"
    toolbar_click(window, "start")
    qloop.run(qloop.until(lambda: window.state == "started"))
    assert fake_engine.calls == ["pause", "resume", "stop", "start"]


def test_the_stopped_servers_tree_item_shows_its_whole_name_and_state(window: ManagerWindow, qloop: QLoop) -> None:
    toolbar_click(window, "stop")
    qloop.run(qloop.until(lambda: window.state == "stopped"))
    tree = window.tree
    item = tree.items[Node.SERVER]
    assert item.text(0) == "Default SMTP Virtual Server (Stopped)" and item.toolTip(0) == item.text(0)
    left = tree.visualItemRect(item).left()  # after the indentation of its level
    needed = left + tree.iconSize().width() + 8 + tree.fontMetrics().horizontalAdvance(item.text(0))
    assert needed <= tree.viewport().width()  # not cut to "Default SMTP Virtual Serv…"
    assert tree.textElideMode() == Qt.TextElideMode.ElideMiddle  # narrowed by hand: "… (Stopped)" stays


def select_domain(window: ManagerWindow, name: str) -> None:
    window.select_node(Node.DOMAINS)
    window.pane.select_key(name.casefold())
    assert window.pane.selected_keys() == [name.casefold()]


def test_delete_default_domain_is_refused_with_reason(window: ManagerWindow, messages: Recorder,
                                                      fake_engine: FakeEngine) -> None:
    select_domain(window, "example.test")
    assert window.actions_.delete.isEnabled() and not window.actions_.set_default.isEnabled()
    window.actions_.delete.trigger()
    assert messages.shown and messages.shown[0][0] == "Delete"
    assert "The default domain cannot be deleted" in messages.shown[0][1]
    assert fake_engine.applied == []


def test_delete_and_set_default(window: ManagerWindow, qloop: QLoop, fake_engine: FakeEngine) -> None:
    select_domain(window, "alias.test")
    assert window.actions_.set_default.isEnabled()
    window.actions_.set_default.trigger()
    qloop.run(qloop.until(lambda: len(fake_engine.applied) == 1))
    types = {d.name: d.type for d in fake_engine.config().domains}
    assert types == {"example.test": "alias", "alias.test": "default", "relay.test": "remote"}
    model = window.domains_model
    assert model.get("alias.test").type == "default"  # type: ignore[union-attr]
    select_domain(window, "relay.test")
    window.actions_.delete.trigger()
    qloop.run(qloop.until(lambda: window.domains_model.rowCount() == 2))
    assert "relay.test" not in {d.name for d in fake_engine.config().domains}


def test_rename_domain(window: ManagerWindow, qloop: QLoop, fake_engine: FakeEngine) -> None:
    window.ops.ask_text = lambda title, label, text: "partner.test"  # type: ignore[method-assign]
    select_domain(window, "relay.test")
    window.actions_.rename.trigger()
    qloop.run(qloop.until(lambda: window.domains_model.get("partner.test") is not None))
    assert window.domains_model.get("relay.test") is None


def test_properties_open_the_right_sheet(window: ManagerWindow) -> None:
    from ui.domain_sheet import DomainSheet
    from ui.server_sheet import ServerSheet

    window.actions_.properties.trigger()
    assert isinstance(window.ops.sheet, ServerSheet) and window.ops.sheet.isVisible()
    window.ops.sheet.reject()
    select_domain(window, "relay.test")
    window.actions_.properties.trigger()
    assert isinstance(window.ops.sheet, DomainSheet)
    assert window.ops.sheet.windowTitle() == "relay.test Properties"
    window.ops.sheet.reject()


def test_new_domain_wizard_adds_and_selects(window: ManagerWindow, qloop: QLoop, qtbot: QtBot,
                                           fake_engine: FakeEngine) -> None:
    from PySide6.QtWidgets import QWizard

    window.actions_.new_domain.trigger()
    wizard = window.ops.wizard
    assert wizard is not None
    wizard.next()
    qtbot.keyClicks(wizard.names.edit, "new.example")
    wizard.button(QWizard.WizardButton.FinishButton).click()
    qloop.run(qloop.until(lambda: window.domains_model.get("new.example") is not None))
    assert window.node == Node.DOMAINS
    assert window.pane.selected_keys() == ["new.example"]


def test_session_rows_from_events_and_terminate(window: ManagerWindow, qloop: QLoop,
                                                fake_engine: FakeEngine) -> None:
    window.select_node(Node.SESSIONS)
    window.on_engine_events([SessionOpened("S1", "127.0.0.1"), SessionOpened("S2", "127.0.0.9")])
    assert window.sessions_model.rowCount() == 2
    assert window.count_label.text() == "3 domains, 2 sessions"
    assert window.actions_.terminate_all.isEnabled()
    window.pane.select_key("S2")
    assert window.actions_.delete.isEnabled()  # Del terminates the selected sessions
    window.actions_.delete.trigger()
    window.actions_.terminate_all.trigger()
    qloop.run(window.ops.runner.drain())
    assert fake_engine.calls == ["terminate S2", "terminate all"]
    window.on_engine_events([SessionClosed("S1", "127.0.0.1", 0)])
    assert [s.session_id for s in window.sessions_model.rows()] == ["S2"]


def test_domain_columns_fit_their_contents_on_the_first_load(qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine,
                                                             messages: Recorder, settings: QSettings) -> None:
    hosts = ("relay1.partner.example.com:25", "relay1.partner.example.com:2525")  # alike but for their ends
    config = fake_engine.config()
    fake_engine._config = replace(config, domains=(*config.domains, *(
        DomainConfig(f"partner{number}.test", "remote", route="smarthost", smart_host=host)
        for number, host in enumerate(hosts))))
    win = ManagerWindow(fake_engine, "testhost", settings, write_rows, messages)
    qtbot.addWidget(win)
    win.show()
    win.select_node(Node.DOMAINS)
    view = win.pane.detail
    assert isinstance(view, ItemView)
    route = [column.title for column in win.domains_model.columns].index("Route")
    whole = view.fontMetrics().horizontalAdvance(f"Smart host {hosts[1]}")
    qtbot.waitUntil(lambda: view.header().sectionSize(route) >= whole)  # both smart hosts read whole
    qloop.run(win.ops.runner.drain())


def test_export_list(window: ManagerWindow, tmp_path: Path) -> None:
    window.select_node(Node.DOMAINS)
    target = tmp_path / "domains.csv"
    window.export_list(str(target))
    rows = list(csv.reader(target.read_text(encoding="utf-8").splitlines()))
    assert rows[0] == ["Domain Name", "Type", "Relay", "Route", "TLS Required"]
    assert rows[1][:2] == ["example.test", "Local (Default)"]  # in the view's order (by type)
    assert len(rows) == 4


def test_view_modes_and_layout_are_remembered(qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine,
                                              messages: Recorder, settings: QSettings) -> None:
    first = ManagerWindow(fake_engine, "h", settings, write_rows, messages)
    qtbot.addWidget(first)
    first.actions_.view_mode["large"].trigger()
    first.panes[Node.DOMAINS].detail.setColumnWidth(0, 333)
    first.actions_.show_toolbar.setChecked(False)
    first.close()
    second = ManagerWindow(fake_engine, "h", settings, write_rows, messages)
    qtbot.addWidget(second)
    assert second.panes[Node.DOMAINS].mode == "large"
    assert second.actions_.view_mode["large"].isChecked()
    assert second.panes[Node.DOMAINS].detail.columnWidth(0) == 333
    assert not second.actions_.show_toolbar.isChecked()
    second.close()


def test_connect_and_replicate_ask_the_application(window: ManagerWindow) -> None:
    asked: list[str] = []
    window.connect_requested.connect(lambda: asked.append("connect"))
    window.replicate_requested.connect(lambda: asked.append("replicate"))
    assert window.actions_.connect.isEnabled()
    window.actions_.connect.trigger()
    window.actions_.replicate.trigger()
    assert asked == ["connect", "replicate"]
    assert window.actions_.replicate in window.all_tasks_menu.actions()
    assert window.all_tasks_menu in window.node_actions(Node.SERVER)


def test_mmc_habits_title_path_tree_order_status_fields(window: ManagerWindow) -> None:
    window.select_node(Node.QUEUE)
    assert window.windowTitle() == ("SMTP Service Manager - [testhost (local computer)\\Default SMTP Virtual "
                                    "Server\\Queue]")
    window.select_node(Node.SERVER)
    pane = window.panes[Node.SERVER]
    proxy = pane.proxy  # type: ignore[union-attr]
    shown = [proxy.data(proxy.index(row, 0)) for row in range(proxy.rowCount())]
    assert shown[:6] == ["Domains", "Current Sessions", "Queue", "Pickup", "Drop", "Badmail"]  # not A–Z
    assert window.state_label.frameShadow() == QLabel.Shadow.Sunken
    window.select_node(Node.QUEUE)
    assert window.description_bar.text().startswith(  # MMC's description bar: the node's path
        "<b>Default SMTP Virtual Server\\Queue</b> — ")
    bar = window.description_bar
    assert bar.toolTip() == ""  # it fits
    bar.resize(320, bar.height())  # a narrow pane: the description is cut with "…", the path stays whole
    assert bar.text().startswith("<b>Default SMTP Virtual Server\\Queue</b>") and bar.text().endswith("…")
    assert bar.toolTip() == "Default SMTP Virtual Server\\Queue — " + NODE_DESCRIPTIONS[Node.QUEUE]
    window.actions_.show_description.setChecked(False)
    assert window.description_bar.isHidden()
    drop = window.panes[Node.DROP].detail
    assert isinstance(drop, ItemView) and drop.empty_text.startswith("No message has been delivered")
    assert not window.actions_.show_tree.isIconVisibleInMenu()  # its check shows, not a faint icon frame


def shown_menu(window: ManagerWindow) -> list[str]:
    """The texts of the context menu just popped up (separators as "-"), and closes it."""
    [menu] = [m for m in window.findChildren(QMenu) if m.isVisible()]
    texts = [action.text().replace("&", "") or "-" for action in menu.actions()]
    menu.close()
    return texts


def test_context_menus_carry_view_new_window_and_help_as_in_mmc(window: ManagerWindow) -> None:
    window.select_node(Node.QUEUE)
    item = window.tree.currentItem()
    window.tree.customContextMenuRequested.emit(window.tree.visualItemRect(item).center())
    texts = shown_menu(window)
    assert texts[-4:] == ["View", "New Window from Here", "-", "Help Topics"]
    view = window.view_submenu.actions()
    assert [a.text().replace("&", "") for a in view if a.text()] == [
        "Large Icons", "Small Icons", "List", "Detail", "Add/Remove Columns…", "Customize…"]
    window.select_node(Node.DOMAINS)  # the list's empty part: the node's menu with View ▸ and Help
    window.pane.detail.customContextMenuRequested.emit(QPoint(5, 200))
    assert shown_menu(window)[-3:] == ["View", "-", "Help Topics"]
    window.pane.select_key("relay.test")
    window.pane.detail.customContextMenuRequested.emit(QPoint(5, 5))
    texts = shown_menu(window)
    assert "Properties\tAlt+Enter" in texts and "View" not in texts  # an item's verbs; Windows' "Alt+Enter"
    assert QKeySequence("Alt+Enter") in window.actions_.properties.shortcuts()


def test_f1_opens_the_help_of_the_node_and_of_the_sheet_page(window: ManagerWindow, qtbot: QtBot,
                                                              fake_engine: FakeEngine, messages: Recorder) -> None:
    manual = manual_html()
    for node in Node:
        assert f'<a name="{node.value}">' in manual, node  # every node has its section
    window.select_node(Node.QUEUE)
    assert window.actions_.help.shortcut() == QKeySequence(QKeySequence.StandardKey.HelpContents)
    window.actions_.help.trigger()
    helper = next(w for w in window.findChildren(HelpWindow) if w.isVisible())
    assert helper.topic == "queue" and "Held for ETRN" in helper.browser.toPlainText()
    sheet = ServerSheet(fake_engine.config, "started", fake_engine.apply_config, TaskRunner(messages), messages)
    qtbot.addWidget(sheet)
    for index in range(sheet.tabs.count()):
        sheet.tabs.setCurrentIndex(index)
        assert f'<a name="{sheet.help_topic()}">' in manual
    sheet.tabs.setCurrentIndex(3)
    sheet.buttons.button(QDialogButtonBox.StandardButton.Help).click()
    assert helper.topic == "sheet-delivery"
    subs = sheet.findChildren(SubDialog)  # Relay…, Outbound Security…: IIS's dialogs have Help too
    assert subs and all(sub.buttons.button(QDialogButtonBox.StandardButton.Help) is not None for sub in subs)
    sheet.tabs.setCurrentIndex(1)
    [relay] = [sub for sub in subs if sub.windowTitle() == "Relay Restrictions"]
    relay.buttons.button(QDialogButtonBox.StandardButton.Help).click()
    assert helper.topic == "sheet-access"
    helper.close()


def test_about_names_the_versions_and_places_and_copies_them(qtbot: QtBot, tmp_path: Path) -> None:
    from PySide6.QtWidgets import QApplication

    from ui.about import AboutDialog

    dialog = AboutDialog(str(tmp_path / "Mailroot"), str(tmp_path / "smtpsvc.toml"))
    qtbot.addWidget(dialog)
    text = dialog.text()
    assert text.startswith("smtpsvc: ") and "Python: 3." in text and "Qt / PySide6: 6." in text
    assert f"Mailroot: {tmp_path / 'Mailroot'}" in text and f"Configuration: {tmp_path / 'smtpsvc.toml'}" in text
    dialog.copy()
    assert QApplication.clipboard().text() == text


def test_new_remote_domain_opens_its_properties(window: ManagerWindow, qtbot: QtBot, qloop: QLoop) -> None:
    from PySide6.QtWidgets import QWizard

    from ui.domain_sheet import DomainSheet

    window.select_node(Node.DOMAINS)
    window.ops.new_domain()
    wizard = window.ops.wizard
    assert wizard is not None
    wizard.types.remote.setChecked(True)
    wizard.next()
    qtbot.keyClicks(wizard.names.edit, "partner.example")
    wizard.button(QWizard.WizardButton.FinishButton).click()
    qloop.run(qloop.until(lambda: isinstance(window.ops.sheet, DomainSheet) and window.ops.sheet.isVisible()))
    assert window.pane.selected_keys() == ["partner.example"]
    window.ops.sheet.reject()  # type: ignore[union-attr]


def test_customize_view_shows_and_hides_parts_and_is_remembered(qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine,
                                                                messages: Recorder, settings: QSettings) -> None:
    first = ManagerWindow(fake_engine, "h", settings, write_rows, messages)
    qtbot.addWidget(first)
    first.show()
    dialog = first.customize()  # View ▸ Customize…
    assert first.actions_.customize in first.menuBar().actions()[2].menu().actions()
    assert all(box.isChecked() for box in dialog.boxes.values())
    dialog.boxes["Console tree"].setChecked(False)
    dialog.boxes["Status bar"].setChecked(False)
    assert first.tree.isHidden() and first.statusBar().isHidden()  # at once, not on OK
    assert not first.actions_.show_tree.isChecked()  # the View menu's check follows
    first.actions_.show_description.setChecked(False)  # and the dialog follows the menu
    assert not dialog.boxes["Description bar"].isChecked() and first.description_bar.isHidden()
    dialog.grab().save(str(settings.fileName()) + ".customize.png")
    dialog.accept()
    first.close()
    second = ManagerWindow(fake_engine, "h", settings, write_rows, messages)
    qtbot.addWidget(second)
    second.show()
    assert second.tree.isHidden() and second.statusBar().isHidden() and second.description_bar.isHidden()
    assert second.toolbar.isVisible()
    second.close()


def test_tray_notices_are_off_by_default_and_tell_badmail_and_returned_mail(window: ManagerWindow,
                                                                           settings: QSettings) -> None:
    tray = window.tray
    assert not window.actions_.tray_notices.isChecked() and not tray.enabled
    assert window.actions_.tray_notices.isEnabled() == TrayNotices.available()  # no tray: greyed, and says why
    window.on_engine_events([MessageBadmailed("B1", "no recipient", "pickup")])
    assert tray.shown == []  # off
    window.actions_.tray_notices.setChecked(True)
    assert tray.enabled and settings.value("view/tray", type=bool)
    window.on_engine_events([MessageRemoved("Q1", "delivered")])
    assert tray.shown == []  # nothing worth a notice
    window.on_engine_events([MessageBadmailed("B2", "hop count   exceeded", "pickup"),
                             MessageRemoved("Q2", "returned")])
    assert tray.shown == [("SMTP Service: Badmail and delivery failures",
                           "New Badmail: hop count exceeded\n"
                           "A message could not be delivered and was returned to its sender")]


def test_tray_notice_texts() -> None:
    assert notice_for([]) is None
    assert notice_for([MessageRemoved("Q", "returned"), MessageRemoved("R", "returned")]) == (
        "SMTP Service: Delivery failure", "2 messages could not be delivered and were returned to their senders")
    assert notice_for([MessageBadmailed("A", "x", "smtp"), MessageBadmailed("B", "y", "smtp")]) == (
        "SMTP Service: Badmail", "2 new Badmail items")
