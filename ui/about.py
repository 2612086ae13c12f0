"""Help ▸ About: the version and where things are, with a Copy button for a support request."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import QApplication, QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout, QWidget


def version() -> str:
    try:
        return metadata.version("smtpsvc")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def about_lines(mailroot: str, config: str) -> list[tuple[str, str]]:
    return [("smtpsvc", version()), ("Python", platform.python_version()),
            ("Qt / PySide6", f"{qVersion()} / {PySide6.__version__}"), ("Platform", f"{platform.platform()} "
            f"({QApplication.platformName()})"), ("Configuration", config or "(none: defaults)"),
            ("Mailroot", mailroot), ("Executable", sys.executable)]


class AboutDialog(QDialog):
    def __init__(self, mailroot: str, config: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About smtpsvc")
        self.lines = about_lines(mailroot, config)
        title = QLabel("<b>SMTP Service Manager</b> — smtpsvc, the SMTP service of IIS 4.0–6.0 re-created in "
                       "Python: an SMTP server and relay with the IIS Mailroot.")
        title.setWordWrap(True)
        body = QLabel("<table>" + "".join(f"<tr><td><b>{name}:</b>&nbsp;</td><td>{text}</td></tr>"
                                          for name, text in self.lines) + "</table>")
        body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        copy = QPushButton("&Copy")
        copy.setToolTip("Copy these lines, for a support request")
        copy.clicked.connect(self.copy)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(body)
        layout.addWidget(buttons)
        self.setMinimumWidth(520)

    def text(self) -> str:
        return "\n".join(f"{name}: {text}" for name, text in self.lines)

    def copy(self) -> None:
        QApplication.clipboard().setText(self.text())
