"""The Queue pane's model: every queued message in a local index kept by engine events, sorted and filtered here.

The index is filled from the engine in pages (a first page for a fast first paint, then the rest) and then
follows the engine's events; sorting and filtering run over the local index, never through the engine.

Invariants:
- Rows change by inserts, removes and dataChanged (a changed sort key is a remove and an insert). A reset
  happens only when the user changes the filter, or when one batch changes more than ``BULK`` rows (one reset
  is then cheaper for the view than thousands of signals); the pane keeps the selection by queue id.
- A snapshot (a page of ``list_queue``, a ``queue_items`` answer) never brings back a message whose removal was
  already handled, never overwrites what an event said after the snapshot was asked for, and removes only rows
  the snapshot could have seen (a complete snapshot, asked for after the row appeared).
- Rows are in one total order: (the sort column's key, queue id); descending is the same list read backwards.
"""

from __future__ import annotations

import bisect
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QIcon

from engine.conf.addresses import domain_of
from engine.events import Event, MessageDropped, MessageQueued, MessageRemoved, QueueChanged
from engine.qmgr.queue import QueueItem
from ui.icons import message_icon
from ui.models.table import KEY_ROLE, SORT_ROLE
from ui.units import moment, size_exact, size_text, span, until

Index = QModelIndex | QPersistentModelIndex
BULK = 1500  # a batch that changes more rows than this rebuilds the view with one reset
REMOVED_MEMORY = 200_000  # removal tombstones kept while a snapshot is on its way

STATES = ("queued", "active", "deferred", "etrn", "frozen")
STATE_LABELS = {"queued": "Queued", "active": "Active", "deferred": "Deferred", "etrn": "Held for ETRN",
                "frozen": "Frozen"}
STATE_ORDER = {state: number for number, state in enumerate(STATES)}
STATE_COLORS = {"deferred": QColor("#a4262c"), "frozen": QColor("#1f5fae"), "active": QColor("#2e7d32"),
                "etrn": QColor("#6a3d9a")}


def display_state(item: QueueItem | Row) -> str:
    """The engine's queued / active / frozen, with "deferred" for a queued message that has failed before and
    "etrn" for one whose every pending recipient waits for ETRN (no attempt is made until then)."""
    if item.state in ("frozen", "active"):
        return item.state
    if item.etrn_held and all_held(item.pending, item.etrn_held):
        return "etrn"
    return "deferred" if item.attempts > 0 else "queued"


def all_held(pending: tuple[str, ...], held: tuple[str, ...]) -> bool:
    return all(domain_of(address).lower() in held for address in pending)


def countdown(item: QueueItem | Row, now: float) -> str:
    """The Next Retry column: a live countdown, or why there is none."""
    state = display_state(item)
    if state == "frozen":
        return "Held (frozen)"
    if state == "etrn":
        return f"Waiting for ETRN from {', '.join(item.etrn_held)}"
    if state == "active":
        return "Now"
    if not item.pending:
        return "—"
    left = int(item.next_attempt - now)
    return "Due" if left <= 0 else until(left)


def recipients_text(item: QueueItem | Row) -> str:
    shown = item.pending or item.recipients
    if not shown:
        return ""
    more = len(shown) - 1
    return shown[0] + (f" (+{more})" if more else "")


def target_domains(item: QueueItem | Row) -> tuple[str, ...]:
    """The domains of the recipients still pending (all of them once none is), each string shared (interned):
    100,000 messages go to a few hundred domains."""
    addresses = item.pending or item.recipients
    if len(addresses) == 1:
        return (sys.intern(domain_of(addresses[0])),)
    return tuple(dict.fromkeys(sys.intern(domain_of(address)) for address in addresses))


