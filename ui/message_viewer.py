"""The message viewer: summary, body (text, or HTML rendered safely), headers, raw source and attachments.

HTML is shown by a QTextBrowser that runs no scripts and loads nothing itself: inline parts (cid:) and data:
URLs are shown, every other resource (remote or local file) is blocked and counted, and a notice says so.
Links are never followed; hovering one shows where it leads.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QFont, QFontDatabase, QIcon, QImage, QTextDocument
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ui.icons import icon
from ui.message_parts import Attachment, MessageParts, remote_references
from ui.models.table import Column, KeyedTableModel
from ui.units import size_text
from ui.views import ItemView

SaveFile = Callable[[str, bytes], None]  # (path, data): the window writes, and reports errors


class SafeBrowser(QTextBrowser):
    """HTML without remote content: only cid: parts and data: URLs are loaded."""

    def __init__(self, parts: MessageParts, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.parts = parts
        self.blocked: set[str] = set()
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)

    def loadResource(self, kind: int, url: QUrl | str) -> object:
        url = QUrl(url) if isinstance(url, str) else url
        scheme = url.scheme().lower()
        if scheme == "cid":
            attachment = self.parts.by_content_id(url.path() or url.toString().partition(":")[2])
            if attachment is not None and kind == QTextDocument.ResourceType.ImageResource.value:
                image = QImage.fromData(attachment.data)
                return image if not image.isNull() else None
            return None
        if scheme == "data":
            return super().loadResource(kind, url)
        self.blocked.add(url.toString())
        return None


class AttachmentsModel(KeyedTableModel[Attachment]):
    columns = (
        Column("Name", lambda a: a.name, width=300),
        Column("Size", lambda a: size_text(a.size), sort=lambda a: a.size, right=True, width=80),
        Column("Type", lambda a: a.content_type, width=170),
    )

    def key(self, row: Attachment) -> str:
        return row.name + "\0" + row.content_id + "\0" + str(id(row))

    def icon(self, row: Attachment) -> QIcon | None:
        return icon("message") if row.content_type.startswith("message/") else icon("properties")


def _mono() -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QFont.StyleHint.Monospace)
    return font


def local_date(value: str) -> str:
    """A Date: header in this computer's local time ("2026-12-07 15:20 (+0000)"); as written if unreadable."""
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return value
    if moment.tzinfo is None:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") + f"  (sent {moment.strftime('%H:%M %z')})"


