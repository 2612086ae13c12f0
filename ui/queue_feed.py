"""Feeds the Queue model from the engine: a first page, then the rest in pages by queue id; refetches what events
cannot tell; subjects for the rows painted (and for all while a search or the Subject order needs them).

Invariants: at most one load and one refetch run at a time; a refetch of more than ``RELOAD_OVER`` messages is
a full reload instead; every snapshot asked for is either applied or reported failed to the model (its
bookkeeping of snapshots on their way must not leak). The rest is read in pages (``queue_page``) so that the
engine's snapshots of 100,000 messages never exist at once in the window's process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from PySide6.QtCore import QObject, QTimer, Signal

from engine.errors import StateError
from engine.events import Event, QueueRecovery
from ui.facade import EngineFacade
from ui.models.queue import QueueModel
from ui.tasks import TaskRunner

FIRST_PAGE = 300  # rows of the first paint
PAGE = 2500  # messages per queue_page call for the rest
WHOLE_QUEUE = 1 << 31  # list_queue's limit for "the rest" of a stopped server's folder (read at once)
REFETCH_BATCH = 500  # messages per queue_items call
RELOAD_OVER = 5000  # more messages to refetch than this: reload the whole queue instead
SUBJECT_BATCH = 500  # subjects per call; each call reads that many message heads on the engine's side
SUBJECT_PAUSE_S = 0.05  # between calls for every subject: reading 100,000 heads competes with the window for the GIL
REFETCH_DELAY_MS = 150  # events are coalesced this long before asking the engine


class QueueFeed(QObject):
    loading_changed = Signal(bool)
    loaded = Signal()

    def __init__(self, engine: EngineFacade, model: QueueModel, runner: TaskRunner) -> None:
        super().__init__()
        self.engine = engine
        self.model = model
        self.runner = runner
        self.loading = False
        self._reload_again = False
        self._refetch: set[str] = set()
        self._painted: dict[str, None] = {}  # subjects of rows painted: asked for first
        self._every: list[str] = []  # every subject not read yet (a search, the Subject order), from _every_at on
        self._every_at = 0
        self._busy_refetch = False
        self._busy_subjects = False
        self.closed = False
        self.offline = False  # the rows are a read-only scan of the Queue folder (the server is stopped)
        self.partial = False  # the last load was listed while the engine was still recovering its queue
        self.read_at = 0.0  # when they were read (time.time())
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFETCH_DELAY_MS)
        self._timer.timeout.connect(self._flush)
        model.subjects_wanted = self.want_subjects

    # -- loading ---------------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)load the whole queue: a first page for the first paint, then the rest in one snapshot."""
        if self.closed:
            return
        if self.loading:
            self._reload_again = True
            return
        self.loading = True
        self.loading_changed.emit(True)
        self.runner.spawn(self._load(), "Queue")

    async def _load(self) -> None:
        try:
            while True:
                self._reload_again = False
                await self._load_once()
                if not self._reload_again:
                    break
        finally:
            self.loading = False
            self.loading_changed.emit(False)
        self.loaded.emit()

    async def _load_once(self) -> None:
        model = self.model
        sort, descending = model.engine_sort()
        generation = model.snapshot_started()
        try:
            page = await self.engine.list_queue(0, FIRST_PAGE, sort, descending)
        except StateError:  # stopped meanwhile: nothing to show
            model.snapshot_failed(generation)
            return
        except BaseException:
            model.snapshot_failed(generation)
            raise
        complete = page.total <= len(page.items)
        self.offline, self.read_at, self.partial = page.offline, time.time(), page.recovering
        model.offline = page.offline
        newer = model.apply_snapshot(generation, page.items, complete=complete)
        del page
        if complete:
            self.refetch(newer)
            return
        if self.offline:  # a read-only scan of the folder: each call reads it all, so once
            generation = model.snapshot_started()
            try:
                page = await self.engine.list_queue(0, WHOLE_QUEUE, "age", False)
            except BaseException:
                model.snapshot_failed(generation)
                raise
            newer |= model.apply_snapshot(generation, page.items, complete=True)
        else:
            newer |= await self._load_pages()
        self.refetch(newer)

    async def _load_pages(self) -> set[str]:
        """Every message in pages by queue id; each page also removes the rows of its id range it did not list."""
        model, after, newer = self.model, "", set()
        while not self.closed:
            generation = model.snapshot_started()
            try:
                page = await self.engine.queue_page(after, PAGE)
            except StateError:
                model.snapshot_failed(generation)
                break
            except BaseException:
                model.snapshot_failed(generation)
                raise
            self.partial = page.recovering
            end = len(page.items) < PAGE
            last = page.items[-1].queue_id if page.items else after
            newer |= model.apply_snapshot(generation, page.items, complete=False, span=(after, None if end else last))
            if end:
                break
            after = last
            del page
            await asyncio.sleep(0)  # the window paints and follows events between pages
        return newer

    # -- following events ------------------------------------------------------------------------

    def on_events(self, batch: list[Event]) -> None:
        self.refetch(self.model.apply_events(batch))
        if self.model.live and any(isinstance(e, QueueRecovery) and e.finished for e in batch):
            self.load()  # what was listed during the engine's start was partial: the whole queue now

    def refetch(self, queue_ids: Iterable[str]) -> None:
        self._refetch.update(queue_ids)
        if self._refetch and not self._timer.isActive():
            self._timer.start()

    def want_subjects(self, queue_ids: Iterable[str], every: bool = False) -> None:
        """Read these subjects: rows painted (soon, first), or ``every`` one not read yet (replacing the last
        such list)."""
        if every:
            self._every, self._every_at = list(queue_ids), 0
        else:
            self._painted.update(dict.fromkeys(queue_ids))
        if (self._painted or self._every) and not self._timer.isActive() and not self.closed:
            self._timer.start()

    def _flush(self) -> None:
        if self.closed:
            return
        if self._refetch and not self._busy_refetch:
            if len(self._refetch) > RELOAD_OVER:
                self._refetch.clear()
                self.load()
            else:
                self._busy_refetch = True
                self.runner.spawn(self._run_refetch(), "Queue")
        if (self._painted or self._every) and not self._busy_subjects:
            self._busy_subjects = True
            self.runner.spawn(self._run_subjects(), "Queue")

    async def _run_refetch(self) -> None:
        try:
            while self._refetch:
                batch = [self._refetch.pop() for _ in range(min(REFETCH_BATCH, len(self._refetch)))]
                generation = self.model.snapshot_started()
                try:
                    items = await self.engine.queue_items(batch)
                except StateError:
                    self.model.snapshot_failed(generation)
                    return
                except BaseException:
                    self.model.snapshot_failed(generation)
                    raise
                # Those not found left the queue: their MessageRemoved event is on its way or was handled.
                self._refetch |= self.model.apply_snapshot(generation, items, complete=False)
        finally:
            self._busy_refetch = False

    def _subject_batch(self) -> tuple[list[str], bool]:
        """The next subjects to read (painted rows first); True if they came from the list of every one."""
        model = self.model
        if self._painted:
            wanted = [queue_id for queue_id in self._painted if model.needs_subject(queue_id)]
            self._painted = dict.fromkeys(wanted[SUBJECT_BATCH:])
            if wanted:
                return wanted[:SUBJECT_BATCH], False
        batch: list[str] = []
        while self._every_at < len(self._every) and not batch:
            chunk = self._every[self._every_at:self._every_at + SUBJECT_BATCH]
            self._every_at += len(chunk)
            batch = [queue_id for queue_id in chunk if model.needs_subject(queue_id)]
        if self._every_at >= len(self._every):
            self._every, self._every_at = [], 0
        return batch, True

    async def _run_subjects(self) -> None:
        try:
            while self.model.live and not self.closed:
                batch, every = self._subject_batch()
                if not batch:
                    break
                try:
                    subjects = await self.engine.queue_subjects(batch)
                except StateError:  # stopped: asked again when rows are painted after the next load
                    self._painted.clear()
                    self._every, self._every_at = [], 0
                    return
                if self._gone():
                    return
                # One not found left the queue (or cannot be read): "" so that painting it does not ask again.
                self.model.set_subjects({queue_id: subjects.get(queue_id, "") for queue_id in batch})
                if every:
                    await asyncio.sleep(SUBJECT_PAUSE_S)
        finally:
            self._busy_subjects = False
            if (self._painted or self._every) and not self._timer.isActive() and not self.closed:
                self._timer.start()

    def _gone(self) -> bool:
        """The model was cleared (the engine stopped) or the window closed while we waited."""
        return self.closed or not self.model.live

    def close(self) -> None:
        """The window closes: nothing more is asked of the engine."""
        self.closed = True
        self._timer.stop()
        self._refetch.clear()
        self._painted.clear()
        self._every, self._every_at = [], 0

    def stopped(self) -> None:
        """The engine stopped (or started after an offline read): the rows shown are no longer its queue."""
        self._refetch.clear()
        self._painted.clear()
        self._every, self._every_at = [], 0
        self.model.clear()
        self.offline = self.model.offline = False
