"""Messages of the Queue, Drop and Badmail panes as files: View (the viewer), Save As .eml, and drag out.

A drag carries real .eml files (written in a temporary directory that lives as long as the window), so any
file manager or mail program can take them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QEventLoop, QMimeData, Qt, QTemporaryDir, QTimer, QUrl
from PySide6.QtGui import QDrag
from PySide6.QtWidgets import QFileDialog, QWidget

from engine.admin.mailroot_items import DropItem
from engine.bounce.badmail import BadmailItem
from engine.qmgr.queue import QueueItem
from ui.batch import Batch
from ui.context import WindowPort
from ui.facade import EngineFacade
from ui.icons import icon
from ui.message_parts import parse_message
from ui.message_viewer import MessageViewer, safe_name

VIEW_AT_ONCE = 10  # View on more messages opens the first ten
DRAG_WAIT_MS = 10_000  # a drag waits this long for its files at most
DRAG_LIMIT = 500  # more selected messages than this are not dragged (save them to a folder instead)


@dataclass(frozen=True)
class MessageRef:
    kind: str  # "queue" | "drop" | "badmail"
    key: str  # queue id, Drop file name, Badmail name

    @property
    def file_name(self) -> str:
        name = self.key if self.key.lower().endswith(".eml") else f"{self.key}.eml"
        return safe_name(name)

    @property
    def title(self) -> str:
        where = {"queue": "queued message", "drop": "Drop", "badmail": "Badmail"}[self.kind]
        return f"{where} {self.key}"


async def read_message(engine: EngineFacade, ref: MessageRef) -> bytes:
    if ref.kind == "queue":
        return await engine.read_queued(ref.key)
    if ref.kind == "drop":
        return await engine.read_drop(ref.key)
    return await engine.read_badmail(ref.key)


def write_file(path: str | Path, data: bytes) -> None:
    Path(path).write_bytes(data)


class MailOperations:
    def __init__(self, window: WindowPort) -> None:
        self.w = window
        self.engine = window.engine
        self.messages = window.messages
        self.runner = window.runner
        self.viewers: list[MessageViewer] = []
        self._drag_dir: QTemporaryDir | None = None

    # -- asked of the user (tests replace these) -------------------------------------------------

    def ask_save_path(self, title: str, name: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.w.window(), title, name, "E-mail message (*.eml);;All files (*)")
        return path

    def ask_directory(self, title: str) -> str:
        return QFileDialog.getExistingDirectory(self.w.window(), title)

    def save_file(self, path: str, data: bytes) -> None:
        try:
            write_file(path, data)
        except OSError as error:
            self.messages.error("Save", error)
        else:
            self.messages.inform(f"Saved {Path(path).name} ({len(data):,} bytes)")

    # -- view -----------------------------------------------------------------------------------

    def view(self, refs: list[MessageRef]) -> None:
        if refs:
            self.runner.spawn(self._view(refs[:VIEW_AT_ONCE]), "View Message")

    async def _view(self, refs: list[MessageRef]) -> None:
        for ref in refs:
            data = await read_message(self.engine, ref)
            parts = await asyncio.to_thread(parse_message, data)
            self.open_viewer(ref, data, parts)

    def open_viewer(self, ref: MessageRef, data: bytes, parts: object) -> MessageViewer:
        viewer = MessageViewer(ref.title, data, parts, ref.file_name, self.save_file, self.w.window(),  # type: ignore[arg-type]
                               envelope=self.envelope(ref))
        viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        viewer.destroyed.connect(lambda *_: self.viewers.remove(viewer) if viewer in self.viewers else None)
        self.viewers.append(viewer)
        viewer.show()
        return viewer

    def envelope(self, ref: MessageRef) -> tuple[str, tuple[str, ...]] | None:
        """The envelope the list knows for ``ref`` (the file's x-sender/x-receiver lines, the queue's record)."""
        item: QueueItem | DropItem | BadmailItem | None
        if ref.kind == "queue":
            item = self.w.queue_model.get(ref.key)
        elif ref.kind == "drop":
            item = self.w.drop_model.get(ref.key)
        else:
            item = self.w.badmail_model.get(ref.key)
        return (item.sender, tuple(item.recipients)) if item is not None else None

    # -- save -----------------------------------------------------------------------------------

    def save(self, refs: list[MessageRef]) -> None:
        if len(refs) == 1:
            path = self.ask_save_path("Save Message As", refs[0].file_name)
            if path:
                self.runner.spawn(self._save_one(refs[0], path), "Save As")
            return
        if refs:
            folder = self.ask_directory(f"Save {len(refs)} Messages in Folder")
            if folder:
                self.runner.spawn(self.save_many(refs, Path(folder)), "Save As")

    async def _save_one(self, ref: MessageRef, path: str) -> None:
        data = await read_message(self.engine, ref)
        self.save_file(path, data)

    async def save_many(self, refs: list[MessageRef], folder: Path) -> None:
        async def step(ref: MessageRef) -> None:
            data = await read_message(self.engine, ref)
            await asyncio.to_thread(write_file, folder / ref.file_name, data)

        batch: Batch[MessageRef] = Batch("Save As", f"Saving {len(refs):,} messages in {folder}…", self.w.window())
        result = await batch.run(refs, step)
        self.messages.inform(result.summary("Saved") + f" In {folder}.")

    # -- drag out -------------------------------------------------------------------------------

    def drag_folder(self) -> Path:
        if self._drag_dir is None or not self._drag_dir.isValid():
            self._drag_dir = QTemporaryDir()
        return Path(self._drag_dir.path())

    async def drag_data(self, refs: list[MessageRef]) -> QMimeData:
        """The selected messages as .eml files in a fresh folder, as file URLs (and the text of a single one)."""
        folder = Path(await asyncio.to_thread(_fresh_folder, self.drag_folder()))
        urls = []
        for ref in refs[:DRAG_LIMIT]:
            data = await read_message(self.engine, ref)
            path = folder / ref.file_name
            await asyncio.to_thread(write_file, path, data)
            urls.append(QUrl.fromLocalFile(str(path)))
        mime = QMimeData()
        mime.setUrls(urls)
        return mime

    def start_drag(self, source: QWidget, refs: list[MessageRef]) -> None:
        """Called from the view's startDrag: waits (briefly, events flowing) for the files, then drags them."""
        if not refs:
            return
        if len(refs) > DRAG_LIMIT:
            self.messages.inform(f"Drag at most {DRAG_LIMIT} messages at once; use Save As for more")
            return
        task = self.runner.spawn(self.drag_data(refs), "Drag")
        waiting = QEventLoop()
        task.add_done_callback(lambda _: waiting.quit())
        QTimer.singleShot(DRAG_WAIT_MS, waiting.quit)
        if not task.done():
            waiting.exec()
        if not task.done() or task.cancelled() or task.exception() is not None:
            return
        drag = QDrag(source)
        drag.setMimeData(task.result())
        drag.setPixmap(icon("message").pixmap(32, 32))
        drag.exec(Qt.DropAction.CopyAction)


def _fresh_folder(base: Path) -> str:
    """One folder per drag, so that two drags of the same message never share (or overwrite) a file."""
    number = 1
    while (base / str(number)).exists():
        number += 1
    (base / str(number)).mkdir()
    return str(base / str(number))
