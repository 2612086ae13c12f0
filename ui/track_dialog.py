"""Action → Track Message…: find messages by sender, recipient, Message-ID, queue ID and time, and show each one's
timeline (received, delivered to Drop, delivery attempts, left the queue) from the engine's tracking index."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QDateTime, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDateTimeEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.admin.tracking import Query, Track
from ui.facade import EngineFacade
from ui.tasks import TaskRunner

LIMIT = 500


def _time(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


class TrackDialog(QDialog):
    def __init__(self, engine: EngineFacade, runner: TaskRunner, parent: QWidget | None = None, *,
                 queue_id: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Track Message")
        self.engine = engine
        self.runner = runner
        self.sender_edit = QLineEdit()
        self.sender_edit.setPlaceholderText("address, or @domain")
        self.recipient = QLineEdit()
        self.recipient.setPlaceholderText("address, or @domain")
        self.message_id = QLineEdit()
        self.message_id.setPlaceholderText("<id@host> (the Message-ID header)")
        self.queue_id = QLineEdit(queue_id)
        self.subject = QLineEdit()
        self.subject.setPlaceholderText("words of the Subject")
        self.since_box = QCheckBox("Received after:")
        self.since = QDateTimeEdit(QDateTime.currentDateTime().addDays(-1))
        self.since.setCalendarPopup(True)
        self.since.setDisplayFormat("yyyy-MM-dd HH:mm")
        self.since.setEnabled(False)
        self.since_box.toggled.connect(self.since.setEnabled)
        form = QFormLayout()
        form.addRow("Sender:", self.sender_edit)
        form.addRow("Recipient:", self.recipient)
        form.addRow("Message-ID:", self.message_id)
        form.addRow("Queue ID:", self.queue_id)
        form.addRow("Subject:", self.subject)
        since_row = QHBoxLayout()
        since_row.addWidget(self.since_box)
        since_row.addWidget(self.since, 1)
        form.addRow(since_row)
        self.results = QTreeWidget()
        self.results.setHeaderLabels(["Received", "Queue ID", "From", "To", "Subject"])
        for column, width in enumerate((175, 200, 260, 170, 150)):
            self.results.setColumnWidth(column, width)
        self.status = QLabel("Give one or more conditions, then Find.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.find_button = buttons.addButton("&Find", QDialogButtonBox.ButtonRole.ActionRole)
        self.find_button.setDefault(True)
        self.find_button.clicked.connect(self.search)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.resize(940, 560)
        self.found: list[Track] = []

    def query(self) -> Query:
        since = self.since.dateTime().toSecsSinceEpoch() if self.since_box.isChecked() else None
        return Query(sender=self.sender_edit.text().strip(), recipient=self.recipient.text().strip(),
                     message_id=self.message_id.text().strip(), queue_id=self.queue_id.text().strip(),
                     subject=self.subject.text().strip(), since=float(since) if since is not None else None,
                     limit=LIMIT)

    def search(self) -> None:
        self.find_button.setEnabled(False)
        self.status.setText("Searching…")
        self.runner.spawn(self._find(self.query()), "Track Message")

    async def _find(self, query: Query) -> None:
        try:
            self.show_tracks(await self.engine.track_messages(query))
        finally:
            self.find_button.setEnabled(True)

    def show_tracks(self, tracks: list[Track]) -> None:
        self.found = tracks
        self.results.clear()
        for track in tracks:
            item = QTreeWidgetItem([_time(track.received), track.queue_id, track.sender or "<>",
                                    ", ".join(track.recipients), track.subject])
            item.setToolTip(4, f"Message-ID: <{track.message_id}>" if track.message_id else "No Message-ID")
            for step in track.steps:
                child = QTreeWidgetItem([datetime.fromtimestamp(step.at).strftime("%H:%M:%S"), step.what,
                                         step.detail])
                child.setToolTip(2, step.detail)
                item.addChild(child)
            self.results.addTopLevelItem(item)
        if len(tracks) == 1:
            self.results.expandAll()
        more = " (the newest shown: narrow the search)" if len(tracks) >= LIMIT else ""
        self.status.setText(f"{len(tracks)} message(s) found{more}." if tracks else "No message matches.")
        self.results.setFocus(Qt.FocusReason.OtherFocusReason)
