"""All Tasks → Replicate Configuration…: the peers to copy this server's settings to, and what became of each."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class ReplicateDialog(QDialog):
    """``run_requested(peers, operator, password, dry_run)``; the application answers with ``show``."""

    run_requested = Signal(list, str, str, bool)

    def __init__(self, server_name: str, peers: list[str], user: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Replicate Configuration")
        layout = QVBoxLayout(self)
        intro = QLabel(f"Copy the settings of <b>{server_name}</b> that are not specific to this computer — "
                       "domains, relay and connection rules, limits, delivery settings — to other servers. "
                       "Local paths, addresses, certificates, keys and passwords are never copied.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.peers = QPlainTextEdit("\n".join(peers))
        self.peers.setPlaceholderText("https://mx2.example.com:8443  (one per line)")
        self.peers.setFixedHeight(80)
        self.user = QLineEdit(user)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow("&Servers:", self.peers)
        form.addRow("&Operator:", self.user)
        form.addRow("&Password:", self.password)
        layout.addLayout(form)
        self.results = QPlainTextEdit()
        self.results.setReadOnly(True)
        self.results.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.results.setPlaceholderText("Show Differences first: each server's changes are listed here.")
        layout.addWidget(self.results, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.preview = QPushButton("Show &Differences")
        self.replicate = QPushButton("&Replicate")
        buttons.addButton(self.preview, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.replicate, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.preview.clicked.connect(lambda: self._ask(dry_run=True))
        self.replicate.clicked.connect(lambda: self._ask(dry_run=False))
        self.resize(560, 460)

    def _ask(self, *, dry_run: bool) -> None:
        peers = [line.strip() for line in self.peers.toPlainText().splitlines() if line.strip()]
        if not peers:
            self.results.setPlainText("Name at least one server (https://HOST:PORT of its admin server).")
            return
        self.busy(True)
        self.run_requested.emit(peers, self.user.text().strip(), self.password.text(), dry_run)

    def busy(self, busy: bool) -> None:
        for button in (self.preview, self.replicate):
            button.setEnabled(not busy)
        if busy:
            self.results.setPlainText("Working…")

    def show_outcome(self, text: str) -> None:
        """Show the outcome (the dialog itself is shown with exec/open)."""
        self.busy(False)
        self.results.setPlainText(text)
