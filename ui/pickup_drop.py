"""Drag and drop into Pickup: files (or text) dropped on the window become messages, with a preview first.

Flow: read and check every file (the envelope Pickup will use, or why it is not a message) → the preview
dialog (unless "don't ask again") → submit the good ones one after another with progress and Cancel → one
result row per file, which follows the message (queued as id, delivered, or refused into Badmail). Under them:
what sits in the Pickup folder now, and the history the engine keeps (earlier sessions, other tools' files).

Invariants: the engine writes each file elsewhere and renames it into Pickup, so Pickup never sees half a
file; Cancel stops between files and the file being submitted is finished, so every file is either in Pickup
exactly once or reported "not submitted" — nothing lost, nothing twice. Files with problems are not submitted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QMimeData, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from engine.admin.mailroot_items import PickupFile
from engine.admin.pickup_history import PickupRecord
from engine.errors import EngineError
from engine.events import Event, MessageBadmailed, MessageDropped, MessageQueued, MessageRemoved
from ui.batch import Batch
from ui.context import WindowPort
from ui.facade import PickupHistoryFacade
from ui.icons import icon
from ui.models.table import Column, KeyedTableModel
from ui.units import moment, size_text
from ui.views import ItemView

MAX_FILES = 10_000  # one drop takes at most this many files
MAX_FILE_BYTES = 256 << 20  # a bigger file is refused before it is read
PREVIEW_SETTING = "pickup/preview"
LAST_FOLDER_SETTING = "pickup/folder"
TEXT_NAME = "dragged text"
HISTORY_LIMIT = 500  # earlier Pickup submissions listed (newest first)
HISTORY_DELAY_MS = 1000  # a burst of Pickup events reads the history once
HISTORY_KEY, FOLDER_KEY = "h:", "p:"  # row keys of the engine's history and of the folder's files


@dataclass(frozen=True)
class DropSource:
    name: str  # shown, and the hint for the Pickup file name
    path: Path | None = None  # a file, or None for dragged text
    text: bytes = b""


@dataclass(frozen=True)
class PickupRow:
    key: str
    name: str
    size: int
    status: str  # checking | ready | problem | submitting | in pickup | queued | delivered | returned |
    #              deleted | refused | not submitted | failed
    detail: str = ""
    sender: str = ""
    recipients: tuple[str, ...] = ()
    queue_id: str = ""
    batch: int = 0
    at: float = 0.0
    subject: str = ""
    badmail: str = ""  # the Badmail item a refused file became
    listed: str = ""  # "" = put here by this window; "history" = from the engine's history; "folder" = in Pickup now


STATUS_TEXT = {
    "checking": "Checking…", "ready": "Ready", "problem": "Would be refused", "submitting": "Submitting…",
    "in pickup": "In Pickup", "queued": "Queued", "delivered": "Delivered", "returned": "Returned to sender",
    "refused": "Refused (Badmail)", "not submitted": "Not submitted", "failed": "Failed",
    "deleted": "Deleted from the queue", "lost": "Lost (see the event log)", "waiting": "In Pickup now",
}
OUTCOME_STATUS = {"queued": "queued", "delivered": "delivered", "returned": "returned", "deleted": "deleted",
                  "lost": "lost", "refused": "refused"}
REMOVED_DETAIL = {"returned": "returned to the sender with a non-delivery report",
                  "deleted": "deleted by the administrator", "delivered": ""}
STATUS_COLORS = {"problem": "#a4262c", "refused": "#a4262c", "failed": "#a4262c", "lost": "#a4262c",
                 "not submitted": "#8a6d1c",
                 "queued": "#1f5fae", "delivered": "#2e7d32", "returned": "#8a6d1c"}
BAD = ("problem", "refused", "failed", "lost")
ORIGIN = {"": "", "history": "From the server's history (an earlier session, or a file another program put "
          "into Pickup)", "folder": "In the Pickup folder now: the server takes it when it runs"}


def _number(row: PickupRow) -> float:
    """This window's files first, in their order; then what is in the folder now; then the history, newest first."""
    if not row.listed:
        return float(row.key)
    return (2e12 if row.listed == "folder" else 4e12) - row.at


