"""The Event Viewer node: the virtual server's event log like the Windows Event Viewer — level icon, date, source,
event ID, text; filters by level, source and text; a detail dialog; live while the window is open."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from engine.admin.event_ids import EVENT_TYPES, LEVELS, EventEntry, Level, at_least, entry_for
from engine.events import Event
from ui.models.table import Column, KeyedTableModel
from ui.result_pane import FramedPane, ResultPane

MAX_SHOWN = 5000  # entries kept in the window (the newest); the log on disk keeps more
ALL = "(All)"
_LEVEL_ICONS = {"Information": QStyle.StandardPixmap.SP_MessageBoxInformation,
                "Warning": QStyle.StandardPixmap.SP_MessageBoxWarning,
                "Error": QStyle.StandardPixmap.SP_MessageBoxCritical}


def level_icon(level: str) -> QIcon:
    return QApplication.style().standardIcon(_LEVEL_ICONS.get(level, _LEVEL_ICONS["Information"]))


def when_text(entry: EventEntry) -> str:
    return datetime.fromtimestamp(entry.at).strftime("%Y-%m-%d %H:%M:%S")


def entry_key(entry: EventEntry) -> str:
    return f"{entry.at!r}/{entry.event_id}/{entry.text}"


class EventsModel(KeyedTableModel[EventEntry]):
    """Every entry received (newest MAX_SHOWN); the rows are those the filter lets through."""

    columns = (
        Column("Type", lambda e: e.level, width=100),
        Column("Date and Time", when_text, width=150),
        Column("Source", lambda e: e.source, width=110),
        Column("Event", lambda e: str(e.event_id), right=True, width=60),
        Column("Description", lambda e: e.text, width=460),
    )

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[EventEntry] = []
        self.level: Level = "Information"
        self.source = ""
        self.text = ""

    def key(self, row: EventEntry) -> str:
        return entry_key(row)

    def icon(self, row: EventEntry) -> QIcon:
        return level_icon(row.level)

    def shows(self, entry: EventEntry) -> bool:
        return (entry.level in at_least(self.level) and (not self.source or entry.source == self.source)
                and (not self.text or self.text.lower() in f"{entry.text} {entry.event_id}".lower()))

    def set_entries(self, entries: Iterable[EventEntry]) -> None:
        """The log as read from disk, with the live entries that arrived meanwhile (each entry once)."""
        merged = {entry_key(e): e for e in (*entries, *self.entries)}
        self.entries = sorted(merged.values(), key=lambda e: e.at)[-MAX_SHOWN:]
        self.refilter()

    def add(self, entries: list[EventEntry]) -> None:
        known = {entry_key(e) for e in self.entries}
        new = [e for e in entries if entry_key(e) not in known]
        self.entries = (self.entries + new)[-MAX_SHOWN:]
        self.append_many(e for e in new if self.shows(e))

    def set_filter(self, level: Level, source: str, text: str) -> None:
        self.level, self.source, self.text = level, source, text.strip()
        self.refilter()

    def refilter(self) -> None:
        self.sync(e for e in self.entries if self.shows(e))


class EventDetail(QDialog):
    """Event Properties: every field of one entry, and what its ID means."""

    def __init__(self, entry: EventEntry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Event Properties")
        self.entry = entry
        form = QFormLayout()
        type_row = QHBoxLayout()
        badge = QLabel()
        badge.setPixmap(level_icon(entry.level).pixmap(16, 16))
        type_row.addWidget(badge)
        type_row.addWidget(QLabel(entry.level), 1)
        form.addRow("Type:", type_row)
        form.addRow("Date and time:", QLabel(when_text(entry)))
        form.addRow("Source:", QLabel(entry.source))
        kind = EVENT_TYPES.get(entry.event_id)
        form.addRow("Event ID:", QLabel(f"{entry.event_id}" + (f" — {kind.summary}" if kind else "")))
        self.text = QPlainTextEdit(entry.text)
        self.text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Description:"))
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self.resize(520, 320)

    def as_text(self) -> str:
        e = self.entry
        return (f"Type: {e.level}\nDate and time: {when_text(e)}\nSource: {e.source}\nEvent ID: {e.event_id}\n"
                f"Description: {e.text}\n")

    def copy(self) -> None:
        QApplication.clipboard().setText(self.as_text())


class EventViewer:
    """The node's pane (a filter bar over the list) and what feeds it."""

    def __init__(self) -> None:
        self.model = EventsModel()
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(0, 0, 4, 0)
        self.level = QComboBox()
        self.level.addItem("All levels", "Information")
        self.level.addItem("Warnings and errors", "Warning")
        self.level.addItem("Errors", "Error")
        self.source = QComboBox()
        self.source.addItem(ALL, "")
        for source in sorted({t.source for t in EVENT_TYPES.values()}):
            self.source.addItem(source, source)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Find in the description or event ID")
        self.search.setClearButtonEnabled(True)
        self.count = QLabel()
        row.addWidget(QLabel("Show:"))
        row.addWidget(self.level)
        row.addWidget(QLabel("Source:"))
        row.addWidget(self.source)
        row.addWidget(self.search, 1)
        row.addWidget(self.count)
        self.level.currentIndexChanged.connect(self._filter)
        self.source.currentIndexChanged.connect(self._filter)
        self.search.textChanged.connect(self._filter)
        self.pane = FramedPane(bar, ResultPane(self.model, "events", sort_column=1, descending=True))
        self.loaded = False
        self._count()

    def _filter(self) -> None:
        level = self.level.currentData()
        self.model.set_filter(level if level in LEVELS else "Information", self.source.currentData() or "",
                              self.search.text())
        self._count()

    def _count(self) -> None:
        shown, total = self.model.rowCount(), len(self.model.entries)
        self.count.setText(f"{shown} of {total} event(s)" if shown != total else f"{total} event(s)")

    def set_entries(self, entries: list[EventEntry]) -> None:
        self.model.set_entries(entries)
        self.loaded = True
        self._count()

    def on_events(self, batch: list[Event]) -> None:
        """Live: the engine's events as entries, as the log on disk gets them (kept before the first load too,
        so that nothing between reading the log and showing it is lost)."""
        entries = [entry for entry in map(entry_for, batch) if entry is not None]
        if entries:
            self.model.add(entries)
            self._count()

    def detail(self, key: str, parent: QWidget) -> EventDetail | None:
        row = self.model.get(key)
        if row is None:
            return None
        dialog = EventDetail(row, parent)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog
