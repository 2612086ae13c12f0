"""Session Properties: everything the registry knows about one client connection, following it live."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from engine.smtpd.sessions import SessionInfo
from ui.icons import icon
from ui.units import moment, size_exact, span

REFRESH_MS = 1000

FIELDS = ("Session", "Client", "EHLO name", "Listener", "User", "TLS", "Connected since", "Command", "Sender",
          "Messages", "Received", "Sent")


def session_fields(info: SessionInfo, now: float) -> dict[str, str]:
    return {
        "Session": info.session_id,
        "Client": f"{info.peer} port {info.peer_port}",
        "EHLO name": info.helo or "(not given yet)",
        "Listener": info.listener or "—",
        "User": info.user,
        "TLS": info.cipher or ("Yes" if info.tls else "No (plain text)"),
        "Connected since": f"{moment(info.since)}  ({span(now - info.since)})",
        "Command": f"{info.command or '—'} ({info.state})",
        "Sender": info.sender or "— (no open transaction)",
        "Messages": str(info.messages),
        "Received": size_exact(info.bytes_in),
        "Sent": size_exact(info.bytes_out),
    }


class SessionDialog(QDialog):
    """Non-modal; ``lookup()`` gives the session's latest snapshot (None once it has ended)."""

    terminate = Signal(str)

    def __init__(self, session_id: str, lookup: Callable[[], SessionInfo | None], clock: Callable[[], float],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session_id = session_id
        self._lookup = lookup
        self._clock = clock
        self.setWindowTitle(f"Session {session_id} Properties")
        self.setMinimumWidth(460)
        form = QFormLayout()
        self.labels: dict[str, QLabel] = {}
        for name in FIELDS:
            label = QLabel()
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.labels[name] = label
            form.addRow(f"{name}:", label)
        self.ended = QLabel()
        self.ended.setObjectName("problem")
        self.ended.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        self.terminate_button = QPushButton(icon("terminate"), "&Terminate")
        self.terminate_button.setToolTip("Close this connection (the client gets 421)")
        self.terminate_button.clicked.connect(lambda: self.terminate.emit(self.session_id))
        self.buttons.addButton(self.terminate_button, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.ended)
        layout.addWidget(self.buttons)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def refresh(self) -> None:
        info = self._lookup()
        if info is None:
            self.ended.setText("The session has ended.")
            self.ended.show()
            self.terminate_button.setEnabled(False)
            self.timer.stop()
            return
        for name, text in session_fields(info, self._clock()).items():
            self.labels[name].setText(text)