class PickupResultsModel(KeyedTableModel[PickupRow]):
    columns = (
        Column("#", lambda r: "" if r.listed else r.key, sort=_number, right=True, width=40),
        Column("File", lambda r: r.name, width=160),
        Column("Status", lambda r: STATUS_TEXT.get(r.status, r.status), width=110),
        Column("Queue ID", lambda r: r.queue_id, width=150),
        Column("Time", lambda r: moment(r.at) if r.at else "", sort=lambda r: r.at, width=130),
        Column("Subject", lambda r: r.subject, width=160),
        Column("Sender", lambda r: r.sender, width=150),
        Column("Recipients", lambda r: r.recipients[0] + (f" (+{len(r.recipients) - 1})" if len(r.recipients) > 1
                                                           else "") if r.recipients else "", width=170),
        Column("Size", lambda r: size_text(r.size), sort=lambda r: r.size, right=True, width=70),
        Column("Detail", lambda r: r.detail, width=300),
    )
    STATUS_COLUMN = 2
    TIME_COLUMN = 4

    def key(self, row: PickupRow) -> str:
        return row.key

    def icon(self, row: PickupRow) -> QIcon:
        return icon("badmail") if row.status in BAD else icon("message")

    def tooltip(self, row: PickupRow) -> str | None:
        lines = [ORIGIN[row.listed]] if row.listed else []
        lines += [row.detail] if row.detail else []
        if len(row.recipients) > 1:
            lines += row.recipients
        return "\n".join(lines) or None

    def foreground(self, row: PickupRow, column: int) -> QColor | None:
        color = STATUS_COLORS.get(row.status) if column == self.STATUS_COLUMN else None
        return QColor(color) if color else None

    def change(self, key: str, **fields: object) -> None:
        row = self.get(key)
        if row is not None:
            self.upsert(replace(row, **fields))  # type: ignore[arg-type]


def sources_from_mime(mime: QMimeData) -> list[DropSource]:
    """Local files (a dropped folder gives its files, not its subfolders), else the dragged text."""
    if mime.hasUrls():
        found: list[DropSource] = []
        for url in mime.urls():
            if not url.isLocalFile():
                continue
            path = Path(url.toLocalFile())
            if path.is_dir():
                found += [DropSource(p.name, p) for p in sorted(path.iterdir()) if p.is_file()]
            elif path.is_file():
                found.append(DropSource(path.name, path))
        if found:
            return found[:MAX_FILES]
    if mime.hasText() and mime.text().strip():
        return [DropSource(TEXT_NAME, None, mime.text().encode("utf-8"))]
    return []


def can_take(mime: QMimeData) -> bool:
    return any(url.isLocalFile() for url in mime.urls()) if mime.hasUrls() else mime.hasText()


def read_source(source: DropSource) -> bytes:
    if source.path is None:
        return source.text
    if source.path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES >> 20} MB")
    return source.path.read_bytes()