class Row:
    """One message as the model keeps it: the engine's item itself (not a copy of its fields: 100,000 rows are
    held, and the items of a whole-queue listing would otherwise be left behind as garbage the process keeps),
    its display state, its subject and — only when asked — its target domains and search text."""

    __slots__ = ("_domains", "item", "state", "subject")

    def __init__(self, item: QueueItem, subject: str = "") -> None:
        self.item = item
        self.subject = subject
        self.state = display_state(item)
        self._domains: tuple[str, ...] | None = None

    @property
    def queue_id(self) -> str:
        return self.item.queue_id

    @property
    def sender(self) -> str:
        return self.item.sender

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.item.recipients

    @property
    def pending(self) -> tuple[str, ...]:
        return self.item.pending

    @property
    def size(self) -> int:
        return self.item.size

    @property
    def arrived(self) -> float:
        return self.item.arrived

    @property
    def attempts(self) -> int:
        return self.item.attempts

    @property
    def next_attempt(self) -> float:
        return self.item.next_attempt

    @property
    def engine_state(self) -> str:
        return self.item.state

    @property
    def last_error(self) -> str:
        return self.item.last_error

    @property
    def source(self) -> str:
        return self.item.source

    @property
    def etrn_held(self) -> tuple[str, ...]:
        return self.item.etrn_held

    def same(self, item: QueueItem) -> bool:
        return self.item == item

    @property
    def domains(self) -> tuple[str, ...]:
        if self._domains is None:
            self._domains = target_domains(self)
        return self._domains

    @property
    def haystack(self) -> str:
        """What the search looks in: id, sender, recipients, last error and subject, case-folded (made for each
        search, not kept: 100,000 of them would cost 15 MB)."""
        return "\n".join((self.queue_id, self.sender, *self.recipients, self.last_error, self.subject)).casefold()


@dataclass(frozen=True)
class QueueColumn:
    title: str
    text: Callable[[Row, float], str]
    key: Callable[[Row], Any]
    engine_sort: str | None = None  # the list_queue sort key giving the same order (ascending), if any
    engine_descending: bool = False
    right: bool = False
    width: int = 100


COLUMNS: tuple[QueueColumn, ...] = (  # what an administrator reads first comes first
    QueueColumn("State", lambda r, now: STATE_LABELS[r.state], lambda r: STATE_ORDER[r.state], width=112),
    QueueColumn("Next Retry", lambda r, now: countdown(r, now),
                lambda r: (r.state in ("frozen", "etrn"), 0.0 if r.state == "active" else r.next_attempt),
                right=True, width=95),
    QueueColumn("Attempts", lambda r, now: str(r.attempts), lambda r: r.attempts,
                engine_sort="attempts", right=True, width=62),
    QueueColumn("Target Domains", lambda r, now: ", ".join(r.domains), lambda r: r.domains, engine_sort="domain",
                width=140),
    QueueColumn("Last Error", lambda r, now: " ".join(r.last_error.split()),
                lambda r: r.last_error.casefold(), width=300),
    QueueColumn("Recipients", lambda r, now: recipients_text(r),
                lambda r: (recipients_text(r).casefold(), len(r.recipients)), width=200),
    QueueColumn("Subject", lambda r, now: r.subject, lambda r: r.subject.casefold(), width=165),
    QueueColumn("Sender", lambda r, now: r.sender or "<>", lambda r: r.sender.casefold(),
                engine_sort="sender", width=165),
    QueueColumn("Age", lambda r, now: span(now - r.arrived), lambda r: -r.arrived,
                engine_sort="age", engine_descending=True, right=True, width=80),
    QueueColumn("Size", lambda r, now: size_text(r.size), lambda r: r.size, engine_sort="size",
                right=True, width=75),
    QueueColumn("Queue ID", lambda r, now: r.queue_id, lambda r: r.queue_id, width=200),
)
COLUMN = {column.title: number for number, column in enumerate(COLUMNS)}
TICKING = (COLUMN["Age"], COLUMN["Next Retry"])
SUBJECT_COLUMN = COLUMN["Subject"]


def prepare_rows(items: Iterable[QueueItem]) -> dict[str, Row]:
    """Rows for ``apply_snapshot(rows=...)``: made beforehand (in chunks, between event-loop turns)."""
    return {item.queue_id: Row(item) for item in items}


