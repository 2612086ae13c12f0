"""The virtual server's property sheet: every option has a field; change, Apply, OK, Cancel, invalid input."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FakeEngine, QLoop, Recorder
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog, QDialogButtonBox
from pytestqt.qtbot import QtBot

from engine.conf.options import OPTIONS, Option
from engine.errors import BindError
from ui.option_fields import DurationField, EntryDialog, IntField, IntListField, LimitField, StrListField, TextField
from ui.server_sheet import ServerSheet
from ui.sheet_parts import SubDialog
from ui.tasks import TaskRunner


def make_sheet(qtbot: QtBot, engine: FakeEngine, messages: Recorder) -> ServerSheet:
    sheet = ServerSheet(engine.config, "started", engine.apply_config, TaskRunner(messages), messages)
    qtbot.addWidget(sheet)
    sheet.show()
    return sheet


def test_every_option_has_a_placed_field(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    assert set(sheet.fields) == {option.name for option in OPTIONS}
    assert set(sheet.where) >= {option.name for option in OPTIONS}
    from ui.option_fields import LABELS

    assert {option.name for option in OPTIONS if option.type != "int_list"} <= set(LABELS)  # never "Admin tls key:"
    assert [sheet.tabs.tabText(i) for i in range(sheet.tabs.count())] == [
        "General", "Access", "Messages", "Delivery", "Security"]
    size = sheet.fields["max_message_size_kb"]
    assert isinstance(size, LimitField)
    assert (size.spin.maximum(), size.value()) == (4_194_304, 2048)
    assert "MaxMessageSize" in size.spin.toolTip()


def test_opens_clean_with_apply_disabled(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    assert not sheet.dirty()
    assert sheet.ok_button.isEnabled() and not sheet.apply_button.isEnabled()
    assert sheet.problems == []


def test_apply_and_ok(qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    size = sheet.fields["max_message_size_kb"]
    assert isinstance(size, LimitField)
    size.spin.setValue(1024)
    assert sheet.apply_button.isEnabled()
    sheet.apply_button.click()

    async def applied() -> None:
        await qloop.until(lambda: len(fake_engine.applied) == 1 and not sheet.busy)

    qloop.run(applied())
    assert fake_engine.config().server.max_message_size_kb == 1024
    assert fake_engine.config().domains == fake_engine.applied[0].domains  # the rest is untouched
    assert not sheet.apply_button.isEnabled() and sheet.isVisible()
    size.check.setChecked(False)  # no limit
    sheet.ok_button.click()
    qloop.run(qloop.until(lambda: len(fake_engine.applied) == 2 and not sheet.isVisible()))
    assert fake_engine.config().server.max_message_size_kb == 0
    assert messages.shown == []


def test_cancel_applies_nothing(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    sheet.fields["max_recipients"].set_value(5)
    sheet.cancel_button.click()
    assert not sheet.isVisible() and fake_engine.applied == []


def test_invalid_input_is_marked_and_blocks_ok(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    ndr = sheet.fields["ndr_copy_to"]
    assert isinstance(ndr, TextField)
    qtbot.keyClicks(ndr.edit, "postmaster")
    assert ndr.problem == "'postmaster' is not a mail address (user@domain)"
    assert ndr.edit.property("invalid") is True and "not a mail address" in ndr.edit.toolTip()
    assert not sheet.ok_button.isEnabled() and not sheet.apply_button.isEnabled()
    assert "Messages › Send copy of Non-Delivery Report to: 'postmaster' is not" in sheet.problem_label.text()
    qtbot.keyClicks(ndr.edit, "@example.test")
    assert ndr.problem is None and sheet.ok_button.isEnabled() and sheet.apply_button.isEnabled()
    assert not sheet.problem_label.isVisibleTo(sheet)


def test_cross_field_problem(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    session = sheet.fields["max_session_size_kb"]
    assert isinstance(session, LimitField)
    session.spin.setValue(100)
    assert session.problem == "100 KB is less than the message size limit (2048 KB)"
    assert session.spin.property("invalid") is True
    assert not sheet.ok_button.isEnabled()


def test_name_and_lists(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    sheet.name_edit.clear()
    assert not sheet.ok_button.isEnabled() and "Name:" in sheet.problem_label.text()
    sheet.name_edit.setText("Lab relay")
    listen = sheet.fields["listen"]
    assert isinstance(listen, StrListField)
    listen.list.addItem("localhost:99999")  # (as a hand-edited file could hold it)
    listen.changed.emit()
    assert listen.problem is not None and "port" in listen.problem
    assert "Advanced › Identities" in sheet.problem_label.text()
    listen.list.setCurrentRow(1)
    listen.list.currentItem().setText("127.0.0.2:2526")
    listen.changed.emit()
    assert sheet.problems == []
    assert sheet.candidate().server.listen == ("127.0.0.1:2525", "127.0.0.2:2526")
    assert sheet.candidate().name == "Lab relay"
    assert sheet.listen_summary.text() == "127.0.0.1:2525, 127.0.0.2:2526"
    retries = sheet.fields["retry_intervals_min"]
    assert isinstance(retries, IntListField)
    assert retries.value() == (15, 30, 60, 240)


def test_sub_dialog_cancel_restores(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    dialog = next(d for d in sheet.findChildren(SubDialog) if d.windowTitle() == "Advanced Delivery")
    dialog.open()
    smart = sheet.fields["smart_host"]
    assert isinstance(smart, TextField)
    smart.edit.setText("bad host!")
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert not ok.isEnabled()
    dialog.reject()
    assert smart.value() == "" and smart.problem is None and not sheet.dirty()


def test_failed_apply_keeps_sheet_and_says_why(qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine,
                                               messages: Recorder) -> None:
    async def refuse(config: object) -> None:
        raise BindError("cannot listen on 127.0.0.1:25: Permission denied")

    sheet = ServerSheet(fake_engine.config, "started", refuse, TaskRunner(messages), messages)
    qtbot.addWidget(sheet)
    sheet.show()
    sheet.fields["max_recipients"].set_value(7)
    sheet.ok_button.click()
    qloop.run(qloop.until(lambda: bool(messages.shown)))
    assert sheet.isVisible() and sheet.dirty() and sheet.apply_button.isEnabled()
    title, text = messages.shown[0]
    assert "not applied" in title and text == "Cannot listen on 127.0.0.1:25: Permission denied"


def test_every_shown_control_works(qtbot: QtBot, fake_engine: FakeEngine,
                                                    messages: Recorder) -> None:
    from PySide6.QtWidgets import QPushButton

    sheet = make_sheet(qtbot, fake_engine, messages)
    buttons = {b.text().replace("&", ""): b for b in sheet.findChildren(QPushButton)}
    assert buttons["Properties…"].isEnabled()  # logging, built with issue 13
    for text in ("Authentication…", "Certificate…", "Communication…", "Connection…"):  # built with issue 4
        assert buttons[text].isEnabled()
    assert buttons["Relay…"].isEnabled() and buttons["Advanced…"].isEnabled()
    assert buttons["Outbound Security…"].isEnabled()
    from PySide6.QtWidgets import QWidget

    dead = [w for w in sheet.findChildren(QWidget) if w.toolTip().startswith("Not available yet")]
    assert dead == []  # no dead look-alike controls: what is not built is not shown
    assert sheet.fields["outbound_password"].edit.echoMode() == sheet.fields["outbound_password"].edit.EchoMode.Password


def test_badmail_dir_has_browse(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder, tmp_path: Path) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    field = sheet.fields["badmail_dir"]
    assert isinstance(field, TextField) and field.widget is not field.edit  # edit + Browse… button
    field.set_value(str(tmp_path / "Mailroot" / "Queue"))
    assert field.problem == "must not be the Mailroot's Queue directory"


def test_file_and_folder_fields_have_browse(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder,
                                           tmp_path: Path) -> None:
    from PySide6.QtWidgets import QFileDialog, QPushButton

    sheet = make_sheet(qtbot, fake_engine, messages)
    for name in ("users_file", "tls_certificate", "tls_key", "outbound_tls_ca_file", "operators_file", "badmail_dir",
                 "log_dir"):
        field = sheet.fields[name]
        assert isinstance(field, TextField) and field.widget is not field.edit, name
    pem = tmp_path / "mx.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")

    def choose() -> None:
        dialog = next((w for w in QApplication.topLevelWidgets() if isinstance(w, QFileDialog) and w.isVisible()),
                      None)
        if dialog is None:  # exec() has not shown it yet
            QTimer.singleShot(10, choose)
            return
        dialog.selectFile(str(pem))
        dialog.accept()

    certificate = sheet.fields["tls_certificate"]
    QTimer.singleShot(0, choose)
    certificate.widget.findChild(QPushButton).click()  # modal: returns when the dialog is closed
    assert certificate.value() == str(pem) and sheet.dirty()


def test_outbound_security_chooses_anonymous_or_basic(qtbot: QtBot, fake_engine: FakeEngine,
                                                      messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    [dialog] = [d for d in sheet.findChildren(SubDialog) if d.windowTitle() == "Outbound Security"]
    choice = sheet.outbound_auth
    user, password = sheet.fields["outbound_user"], sheet.fields["outbound_password"]
    assert isinstance(user, TextField) and isinstance(password, TextField)
    dialog.open()
    choice.sync()
    assert choice.anonymous.isChecked() and not user.edit.isEnabled() and not password.edit.isEnabled()
    choice.basic.setChecked(True)
    assert user.edit.isEnabled() and password.edit.isEnabled()
    qtbot.keyClicks(user.edit, "relay-account")
    qtbot.keyClicks(password.edit, "s3cret")
    dialog.accept()
    candidate = sheet.candidate().server
    assert (candidate.outbound_user, candidate.outbound_password) == ("relay-account", "s3cret")
    dialog.open()
    choice.sync()
    assert choice.basic.isChecked()
    choice.anonymous.setChecked(True)  # the account goes…
    assert sheet.candidate().server.outbound_user == "" and not user.edit.isEnabled()
    dialog.reject()  # …and Cancel brings it back
    choice.sync()
    assert user.value() == "relay-account" and choice.basic.isChecked()


def test_logging_group_and_its_properties(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    assert sheet.where["log_enabled"] == sheet.where["log_format"] == "General"
    assert {sheet.where[n] for n in ("log_period", "log_max_size_mb", "log_local_time", "log_dir", "log_fields",
                                     "metrics_listen")} == {"Logging Properties"}
    sheet.grab().save("/tmp/monitor-sheet-general.png")
    dialog = next(d for d in sheet.findChildren(SubDialog) if d.windowTitle() == "Logging Properties")
    dialog.show()
    dialog.grab().save("/tmp/monitor-logging-properties.png")
    sheet.fields["log_fields"].set_value(("date", "time", "cs-nonsense"))
    sheet.revalidate()
    assert sheet.problems and "cs-nonsense" in str(sheet.problems)
    sheet.fields["log_fields"].set_value(("date", "time", "cs-method"))
    sheet.fields["log_format"].set_value("ncsa")
    sheet.revalidate()
    assert sheet.problems == [] and sheet.dirty()


def _press_on_dialog(qtbot: QtBot, keys: str, then: Qt.Key) -> list[str]:
    """When the modal Add/Edit dialog shows: type ``keys``, note its problem line, press ``then``."""
    seen: list[str] = []

    def act() -> None:
        box = next((w for w in QApplication.topLevelWidgets() if isinstance(w, EntryDialog) and w.isVisible()),
                   None)
        if box is None:  # exec() has not shown it yet
            QTimer.singleShot(10, act)
            return
        box.edit.clear()
        qtbot.keyClicks(box.edit, keys)
        seen.append(box.problem.text())
        qtbot.keyClick(box.edit, then)

    QTimer.singleShot(0, act)
    return seen


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.type == "str_list"], ids=lambda o: o.name)
def test_add_then_escape_changes_nothing(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder,
                                         option: Option) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    field = sheet.fields[option.name]
    assert isinstance(field, StrListField)
    before = field.value()
    seen = _press_on_dialog(qtbot, "", Qt.Key.Key_Escape)
    field.add_button.click()  # modal: returns when the dialog is closed
    assert seen == [""]
    assert field.value() == before and not field.dirty and not sheet.dirty()
    assert not sheet.apply_button.isEnabled()
    box = field.dialog()
    assert box.edit.text() == "" and box.edit.placeholderText().startswith("e.g. ")
    assert not box.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()  # empty: nothing to add
    box.edit.setText("not an entry!")
    assert box.problem.text() and not box.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    box.accept()  # (Enter) an invalid entry cannot be accepted
    assert box.result() != QDialog.DialogCode.Accepted and box.entry() == "not an entry!"


def test_add_and_edit_a_valid_entry(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    relay = sheet.fields["relay_allowed"]
    assert isinstance(relay, StrListField)
    _press_on_dialog(qtbot, "192.0.2.0/24", Qt.Key.Key_Return)
    relay.add_button.click()
    assert relay.value() == ("192.0.2.0/24",) and sheet.apply_button.isEnabled()
    assert sheet.candidate().server.relay_allowed == ("192.0.2.0/24",)
    seen = _press_on_dialog(qtbot, "192.0.2.0/24", Qt.Key.Key_Escape)
    relay.add_button.click()
    assert seen == ["192.0.2.0/24 is already in the list"] and relay.value() == ("192.0.2.0/24",)
    relay.list.setCurrentRow(0)
    _press_on_dialog(qtbot, "198.51.100.7", Qt.Key.Key_Return)
    relay.edit_button.click()
    assert relay.value() == ("198.51.100.7",)
    _press_on_dialog(qtbot, "", Qt.Key.Key_Escape)
    relay.edit_button.click()
    assert relay.value() == ("198.51.100.7",)


def test_ports_are_never_digit_grouped(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    port = sheet.fields["outbound_port"]
    assert isinstance(port, IntField) and not port.spin.isGroupSeparatorShown()
    port.spin.setValue(2525)
    assert port.spin.text() == "2525"


def test_durations_in_iis_units(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder, tmp_path: Path) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    shown = {}
    for name in ("delay_notification_min", "expiration_min", "connection_timeout", "outbound_timeout"):
        field = sheet.fields[name]
        assert isinstance(field, DurationField)
        shown[name] = (field.spin.value(), field.combo.currentText())
    assert shown == {"delay_notification_min": (12, "Hours"), "expiration_min": (2, "Days"),
                     "connection_timeout": (10, "Minutes"), "outbound_timeout": (10, "Minutes")}
    expiration = sheet.fields["expiration_min"]
    assert isinstance(expiration, DurationField) and not sheet.dirty()
    expiration.combo.setCurrentIndex(expiration.combo.findText("Hours"))  # as IIS: 2 Days → 2 Hours
    assert expiration.value() == 120 and sheet.apply_button.isEnabled()
    assert sheet.candidate().server.expiration_min == 120
    timeout = sheet.fields["connection_timeout"]
    assert isinstance(timeout, DurationField)
    timeout.load(45)  # not a whole number of minutes: shown in seconds
    assert (timeout.spin.value(), timeout.combo.currentText()) == (45, "Seconds")
    sheet.tabs.setCurrentIndex(sheet.tabs.indexOf(next(sheet.tabs.widget(i) for i in range(sheet.tabs.count())
                                                       if sheet.tabs.tabText(i) == "Delivery")))
    sheet.grab().save(str(tmp_path / "delivery.png"))


def test_every_label_and_button_has_its_own_accelerator(qtbot: QtBot, fake_engine: FakeEngine,
                                                        messages: Recorder) -> None:
    from PySide6.QtWidgets import QAbstractButton, QLabel

    sheet = make_sheet(qtbot, fake_engine, messages)
    pages = [sheet.tabs.widget(i) for i in range(sheet.tabs.count())] + sheet.findChildren(SubDialog)
    for page in pages:
        assert page is not None
        texts = [w.text() for w in page.findChildren(QAbstractButton) if w.text() and w.isVisibleTo(page)
                 and not isinstance(w.parentWidget(), QDialogButtonBox)]
        texts += [w.text() for w in page.findChildren(QLabel) if w.buddy() is not None]
        letters = [t.replace("&&", "")[t.replace("&&", "").index("&") + 1].lower() for t in texts
                   if "&" in t.replace("&&", "")]
        unmarked = [t for t in texts if "&" not in t.replace("&&", "")]
        assert len(unmarked) <= max(0, len(texts) - 30), (page, unmarked)  # 26 letters + digits, then none
        assert len(letters) == len(set(letters)), (page, sorted(letters))


def test_access_page_says_what_is_set(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = make_sheet(qtbot, fake_engine, messages)
    summaries = {name: label.text() for name, label in sheet.summaries.items()}
    assert summaries == {"access": "Anonymous.", "secure": "No certificate: STARTTLS is not offered.",
                         "connection": "Every computer may connect.",
                         "relay": "Relay: authenticated users (the list is empty)."}
    sheet.fields["auth_basic"].set_value(True)
    sheet.fields["relay_allowed"].set_value(("192.0.2.0/24", "198.51.100.7"))
    sheet.fields["relay_allowed"].changed.emit()
    assert sheet.summaries["access"].text() == "Anonymous and Basic authentication (after STARTTLS)."
    assert sheet.summaries["relay"].text() == "Relay: the 2 listed computers and authenticated users."


def test_whats_this_explains_each_field(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    from PySide6.QtWidgets import QLabel, QWhatsThis

    sheet = make_sheet(qtbot, fake_engine, messages)
    size = sheet.fields["max_message_size_kb"]
    assert isinstance(size, LimitField)
    assert size.spin.whatsThis() == size.spin.toolTip() and "MaxMessageSize" in size.spin.whatsThis()
    labels = [label for label in sheet.findChildren(QLabel) if label.buddy() is not None and label.buddy().whatsThis()]
    assert labels and all(label.whatsThis() == label.buddy().whatsThis() for label in labels)  # the label says it too
    assert sheet.windowFlags() & Qt.WindowType.WindowContextHelpButtonHint
    assert sheet.whats_this_button.parent() is not None and sheet.whats_this_button.isVisible()
    assert sheet.whats_this_key.key().toString() == "Shift+F1"
    sheet.whats_this_key.activated.emit()
    assert QWhatsThis.inWhatsThisMode()
    QWhatsThis.leaveWhatsThisMode()
    sheet.whats_this_button.click()
    assert QWhatsThis.inWhatsThisMode()
    QWhatsThis.leaveWhatsThisMode()


def test_identities_are_an_address_table(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder,
                                         tmp_path: Path) -> None:
    from ui.option_fields import IdentitiesField

    sheet = make_sheet(qtbot, fake_engine, messages)
    listen = sheet.fields["listen"]
    assert isinstance(listen, IdentitiesField)
    listen.set_value(("0.0.0.0:25", "[::1]:2525", "127.0.0.1:587"))
    rows = [(listen.table.topLevelItem(i).text(0), listen.table.topLevelItem(i).text(1))
            for i in range(listen.table.topLevelItemCount())]
    assert rows == [("(All Unassigned)", "25"), ("::1", "2525"), ("127.0.0.1", "587")]
    assert not listen.edit_button.isEnabled() and not listen.remove_button.isEnabled()
    listen.table.setCurrentItem(listen.table.topLevelItem(1))  # select the IPv6 identity in the table
    assert listen.edit_button.isEnabled() and listen.remove_button.isEnabled()
    listen.remove_button.click()
    assert listen.value() == ("0.0.0.0:25", "127.0.0.1:587") and listen.table.topLevelItemCount() == 2
    listen.list.addItem("localhost:99999")  # (as a hand-edited file could hold it): shown as it is
    listen.changed.emit()
    assert listen.table.topLevelItem(2).text(0) == "localhost:99999" and listen.problem is not None
    dialog = next(d for d in sheet.findChildren(SubDialog) if d.windowTitle() == "Advanced")
    dialog.show()
    dialog.grab().save(str(tmp_path / "identities.png"))