def _envelope(sender: str, recipients: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    return sender.casefold(), tuple(sorted(r.casefold() for r in recipients))


class PreviewDialog(QDialog):
    """Before anything is submitted: each file, the envelope Pickup will use, and the problems found."""

    def __init__(self, rows: list[PickupRow], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pickupPreview")
        self.setWindowTitle("Put into Pickup")
        self.resize(900, 420)
        good = sum(row.status == "ready" for row in rows)
        bad = len(rows) - good
        self.model = PickupResultsModel()
        self.model.sync(rows)
        view = ItemView()
        view.setModel(self.model)
        for column, spec in enumerate(self.model.columns):
            view.setColumnWidth(column, spec.width)
        view.setColumnHidden(3, True)  # no queue ids yet
        view.setColumnHidden(PickupResultsModel.TIME_COLUMN, True)
        self.view = view
        text = f"{good:,} message{'s' * (good != 1)} will be put into the Pickup directory and delivered with " \
               "the envelope shown (from x-sender/x-receiver lines, else from the headers)."
        if bad:
            text += f" {bad:,} file{'s' * (bad != 1)} will be skipped: {'it is' if bad == 1 else 'they are'} " \
                    "not a message Pickup can deliver (see Detail)."
        summary = QLabel(text)
        summary.setWordWrap(True)
        self.dont_ask = QCheckBox("Don't ask again: put dropped files into Pickup at once (turn the preview back "
                                  "on in the View menu)")
        self.buttons = QDialogButtonBox()
        self.ok = self.buttons.addButton(f"Put {good:,} into Pickup", QDialogButtonBox.ButtonRole.AcceptRole)
        self.ok.setEnabled(good > 0)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(summary)
        layout.addWidget(view, 1)
        layout.addWidget(self.dont_ask)
        layout.addWidget(self.buttons)


class PickupDrop(QObject):
    """Takes drops for the window; ``results`` holds every file of this session (the Pickup pane shows it)."""

    finished = Signal(int)  # the batch number of a drop whose submission ended
    preview_shown = Signal(object)  # the PreviewDialog (tests accept it)

    def __init__(self, window: WindowPort) -> None:
        super().__init__()
        self.w = window
        self.engine = window.engine
        self.messages = window.messages
        self.runner = window.runner
        self.results = PickupResultsModel()
        self._numbers = itertools.count(1)
        self._batches = itertools.count(1)
        self._waiting: list[tuple[str, tuple[str, tuple[str, ...]]]] = []  # (row key, envelope), in order
        self._by_queue_id: dict[str, str] = {}
        self.active: Batch[PickupRow] | None = None
        self.preview: PreviewDialog | None = None
        self._history_timer = QTimer(self)
        self._history_timer.setSingleShot(True)
        self._history_timer.setInterval(HISTORY_DELAY_MS)
        self._history_timer.timeout.connect(self.load_history)
        self._history_loading = False
        self._history_queued: set[str] = set()  # history rows still queued: their events read the history again
        self._history_loaded = False  # read when the Pickup node first shows (show_folder), then on events
        self._closed = False

    # -- settings -------------------------------------------------------------------------------

    @property
    def ask_first(self) -> bool:
        return bool(self.w.settings.value(PREVIEW_SETTING, True, type=bool))

    @ask_first.setter
    def ask_first(self, value: bool) -> None:
        self.w.settings.setValue(PREVIEW_SETTING, value)
        self.w.actions_.pickup_preview.setChecked(value)

    # -- the drop -------------------------------------------------------------------------------

    def accepts(self, mime: QMimeData, source: object) -> bool:
        """Drops from other applications (or the desktop); never our own drag-out coming back."""
        return source is None and can_take(mime)

    def drop(self, mime: QMimeData) -> int:
        """Start taking what was dropped; returns the batch number (0: nothing to take)."""
        return self.take_sources(sources_from_mime(mime))

    def take_sources(self, sources: list[DropSource]) -> int:
        if not sources:
            return 0
        batch = next(self._batches)
        self.runner.spawn(self.take(sources[:MAX_FILES], batch), "Put into Pickup")
        return batch

    def choose_files(self) -> list[str]:
        """Asks for the files (tests replace it)."""
        folder = str(self.w.settings.value(LAST_FOLDER_SETTING, str(Path.home())))
        paths, _ = QFileDialog.getOpenFileNames(self.w.window(), "Put Files into Pickup", folder,
                                                "Messages (*.eml *.txt *.msg);;All files (*)")
        if paths:
            self.w.settings.setValue(LAST_FOLDER_SETTING, str(Path(paths[0]).parent))
        return paths

    def put_files(self) -> int:
        """File ▸ Put Files into Pickup… (Ctrl+O): as a drop of the chosen files; returns the batch (0: none)."""
        return self.take_sources([DropSource(Path(path).name, Path(path)) for path in self.choose_files()
                                  if Path(path).is_file()])

    def paste(self) -> int:
        """Edit ▸ Paste into Pickup (Ctrl+V on the Pickup node): copied files, or copied message text."""
        mime = QApplication.clipboard().mimeData()
        batch = self.drop(mime) if mime is not None else 0
        if not batch:
            self.messages.inform("Paste into Pickup: the clipboard holds no file and no text")
        return batch

    async def take(self, sources: list[DropSource], batch: int) -> None:
        now = time.time()
        rows = [PickupRow(f"{next(self._numbers)}", source.name, 0, "checking", batch=batch, at=now)
                for source in sources]
        for row in rows:
            self.results.upsert(row)
        by_key = dict(zip((row.key for row in rows), sources, strict=True))
        checked = await self._check(rows, by_key)
        good = [row for row in checked if row.status == "ready"]
        if not good:
            self._announce(batch)
            return
        if self.ask_first:
            dialog = PreviewDialog(checked, self.w.window())
            self.preview = dialog
            answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            dialog.finished.connect(lambda code: None if answer.done() else answer.set_result(code))
            dialog.open()
            self.preview_shown.emit(dialog)
            accepted = await answer == QDialog.DialogCode.Accepted
            if dialog.dont_ask.isChecked() and accepted:
                self.ask_first = False
            dialog.deleteLater()
            self.preview = None
            if not accepted:
                for row in good:
                    self.results.change(row.key, status="not submitted", detail="cancelled at the preview")
                self._announce(batch)
                return
        await self._submit(good, by_key, batch)

    async def _check(self, rows: list[PickupRow], sources: dict[str, DropSource]) -> list[PickupRow]:
        async def step(row: PickupRow) -> None:
            source = sources[row.key]
            try:
                data = await asyncio.to_thread(read_source, source)
            except (OSError, ValueError) as error:
                self.results.change(row.key, status="problem", detail=f"cannot be read: {error}")
                return
            preview = await self.engine.preview_pickup(data)
            self.results.change(row.key, size=preview.size, sender=preview.sender, recipients=preview.recipients,
                                status="problem" if preview.problem else "ready", detail=preview.problem)

        checking: Batch[PickupRow] = Batch("Put into Pickup", f"Checking {len(rows):,} files…", self.w.window(), 4)
        self.active = checking
        await checking.run(rows, step)
        self.active = None
        checked = [self.results.get(row.key) for row in rows]
        if checking.cancelled:
            for row in checked:
                if row is not None and row.status == "checking":
                    self.results.change(row.key, status="not submitted", detail="cancelled")
        return [row for row in checked if row is not None and row.status in ("ready", "problem")]

    async def _submit(self, rows: list[PickupRow], sources: dict[str, DropSource], batch: int) -> None:
        async def step(row: PickupRow) -> None:
            self.results.change(row.key, status="submitting")
            try:
                data = await asyncio.to_thread(read_source, sources[row.key])
            except (OSError, ValueError) as error:
                self.results.change(row.key, status="failed", detail=f"cannot be read: {error}")
                return
            # Waiting before the call: the Pickup service may queue it before the call returns.
            self._waiting.append((row.key, _envelope(row.sender, row.recipients)))
            try:
                name = await self.engine.submit_to_pickup(data, Path(row.name).stem)
            except Exception as error:
                self._waiting = [w for w in self._waiting if w[0] != row.key]
                self.results.change(row.key, status="failed", detail=str(error))
                raise
            current = self.results.get(row.key)
            if current is not None and current.status == "submitting":
                self.results.change(row.key, status="in pickup", detail=f"Pickup file {name}")

        submitting: Batch[PickupRow] = Batch("Put into Pickup", f"Putting {len(rows):,} messages into Pickup…",
                                             self.w.window(), concurrency=2)
        self.active = submitting
        try:
            result = await submitting.run(rows, step)
        finally:
            self.active = None
        for row in result.skipped:
            self.results.change(row.key, status="not submitted", detail="cancelled before it was submitted")
        self._announce(batch)

    def cancel(self) -> None:
        if self.active is not None:
            self.active.cancel()

    def close(self) -> None:
        """The window closes: no more reading of the history."""
        self._closed = True
        self._history_timer.stop()

    def _announce(self, batch: int) -> None:
        rows = [row for row in self.results.rows() if row.batch == batch]
        taken = sum(row.status not in ("problem", "not submitted", "failed", "checking") for row in rows)
        text = f"Put {taken:,} of {len(rows):,} file{'s' * (len(rows) != 1)} into Pickup"
        skipped = len(rows) - taken
        if skipped:
            text += f"; {skipped:,} not (see Pickup)"
        self.messages.inform(text)
        self.finished.emit(batch)

    # -- following the messages -----------------------------------------------------------------

    def on_events(self, batch: list[Event]) -> None:
        followed = self._history_queued
        if any((isinstance(event, MessageQueued | MessageBadmailed) and event.source == "pickup")
               or (isinstance(event, MessageRemoved | MessageDropped) and event.queue_id in followed)
               for event in batch):
            self._history_timer.start()  # (other mail's events read nothing: a busy server is not slowed)
        bad: list[str] = []
        for event in batch:
            # "post": a remote computer takes the files dropped on its Pickup through its Posting Acceptor
            if isinstance(event, MessageQueued) and event.source in ("pickup", "post") and self._waiting:
                key = self._match(_envelope(event.sender, event.recipients))
                if key is not None:
                    self._by_queue_id[event.queue_id] = key
                    self.results.change(key, status="queued", queue_id=event.queue_id, detail="")
            elif isinstance(event, MessageDropped) and event.queue_id in self._by_queue_id:
                key = self._by_queue_id[event.queue_id]
                row = self.results.get(key)
                if row is None:
                    continue
                if len(event.recipients) >= len(row.recipients):
                    self.results.change(key, status="delivered", detail="delivered to the Drop directory")
                    self._by_queue_id.pop(event.queue_id, None)
                else:
                    self.results.change(key, detail=f"{len(event.recipients)} of {len(row.recipients)} recipients "
                                        "delivered to Drop; the others are in the queue")
            elif isinstance(event, MessageRemoved) and event.queue_id in self._by_queue_id:
                key = self._by_queue_id.pop(event.queue_id)
                row = self.results.get(key)
                if row is not None and row.status == "queued":
                    status = event.reason if event.reason in ("delivered", "returned", "deleted") else "delivered"
                    self.results.change(key, status=status, detail=REMOVED_DETAIL.get(status, ""))
            elif isinstance(event, MessageBadmailed) and event.source == "pickup" and self._waiting:
                bad.append(event.name)
        if bad:
            self.runner.spawn(self._refused(bad), "Pickup")

    def _match(self, envelope: tuple[str, tuple[str, ...]]) -> str | None:
        for number, (key, wanted) in enumerate(self._waiting):
            if wanted == envelope:
                del self._waiting[number]
                return key
        return None

    async def _refused(self, names: list[str]) -> None:
        for item in await self.engine.badmail_items(names):
            key = self._match(_envelope(item.sender, item.recipients))
            if key is not None:
                self.results.change(key, status="refused", detail=" ".join(item.reason.split()), badmail=item.name)

    def rows_of(self, batch: int) -> list[PickupRow]:
        return [row for row in self.results.rows() if row.batch == batch]

    def own_rows(self) -> list[PickupRow]:
        """The rows of the files this window put into Pickup (not the history, not the folder's files)."""
        return [row for row in self.results.rows() if not row.listed]

    # -- the history and the folder, from the engine ----------------------------------------------

    def load_history(self) -> None:
        """Read what became of earlier Pickup files (the engine's tracking index and Badmail) into the list."""
        engine = self.engine
        if self._history_loading or self._closed or not isinstance(engine, PickupHistoryFacade):
            return
        self._history_loading = True
        self._history_loaded = True

        async def run() -> None:
            try:
                records = await engine.pickup_history(HISTORY_LIMIT)
            except EngineError:
                return  # not running yet, or any more: the list stays as it was (the next event reads again)
            finally:
                self._history_loading = False
            self.show_history(records)

        self.runner.spawn(run(), "Pickup")

    def show_history(self, records: list[PickupRecord]) -> None:
        """The engine's records as rows, except those of this window's own files (already listed, and followed)."""
        own = self.own_rows()
        queue_ids = {row.queue_id for row in own if row.queue_id}
        badmail = {row.badmail for row in own if row.badmail}
        rows = [history_row(record) for record in records
                if record.queue_id not in queue_ids and record.badmail not in badmail]
        self.results.sync([*(row for row in self.results.rows() if row.listed != "history"), *rows])
        self._history_queued = {row.queue_id for row in rows if row.status == "queued"}

    def show_folder(self, files: list[PickupFile]) -> None:
        """The files sitting in the Pickup folder now, as rows (they leave the list when the server takes them)."""
        if not self._history_loaded:
            self.load_history()
        mine = {row.detail for row in self.own_rows() if row.status == "in pickup"}  # "Pickup file <name>"
        rows = [PickupRow(FOLDER_KEY + f.name, f.name, f.size, "waiting", at=f.at, listed="folder") for f in files
                if f"Pickup file {f.name}" not in mine]
        self.results.sync([*(row for row in self.results.rows() if row.listed != "folder"), *rows])


def history_row(record: PickupRecord) -> PickupRow:
    key = HISTORY_KEY + (record.queue_id or record.badmail)
    return PickupRow(key, record.file, record.size, OUTCOME_STATUS[record.outcome], record.detail, record.sender,
                     record.recipients, record.queue_id, at=record.at, subject=record.subject,
                     badmail=record.badmail, listed="history")


def drop_hint() -> QLabel:
    hint = QLabel("Drop .eml or text files here (or anywhere on this window), choose them with File ▸ Put Files "
                  "into Pickup… (Ctrl+O), or paste copied files or message text (Ctrl+V), to put them into the "
                  "Pickup directory. Every file is checked first; the results stay listed below.")
    hint.setObjectName("dropHint")
    hint.setWordWrap(True)
    hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return hint