@dataclass(frozen=True)
class QueueFilter:
    """What the pane shows: text in sender/recipients/subject/error/id, a state, a target domain, an age range."""

    text: str = ""
    state: str = ""  # "" = any, else one of STATES
    domain: str = ""  # "" = any
    age: tuple[float, float] | None = None  # [from, to) seconds old, evaluated when the filter is applied
    age_label: str = ""

    @property
    def active(self) -> bool:
        return bool(self.text or self.state or self.domain or self.age)

    def matcher(self, now: float) -> Callable[[Row], bool]:
        needle = self.text.strip().casefold()
        state, domain, age = self.state, self.domain.casefold(), self.age

        def matches(row: Row) -> bool:
            if needle and needle not in row.haystack:
                return False
            if state and row.state != state:
                return False
            if domain and domain not in row.domains:
                return False
            return not (age and not age[0] <= now - row.arrived < age[1])

        return matches


class QueueModel(QAbstractTableModel):
    """``apply_events`` keeps it live; ``snapshot_started``/``apply_snapshot`` load it; the view calls ``sort``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.columns = COLUMNS
        self._rows: dict[str, Row] = {}
        self._view: list[str] = []  # shown ids, ascending in (key, id)
        self._sort_column = COLUMN["Age"]
        self._descending = True  # oldest first, as mailq
        self._filter = QueueFilter()
        self._match: Callable[[Row], bool] = lambda row: True
        self.live = False  # set once a load started; events before it are left to the first snapshot
        self._generation = 0
        self._in_flight = 0
        self._removed: dict[str, None] = {}  # tombstones while a snapshot is on its way
        self._event_generation: dict[str, int] = {}  # id → generation when an event last wrote its row
        self._now = clock()
        self._prepared: Mapping[str, Row] = {}

    # -- Qt model --------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._view)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        column = self.columns[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.title
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int((Qt.AlignmentFlag.AlignRight if column.right else Qt.AlignmentFlag.AlignLeft)
                       | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.column() >= len(self.columns):
            return None
        row = self.row_at(index)
        if row is None:
            return None
        column = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(row, self._now)
        if role == KEY_ROLE:
            return row.queue_id
        if role == Qt.ItemDataRole.DecorationRole and index.column() == 0:
            return self.icon(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == COLUMN["State"]:
            color = STATE_COLORS.get(row.state)
            return QBrush(color) if color is not None else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(row, index.column())
        if role == SORT_ROLE:
            return column.key(row)
        return None

    def icon(self, row: Row) -> QIcon:
        return message_icon(row.state)

    def tooltip(self, row: Row, column: int) -> str | None:
        item = row
        if column == COLUMN["Recipients"]:
            pending = set(item.pending)
            return "\n".join(f"{address}{'' if address in pending else '  (done)'}" for address in item.recipients)
        if column == COLUMN["Last Error"] and item.last_error:
            return item.last_error
        if column == COLUMN["Age"]:
            return f"Arrived {moment(item.arrived)}"
        if column == COLUMN["Next Retry"] and item.pending and row.state in ("queued", "deferred"):
            return f"Next attempt {moment(max(item.next_attempt, item.arrived))}"
        if column == COLUMN["Next Retry"] and row.state == "etrn":
            return (f"Held until {', '.join(item.etrn_held)} sends ETRN (or Release for ETRN): no attempt is "
                    "made and the message does not expire meanwhile")
        if column == COLUMN["Size"]:
            return size_exact(item.size)
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(self.columns):
            return
        descending = order == Qt.SortOrder.DescendingOrder
        if (column, descending) == (self._sort_column, self._descending):
            return
        self.layoutAboutToBeChanged.emit()
        old_ids = {persistent: self.id_at(persistent.row()) for persistent in self.persistentIndexList()}
        same_order = column == self._sort_column
        self._sort_column, self._descending = column, descending
        if not same_order:
            self._sort_view()
        positions = {queue_id: position for position, queue_id in enumerate(self._view)} if old_ids else {}
        count = len(self._view)
        old: list[QModelIndex] = []
        new: list[QModelIndex] = []
        for persistent, queue_id in old_ids.items():
            position = positions.get(queue_id) if queue_id is not None else None
            old.append(self.index(persistent.row(), persistent.column()))
            new.append(QModelIndex() if position is None else
                       self.index(self._row_of(position, count), persistent.column()))
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def sort_column(self) -> int:
        return self._sort_column

    @property
    def descending(self) -> bool:
        return self._descending

    @property
    def filter(self) -> QueueFilter:
        return self._filter

    @property
    def total(self) -> int:
        """Messages in the index (the queue), filtered or not."""
        return len(self._rows)

    def engine_sort(self) -> tuple[str, bool]:
        """The list_queue order closest to the view's, so that a first page holds the rows shown first."""
        column = self.columns[self._sort_column]
        if column.engine_sort is None:
            return "age", False
        return column.engine_sort, column.engine_descending != self._descending

    def id_at(self, row: int) -> str | None:
        count = len(self._view)
        if not 0 <= row < count:
            return None
        return self._view[row if not self._descending else count - 1 - row]

    def row_at(self, index: Index) -> Row | None:
        queue_id = self.id_at(index.row()) if index.isValid() else None
        return self._rows.get(queue_id) if queue_id is not None else None

    def get(self, queue_id: str) -> QueueItem | None:
        row = self._rows.get(queue_id)
        return row.item if row is not None else None

    def row_of(self, queue_id: str) -> int:
        """The view row of a message, -1 when it is not shown."""
        row = self._rows.get(queue_id)
        if row is None:
            return -1
        position = self._find(queue_id, row)
        return -1 if position < 0 else self._row_of(position, len(self._view))

    def items(self) -> Iterable[QueueItem]:
        """Every message of the index, unfiltered, in no particular order."""
        return (row.item for row in self._rows.values())

    def rows(self) -> Iterable[Row]:
        return self._rows.values()

    def shown_ids(self) -> list[str]:
        return self._view[::-1] if self._descending else list(self._view)

    # -- loading ---------------------------------------------------------------------------------

    def snapshot_started(self) -> int:
        """Call just before asking the engine for a snapshot; pass the result to ``apply_snapshot``."""
        self.live = True
        self._generation += 1
        self._in_flight += 1
        return self._generation

    def snapshot_failed(self, generation: int) -> None:
        self._snapshot_done()

    def apply_snapshot(self, generation: int, items: Sequence[QueueItem], *, complete: bool,
                       rows: Mapping[str, Row] | None = None) -> set[str]:
        """Merge a snapshot asked for at ``generation``; ``complete``: it lists the whole queue; ``rows``: Row
        objects already made from (some of) these items (``prepare_rows``), so that this call stays short.

        Returns the ids an event changed while the snapshot was on its way: ask for them again."""
        self._prepared = rows or {}
        newer: set[str] = set()
        final: dict[str, QueueItem | None] = {}
        for item in items:
            queue_id = item.queue_id
            if queue_id in self._removed:
                continue
            if self._event_generation.get(queue_id, 0) >= generation:
                newer.add(queue_id)
                continue
            row = self._rows.get(queue_id)
            if row is None or not row.same(item):
                final[queue_id] = item
        if complete:
            seen = {item.queue_id for item in items}
            for queue_id in self._rows:
                if queue_id not in seen and self._event_generation.get(queue_id, 0) < generation:
                    final[queue_id] = None
        try:
            self._apply(final)
        finally:
            self._prepared = {}
        self._snapshot_done()
        return newer

    def _snapshot_done(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        if not self._in_flight:
            self._removed.clear()
            self._event_generation.clear()

    def clear(self) -> None:
        """The engine stopped: no queue to show until the next load."""
        self.beginResetModel()
        self._rows.clear()
        self._view.clear()
        self.endResetModel()
        self.live = False

    # -- events ----------------------------------------------------------------------------------

    def apply_events(self, batch: Iterable[Event]) -> set[str]:
        """Follow the engine's queue events; returns ids whose new state only the engine knows (ask for them)."""
        if not self.live:
            return set()
        final: dict[str, QueueItem | None] = {}
        refetch: set[str] = set()

        def current(queue_id: str) -> QueueItem | None:
            if queue_id in final:
                return final[queue_id]
            row = self._rows.get(queue_id)
            return row.item if row is not None else None

        for event in batch:
            if isinstance(event, MessageQueued):
                if event.queue_id not in self._removed:
                    final[event.queue_id] = QueueItem(
                        event.queue_id, event.sender, event.recipients, event.recipients, event.size, event.at,
                        0, event.at, "queued", "", event.source)
            elif isinstance(event, MessageDropped):
                item = current(event.queue_id)
                if item is not None:
                    delivered = set(event.recipients)
                    pending = tuple(r for r in item.pending if r not in delivered)
                    final[event.queue_id] = replace(item, pending=pending) if pending else None
            elif isinstance(event, MessageRemoved):
                final[event.queue_id] = None
            elif isinstance(event, QueueChanged):
                item = current(event.queue_id)
                if item is None:
                    continue
                if event.what == "frozen":
                    final[event.queue_id] = replace(item, state="frozen")
                elif event.what == "thawed":
                    final[event.queue_id] = replace(item, state="queued")
                elif event.what == "retry scheduled":
                    final[event.queue_id] = replace(item, next_attempt=0.0)
                else:  # "attempted", or news this model cannot work out by itself
                    refetch.add(event.queue_id)
        for queue_id, item in final.items():
            if item is None:
                self._remember_removed(queue_id)
                refetch.discard(queue_id)
            elif self._in_flight:
                self._event_generation[queue_id] = self._generation
        self._apply(final)
        return refetch

    def _remember_removed(self, queue_id: str) -> None:
        if not self._in_flight:
            return
        self._removed[queue_id] = None
        if len(self._removed) > REMOVED_MEMORY:
            del self._removed[next(iter(self._removed))]

    def set_subjects(self, subjects: dict[str, str]) -> None:
        """Subjects read for these messages (the search looks in them too): one dataChanged for the column, or,
        when the subject decides order or membership (sorted by it, a text filter), the view is rebuilt."""
        changed = False
        for queue_id, subject in subjects.items():
            row = self._rows.get(queue_id)
            if row is not None and row.subject != subject:
                if not changed and (self._filter.text or self._sort_column == SUBJECT_COLUMN):
                    self.beginResetModel()
                changed = True
                row.subject = subject
        if not changed:
            return
        if self._filter.text or self._sort_column == SUBJECT_COLUMN:
            self._rebuild_view()
            self.endResetModel()
        elif self._view:
            self.dataChanged.emit(self.index(0, SUBJECT_COLUMN), self.index(len(self._view) - 1, SUBJECT_COLUMN),
                                  [Qt.ItemDataRole.DisplayRole])

    def subject_of(self, queue_id: str) -> str | None:
        row = self._rows.get(queue_id)
        return row.subject if row is not None else None

    # -- filter and clock ------------------------------------------------------------------------

    def set_filter(self, wanted: QueueFilter) -> None:
        """Show only the matching messages (a reset: the pane keeps the selection by id)."""
        self._filter = wanted
        self._now = self.clock()
        self._match = wanted.matcher(self._now) if wanted.active else (lambda row: True)
        self.beginResetModel()
        self._rebuild_view()
        self.endResetModel()

    @property
    def now(self) -> float:
        """The moment the Age and Next Retry columns are written for (the last tick)."""
        return self._now

    def tick(self) -> None:
        """The clock moved: Age and Next Retry change in every row (one dataChanged, no reset)."""
        self._now = self.clock()
        if self._view:
            self.dataChanged.emit(self.index(0, min(TICKING)), self.index(len(self._view) - 1, max(TICKING)),
                                  [Qt.ItemDataRole.DisplayRole])

    # -- changing --------------------------------------------------------------------------------

    def _key(self, queue_id: str) -> tuple[Any, str]:
        return self.columns[self._sort_column].key(self._rows[queue_id]), queue_id

    def _row_of(self, position: int, count: int) -> int:
        return position if not self._descending else count - 1 - position

    def _find(self, queue_id: str, row: Row) -> int:
        """The position of a shown row in ``_view`` (by its key as stored now), or -1."""
        key = (self.columns[self._sort_column].key(row), queue_id)
        position = bisect.bisect_left(self._view, key, key=self._key)
        return position if position < len(self._view) and self._view[position] == queue_id else -1

    def _rebuild_view(self) -> None:
        match = self._match
        self._view = [queue_id for queue_id, row in self._rows.items() if match(row)]
        self._sort_view()

    def _sort_view(self) -> None:
        """Sort by (key, id): by id, then stably by key (no tuple per row; ids are unique)."""
        rows, key = self._rows, self.columns[self._sort_column].key
        self._view.sort()
        self._view.sort(key=lambda queue_id: key(rows[queue_id]))

    def _apply(self, final: dict[str, QueueItem | None]) -> None:
        """Make the index hold ``final`` (None: gone): removes, then updates, then inserts."""
        final = {queue_id: item for queue_id, item in final.items()
                 if not (item is None and queue_id not in self._rows)}
        if not final:
            return
        if len(final) > BULK or not self._rows:  # (a first load: one reset, not a signal per row)
            self.beginResetModel()
            for queue_id, item in final.items():
                self._store(queue_id, item)
            self._rebuild_view()
            self.endResetModel()
            return
        key = self.columns[self._sort_column].key
        fresh: list[str] = []
        for queue_id, item in final.items():
            row = self._rows.get(queue_id)
            if row is None:
                continue
            new_row = Row(item, row.subject) if item is not None else None
            shown = self._find(queue_id, row)
            stays = new_row is not None and self._match(new_row)
            if shown >= 0 and not stays:
                self._remove_position(shown)
            self._store(queue_id, item, new_row)
            if new_row is None or not stays:
                continue
            if shown < 0:
                fresh.append(queue_id)
            elif key(row) != key(new_row):
                self._move(queue_id, shown)
            else:
                self._changed(shown)
        for queue_id, item in final.items():
            if item is not None and queue_id not in self._rows:
                self._store(queue_id, item)
                if self._match(self._rows[queue_id]):
                    fresh.append(queue_id)
        for queue_id in fresh:
            self._insert(queue_id)

    def _changed(self, position: int) -> None:
        view_row = self._row_of(position, len(self._view))
        self.dataChanged.emit(self.index(view_row, 0), self.index(view_row, len(self.columns) - 1))

    def _move(self, queue_id: str, old: int) -> None:
        """A shown row whose sort key changed (its new row is stored): a row move, so the selection follows it."""
        count = len(self._view)
        del self._view[old]
        new = bisect.bisect_left(self._view, self._key(queue_id), key=self._key)
        self._view.insert(old, queue_id)
        source, target = self._row_of(old, count), self._row_of(new, count)
        if source != target:
            self.beginMoveRows(QModelIndex(), source, source, QModelIndex(), target + 1 if target > source else target)
            del self._view[old]
            self._view.insert(new, queue_id)
            self.endMoveRows()
        self._changed(new)

    def _store(self, queue_id: str, item: QueueItem | None, row: Row | None = None) -> None:
        if item is None:
            self._rows.pop(queue_id, None)
            return
        old = self._rows.get(queue_id)
        subject = old.subject if old is not None else ""
        if row is None:
            row = self._prepared.get(queue_id)
            if row is not None and row.subject != subject:
                row.subject = subject
        self._rows[queue_id] = row or Row(item, subject)

    def _remove_position(self, position: int) -> None:
        view_row = self._row_of(position, len(self._view))
        self.beginRemoveRows(QModelIndex(), view_row, view_row)
        del self._view[position]
        self.endRemoveRows()

    def _insert(self, queue_id: str) -> None:
        position = bisect.bisect_left(self._view, self._key(queue_id), key=self._key)
        count = len(self._view)
        view_row = position if not self._descending else count - position
        self.beginInsertRows(QModelIndex(), view_row, view_row)
        self._view.insert(position, queue_id)
        self.endInsertRows()
