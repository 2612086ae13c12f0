"""File → Connect to Computer…: address, operator, password and the CA file (as `smtpsvc --connect --cafile`)."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from ui.connect_dialog import ConnectDialog


def test_values_with_and_without_a_ca_file(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = ConnectDialog(["https://mx2.example.test:8443"], "alice")
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    assert ok.isEnabled() and ok.text() == "Connect"
    dialog.password.setText("secret")
    assert dialog.values() == ("https://mx2.example.test:8443", "alice", "secret", "")
    dialog.cafile.setText(f"  {tmp_path / 'ca.pem'}  ")
    assert dialog.values()[3] == str(tmp_path / "ca.pem")
    dialog.address.setCurrentText("mx2.example.test")  # not an address like https://HOST:PORT
    assert not ok.isEnabled()
    dialog.address.setCurrentText("https://mx2.example.test:8443")
    dialog.show()
    labels = {w.text(): w for w in dialog.findChildren(QLabel)}
    assert labels["&CA file:"].buddy() is dialog.cafile  # Alt+C, and no literal '&'
    dialog.grab().save(str(Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path)) / "connect-dialog.png"))
