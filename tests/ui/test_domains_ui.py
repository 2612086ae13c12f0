"""Domain sheets and the New SMTP Domain Wizard."""

from __future__ import annotations

from conftest import FakeEngine, QLoop, Recorder
from PySide6.QtWidgets import QWizard
from pytestqt.qtbot import QtBot

from engine.conf.config import Config
from ui.domain_sheet import DomainSheet
from ui.domain_wizard import DomainWizard
from ui.tasks import TaskRunner


def domain(engine: FakeEngine, name: str):
    return next(d for d in engine.config().domains if d.name == name)


def sheet_for(qtbot: QtBot, engine: FakeEngine, messages: Recorder, name: str) -> DomainSheet:
    sheet = DomainSheet(engine.config, domain(engine, name), engine.apply_config, TaskRunner(messages), messages)
    qtbot.addWidget(sheet)
    sheet.show()
    return sheet


def test_remote_sheet_routes_by_smart_host(qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine,
                                           messages: Recorder) -> None:
    sheet = sheet_for(qtbot, fake_engine, messages, "relay.test")
    assert sheet.relay_check.isChecked() and sheet.dns_radio.isChecked()
    assert not sheet.smart_host_edit.isEnabled() and not sheet.apply_button.isEnabled()
    assert sheet.tls_check.isEnabled() and not sheet.tls_check.isChecked()
    sheet.smarthost_radio.setChecked(True)
    assert sheet.smart_host_edit.isEnabled()
    assert not sheet.ok_button.isEnabled()  # a smart host is required
    assert sheet.smart_host_edit.property("invalid") is True
    qtbot.keyClicks(sheet.smart_host_edit, "[192.0.2.7]")
    assert sheet.ok_button.isEnabled() and sheet.apply_button.isEnabled()
    sheet.helo_check.setChecked(True)
    sheet.ok_button.click()
    qloop.run(qloop.until(lambda: bool(fake_engine.applied) and not sheet.isVisible()))
    changed = domain(fake_engine, "relay.test")
    assert (changed.route, changed.smart_host, changed.use_helo) == ("smarthost", "[192.0.2.7]", True)


def test_remote_sheet_requires_tls_and_sets_its_outbound_security(
        qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = sheet_for(qtbot, fake_engine, messages, "relay.test")
    dialog = sheet.security_dialog
    assert dialog.radios["server"].isChecked() and not dialog.user_edit.isEnabled()
    sheet.tls_check.setChecked(True)
    dialog.open()
    dialog.radios["basic"].setChecked(True)
    assert dialog.user_edit.isEnabled() and not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
    qtbot.keyClicks(dialog.user_edit, "partner")
    qtbot.keyClicks(dialog.password_edit, "s3cret")
    assert dialog.password_edit.echoMode() == dialog.password_edit.EchoMode.Password
    dialog.accept()
    dialog.open()
    dialog.radios["anonymous"].setChecked(True)
    dialog.reject()  # Cancel puts back basic with the account
    assert dialog.values() == ("basic", "partner", "s3cret")
    assert sheet.apply_button.isEnabled()
    sheet.ok_button.click()
    qloop.run(qloop.until(lambda: bool(fake_engine.applied) and not sheet.isVisible()))
    changed = domain(fake_engine, "relay.test")
    assert changed.tls_required
    assert (changed.outbound_auth, changed.outbound_user, changed.outbound_password) == ("basic", "partner", "s3cret")


def test_default_sheet_drop_directory(qtbot: QtBot, fake_engine: FakeEngine, messages: Recorder) -> None:
    sheet = sheet_for(qtbot, fake_engine, messages, "example.test")
    assert sheet.tabs.count() == 1
    sheet.drop_edit.setText(str(fake_engine.mailroot / "Pickup"))
    assert not sheet.ok_button.isEnabled()
    assert "Pickup" in sheet.problem_label.text()
    assert sheet.drop_edit.property("invalid") is True
    sheet.drop_edit.setText(str(fake_engine.mailroot / "Elsewhere"))
    assert sheet.ok_button.isEnabled() and sheet.apply_button.isEnabled()


def test_alias_sheet_picks_its_own_drop_directory(qtbot: QtBot, qloop: QLoop, fake_engine: FakeEngine,
                                                  messages: Recorder) -> None:
    sheet = sheet_for(qtbot, fake_engine, messages, "alias.test")
    assert not sheet.dirty() and sheet.ok_button.isEnabled() and not sheet.apply_button.isEnabled()
    root = fake_engine.mailroot
    assert sheet.drop_edit.placeholderText() == str(root / "Drop")  # empty: the default domain's Drop
    assert sheet.drop_where.full == f"Delivered to: {root / 'Drop'}"
    sheet.drop_edit.setText("Drop/alias")  # inside the default domain's Drop
    assert not sheet.ok_button.isEnabled() and sheet.drop_edit.property("invalid") is True
    assert "inside the Drop directory of example.test" in sheet.problem_label.text()
    sheet.drop_edit.setText("AliasDrop")  # relative: inside the Mailroot, by the one rule
    assert sheet.drop_where.full == f"Delivered to: {root / 'AliasDrop'}"
    sheet.grab().save("/tmp/mailroot-alias-sheet.png")
    sheet.ok_button.click()
    qloop.run(qloop.until(lambda: bool(fake_engine.applied) and not sheet.isVisible()))
    assert domain(fake_engine, "alias.test").drop_dir == "AliasDrop"


def run_wizard(qtbot: QtBot, engine: FakeEngine, kind: str, name: str) -> tuple[DomainWizard, list[Config]]:
    wizard = DomainWizard(engine.config)
    qtbot.addWidget(wizard)
    finished: list[Config] = []
    wizard.finished_config.connect(finished.append)
    wizard.show()
    (wizard.types.alias if kind == "alias" else wizard.types.remote).setChecked(True)
    wizard.next()
    qtbot.keyClicks(wizard.names.edit, name)
    return wizard, finished


def test_wizard_adds_remote_domain(qtbot: QtBot, fake_engine: FakeEngine) -> None:
    wizard, finished = run_wizard(qtbot, fake_engine, "remote", "*.Partner.example")
    assert wizard.names.isComplete() and wizard.button(QWizard.WizardButton.FinishButton).isEnabled()
    assert wizard.names.open_properties.isChecked()  # a remote domain needs its route: its sheet follows
    wizard.button(QWizard.WizardButton.FinishButton).click()
    assert len(finished) == 1
    added = finished[0].domains[-1]
    assert (added.name, added.type) == ("*.partner.example", "remote")


def test_wizard_validates_name(qtbot: QtBot, fake_engine: FakeEngine) -> None:
    wizard, finished = run_wizard(qtbot, fake_engine, "alias", "*.wild.example")
    assert not wizard.names.isComplete() and not wizard.names.open_properties.isChecked()
    assert "wildcards" in wizard.names.problem.text()
    wizard.names.edit.setText("ALIAS.test")
    assert not wizard.names.isComplete() and "already exists" in wizard.names.problem.text()
    wizard.names.edit.setText("second.test")
    assert wizard.names.isComplete()
    wizard.names.edit.setText("")
    assert not wizard.names.isComplete() and wizard.names.problem.text() == ""
    assert finished == []
