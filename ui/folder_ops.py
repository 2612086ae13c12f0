"""What the Badmail and Drop actions do: list once, follow events, Resend, Delete, Open Folder.

Both panes are listed when first shown (and on Refresh); after that MessageBadmailed / MessageDropped events
add rows (the items are read in batches), and our own Delete and Resend remove them. No folder timer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from PySide6.QtCore import QTimer, QUrl
from PySide6.QtGui import QDesktopServices

from engine.errors import NotFoundError
from engine.events import ConfigChanged, Event, MessageBadmailed, MessageDropped
from engine.store.mailroot import Mailroot, split_drop_ref
from ui.batch import Batch
from ui.context import WindowPort
from ui.models.folders import BadmailModel, DropModel, FolderModel
from ui.queue_ops import CONCURRENCY

ITEM_BATCH = 500
RELIST_OVER = 3000  # more new items waiting than this: list the folder again instead


class FolderOperations:
    def __init__(self, window: WindowPort) -> None:
        self.w = window
        self.engine = window.engine
        self.messages = window.messages
        self.runner = window.runner
        self.badmail: BadmailModel = window.badmail_model
        self.drop: DropModel = window.drop_model
        self._new_badmail: dict[str, None] = {}
        self._new_drop: dict[str, None] = {}
        self._reading = False
        self._timer = QTimer(window.window())
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self._read_new)

    # -- listing and events ---------------------------------------------------------------------

    def load_badmail(self) -> None:
        self.runner.spawn(self._load(self.badmail, self.engine.list_badmail), "Badmail")

    def load_drop(self) -> None:
        self.runner.spawn(self._load(self.drop, self.engine.list_drop), "Drop")

    async def _load(self, model: FolderModel, lister: Callable[[], Awaitable[list]]) -> None:  # type: ignore[type-arg]
        generation = model.snapshot_started()
        model.apply_snapshot(generation, await lister())

    def on_events(self, batch: list[Event]) -> None:
        for event in batch:
            if isinstance(event, MessageBadmailed) and self.badmail.loaded:
                self._new_badmail[event.name] = None
            elif isinstance(event, MessageDropped) and self.drop.loaded:
                self._new_drop[event.ref or Path(event.path).name] = None
            elif isinstance(event, ConfigChanged):
                self._moved(event.keys)
        if (self._new_badmail or self._new_drop) and not self._timer.isActive():
            self._timer.start()

    def _moved(self, keys: tuple[str, ...]) -> None:
        """Badmail or a Drop moved (applied live): list the folders in use now, not the old ones."""
        if "server.badmail_dir" in keys and self.badmail.loaded:
            self._new_badmail.clear()
            self.load_badmail()
        if ("domains" in keys or "mailroot" in keys) and self.drop.loaded:
            self._new_drop.clear()
            self.load_drop()

    def _read_new(self) -> None:
        if not self.w.isVisible():
            return
        if self._reading:
            self._timer.start()
            return
        if len(self._new_drop) > RELIST_OVER:
            self._new_drop.clear()
            self.load_drop()
        if len(self._new_badmail) > RELIST_OVER:
            self._new_badmail.clear()
            self.load_badmail()
        self._reading = True
        self.runner.spawn(self._read(), "Drop")

    async def _read(self) -> None:
        try:
            while self._new_drop or self._new_badmail:
                drops = list(self._new_drop)[:ITEM_BATCH]
                for name in drops:
                    del self._new_drop[name]
                if drops:
                    self.drop.arrived(await self.engine.drop_items(drops))
                bad = list(self._new_badmail)[:ITEM_BATCH]
                for name in bad:
                    del self._new_badmail[name]
                if bad:
                    self.badmail.arrived(await self.engine.badmail_items(bad))
        finally:
            self._reading = False

    def close(self) -> None:
        self._timer.stop()
        self.stopped()

    def stopped(self) -> None:
        self._new_badmail.clear()
        self._new_drop.clear()

    # -- actions --------------------------------------------------------------------------------

    def delete(self, kind: str, names: list[str]) -> None:
        if not names:
            return
        where = "Badmail" if kind == "badmail" else "Drop"
        what = f"the {where} item {names[0]}" if len(names) == 1 else f"these {len(names):,} {where} items"
        if not self.w.confirm("Delete", f"Delete {what}?\n\nThe files are removed from the {where} folder."):
            return
        model: FolderModel = self.badmail if kind == "badmail" else self.drop  # type: ignore[type-arg]
        call = self.engine.delete_badmail if kind == "badmail" else self.engine.delete_drop

        async def step(name: str) -> None:
            with contextlib.suppress(NotFoundError):  # already gone: what was wanted
                await call(name)
            model.gone([name])

        async def run() -> None:
            batch: Batch[str] = Batch("Delete", f"Deleting {len(names):,} {where} items…", self.w.window(), CONCURRENCY)
            result = await batch.run(names, step)
            result.report(self.messages, "Delete", result.summary("Deleted", f"{where} item"))

        self.runner.spawn(run(), "Delete")

    def resend(self, kind: str, names: list[str]) -> None:
        """Badmail → Pickup: each item is delivered again (or comes back with a new reason). Drop → Pickup: a
        copy is delivered again to its envelope's recipients; the Drop file stays (asked first: mail goes out)."""
        if not names:
            return
        drop = kind == "drop"
        where = "Drop" if drop else "Badmail"
        if drop:
            what = f"the Drop item {names[0]}" if len(names) == 1 else f"these {len(names):,} Drop items"
            copy = "A copy of it" if len(names) == 1 else "A copy of each"
            if not self.w.confirm("Resend", f"Resend {what}?\n\n{copy} goes back into the Pickup directory and is "
                                  "delivered again to its recipients. The Drop file stays."):
                return

        async def step(name: str) -> None:
            if drop:
                await self.engine.resend_drop(name)
            else:
                await self.engine.resend_badmail(name)
                self.badmail.gone([name])

        async def run() -> None:
            batch: Batch[str] = Batch("Resend", f"Putting {len(names):,} {where} items back into Pickup…",
                                      self.w.window(), CONCURRENCY)
            result = await batch.run(names, step)
            result.report(self.messages, "Resend", result.summary("Resent", f"{where} item"))

        self.runner.spawn(run(), "Resend")

    def folder(self, kind: str, selected: str = "") -> Path:
        """The directory of a node; for Drop, the Drop of the selected item's domain (``domain/file``)."""
        mailroot = Mailroot.from_config(self.engine.config())
        if kind == "drop":
            return mailroot.drop_for(split_drop_ref(selected)[0]) if selected else mailroot.drop
        paths = {"badmail": mailroot.badmail, "pickup": mailroot.pickup, "queue": mailroot.queue}
        return paths[kind]

    def open_folder(self, kind: str, selected: str = "") -> None:
        path = self.folder(kind, selected)
        if not self.open_url(QUrl.fromLocalFile(str(path))):
            self.messages.refuse("Open Folder", f"No file manager could open {path}.")

    def open_url(self, url: QUrl) -> bool:
        """Opens a folder in the desktop's file manager; tests replace it."""
        return QDesktopServices.openUrl(url)