class MessageViewer(QDialog):
    """``save_file(path, data)`` writes a file chosen in a dialog (the window's, so errors reach the user)."""

    def __init__(self, title: str, data: bytes, parts: MessageParts, file_name: str, save_file: SaveFile,
                 parent: QWidget | None = None, *, envelope: tuple[str, tuple[str, ...]] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageViewer")
        self.setWindowTitle(f"{parts.subject or '(no subject)'} — {title}")
        self.resize(860, 640)
        self.data = data
        self.parts = parts
        self.file_name = file_name
        self.save_file = save_file
        summary = QFormLayout()
        self.summary: dict[str, QLabel] = {}
        rows = [("From:", parts.sender), ("To:", parts.to), ("Subject:", parts.subject),
                ("Date:", local_date(parts.date))]
        if envelope is not None:  # who it was really sent by and delivered to (Bcc, aliases): not in the headers
            rows.append(("Envelope:", f"from {envelope[0] or '<>'} to {', '.join(envelope[1]) or '(nobody)'}"))
        for label, value in rows:
            text = QLabel(value or "—")
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            text.setWordWrap(True)
            if label == "Date:" and parts.date:
                text.setToolTip(parts.date)  # as written in the message
            self.summary[label] = text
            summary.addRow(label, text)
        self.problems = QLabel()
        self.problems.setObjectName("notice")
        self.problems.setWordWrap(True)
        if parts.problems:
            shown = "; ".join(dict.fromkeys(parts.problems))
            self.problems.setText(f"This message is not well formed: {shown}. What could not be decoded is "
                                  "shown as it is.")
        self.problems.setVisible(bool(parts.problems))
        self.tabs = QTabWidget()
        self.tabs.addTab(self._body_page(), "Message")
        self.tabs.addTab(self._headers_page(), "Headers")
        self.source = QPlainTextEdit()
        self.source.setReadOnly(True)
        self.source.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.source.setFont(_mono())
        self.source.setPlainText(parts.raw + ("\n\n[… the rest of the message is not shown here; Save As keeps "
                                              "all of it]" if parts.raw_truncated else ""))
        self.tabs.addTab(self.source, "Source")
        self.tabs.addTab(self._attachments_page(), f"Attachments ({len(parts.attachments)})")
        self.tabs.setTabEnabled(3, bool(parts.attachments))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        save = QPushButton(icon("save"), "Save &As .eml…")
        save.setAutoDefault(False)
        save.clicked.connect(self.save_message)
        buttons.addButton(save, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addLayout(summary)
        layout.addWidget(self.problems)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)

    # -- pages ----------------------------------------------------------------------------------

    def _body_page(self) -> QWidget:
        parts = self.parts
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        self.remote_notice = QLabel()
        self.remote_notice.setObjectName("notice")
        self.remote_notice.setWordWrap(True)
        self.remote_notice.hide()
        self.body_stack = QStackedWidget()
        self.text_view = QPlainTextEdit()
        self.text_view.setReadOnly(True)
        self.text_view.setPlainText(parts.text if parts.text is not None else "(this message has no text part)")
        self.html_view: SafeBrowser | None = None
        self.link_label = QLabel()
        self.link_label.setObjectName("link")
        self.body_choice = QComboBox()
        self.body_choice.addItems(["HTML", "Plain text"])
        self.body_choice.currentIndexChanged.connect(self.body_stack.setCurrentIndex)
        if parts.html is not None:
            self.html_view = SafeBrowser(parts)
            self.html_view.highlighted.connect(
                lambda url: self.link_label.setText(f"Link (not followed): {url.toString()}" if url.toString()
                                                    else ""))
            self.html_view.setHtml(parts.html)
            self.html_view.document().size()  # lays the document out: its resources are asked for now
            blocked = len(self.html_view.blocked | remote_references(parts.html))
            if blocked:
                self.remote_notice.setText(f"Remote content was blocked: {blocked} image{'s' * (blocked != 1)} or "
                                           "other resource(s) outside the message were not loaded, so the sender "
                                           "cannot tell that the message was opened.")
                self.remote_notice.show()
            self.body_stack.addWidget(self.html_view)
        self.body_stack.addWidget(self.text_view)
        choose = QHBoxLayout()
        choose.addWidget(QLabel("Show:"))
        choose.addWidget(self.body_choice)
        choose.addStretch(1)
        choose.addWidget(self.link_label)
        if parts.html is not None and parts.text is not None:
            layout.addLayout(choose)
        layout.addWidget(self.remote_notice)
        layout.addWidget(self.body_stack, 1)
        return page

    def _headers_page(self) -> QWidget:
        self.headers = HeadersModel()
        self.headers.sync(HeaderLine(number, name, value) for number, (name, value) in enumerate(self.parts.headers))
        view = ItemView()
        view.setModel(self.headers)
        view.setColumnWidth(0, 40)
        view.setColumnWidth(1, 180)
        view.setWordWrap(True)
        self.header_view = view
        return view

    def _attachments_page(self) -> QWidget:
        self.attachments = AttachmentsModel()
        self.attachments.sync(self.parts.attachments)
        page = QWidget()
        layout = QVBoxLayout(page)
        self.attachment_view = ItemView()
        self.attachment_view.setModel(self.attachments)
        for column, spec in enumerate(self.attachments.columns):
            self.attachment_view.setColumnWidth(column, spec.width)
        self.attachment_view.activated.connect(lambda index: self.save_attachment(self.attachments.row_at(index)))
        row = QHBoxLayout()
        save = QPushButton(icon("save"), "&Save…")
        save.clicked.connect(self._save_selected)
        save_all = QPushButton("Save A&ll…")
        save_all.clicked.connect(self.save_all)
        row.addStretch(1)
        row.addWidget(save)
        row.addWidget(save_all)
        layout.addWidget(self.attachment_view, 1)
        layout.addLayout(row)
        return page

    # -- saving ---------------------------------------------------------------------------------

    def ask_save_path(self, title: str, name: str, filters: str) -> str:
        """Asked where to save; tests replace it."""
        path, _ = QFileDialog.getSaveFileName(self, title, name, filters)
        return path

    def ask_directory(self, title: str) -> str:
        return QFileDialog.getExistingDirectory(self, title)

    def save_message(self) -> None:
        path = self.ask_save_path("Save Message As", self.file_name, "E-mail message (*.eml);;All files (*)")
        if path:
            self.save_file(path, self.data)

    def _save_selected(self) -> None:
        for index in self.attachment_view.selectionModel().selectedRows():
            self.save_attachment(self.attachments.row_at(index))

    def save_attachment(self, attachment: Attachment | None) -> None:
        if attachment is None:
            return
        path = self.ask_save_path("Save Attachment", safe_name(attachment.name), "All files (*)")
        if path:
            self.save_file(path, attachment.data)

    def save_all(self) -> None:
        folder = self.ask_directory("Save All Attachments")
        if not folder:
            return
        used: set[str] = set()
        for attachment in self.parts.attachments:
            name = safe_name(attachment.name)
            stem, dot, suffix = name.rpartition(".")
            number = 1
            while name.casefold() in used or (Path(folder) / name).exists():
                number += 1
                name = f"{stem} ({number}).{suffix}" if dot else f"{name} ({number})"
            used.add(name.casefold())
            self.save_file(str(Path(folder) / name), attachment.data)


def safe_name(name: str) -> str:
    """A file name from a message (no directories, no control characters, not empty)."""
    cleaned = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in name).strip(" .")
    return cleaned[:200] or "attachment"


@dataclass(frozen=True)
class HeaderLine:
    number: int
    name: str
    value: str


class HeadersModel(KeyedTableModel[HeaderLine]):
    columns = (
        Column("#", lambda h: str(h.number + 1), sort=lambda h: h.number, right=True, width=40),
        Column("Header", lambda h: h.name, width=180),
        Column("Value", lambda h: h.value, width=520),
    )

    def key(self, row: HeaderLine) -> str:
        return str(row.number)

    def tooltip(self, row: HeaderLine) -> str | None:
        return row.value if len(row.value) > 80 else None
