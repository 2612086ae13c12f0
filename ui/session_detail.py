"""Session Properties: everything the registry knows about one client connection, following it live."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import shiboken6
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.errors import NotFoundError
from engine.smtpd.sessions import TRANSCRIPT_LINES, SessionInfo
from ui.elide import ElidedLabel
from ui.icons import icon
from ui.queue_detail import TranscriptHighlighter
from ui.tasks import TaskRunner
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
                 parent: QWidget | None = None, *, runner: TaskRunner | None = None,
                 transcript: Callable[[], Awaitable[list[str]]] | None = None) -> None:
        super().__init__(parent)
        self.session_id = session_id
        self._lookup = lookup
        self._clock = clock
        self._runner = runner
        self._fetch = transcript
        self._fetching = False
        self.setWindowTitle(f"Session {session_id} Properties")
        self.setMinimumWidth(460)
        form = QFormLayout()
        self.labels: dict[str, QLabel] = {}
        for name in FIELDS:
            label = ElidedLabel()  # host names, addresses, listeners: cut in the middle, whole in the tooltip
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
        self.transcript = QPlainTextEdit()
        self.transcript.setReadOnly(True)
        self.transcript.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.transcript.setFont(mono)
        self.transcript.setMinimumHeight(160)
        self.highlighter = TranscriptHighlighter(self.transcript.document())
        transcript_label = QLabel(f"T&ranscript (the latest {TRANSCRIPT_LINES} commands and replies; AUTH secrets "
                                  "masked, message data not shown):")
        transcript_label.setBuddy(self.transcript)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        if transcript is not None:
            layout.addWidget(transcript_label)
            layout.addWidget(self.transcript, 1)
        else:
            transcript_label.hide()
            self.transcript.hide()
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
        if self._fetch is not None and self._runner is not None and not self._fetching:
            self._fetching = True
            self._runner.spawn(self._load_transcript(), "Session transcript")

    async def _load_transcript(self) -> None:
        assert self._fetch is not None
        try:
            lines = await self._fetch()
        except NotFoundError:
            return  # it ended meanwhile: the next refresh says so
        finally:
            self._fetching = False
        text = "\n".join(lines)
        if shiboken6.isValid(self.transcript) and self.transcript.toPlainText() != text:
            bar = self.transcript.verticalScrollBar()
            following = bar.value() == bar.maximum()
            self.transcript.setPlainText(text)
            if following:  # keep showing the newest line, unless the administrator scrolled up
                bar.setValue(bar.maximum())
