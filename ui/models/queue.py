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
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QIcon

from engine.events import Event, MessageDropped, MessageQueued, MessageRemoved, QueueChanged
from engine.qmgr.queue import QueueItem
from ui.icons import message_icon
from ui.models.queue_rows import STATES, QueueRows, display_state
from ui.models.queue_rows import target_domains as domains_of
from ui.models.table import KEY_ROLE, SORT_ROLE
from ui.units import moment, size_exact, size_text, span, until

__all__ = ["COLUMN", "STATES", "QueueFilter", "QueueModel", "countdown", "display_state", "target_domains"]

Index = QModelIndex | QPersistentModelIndex
BULK = 1500  # a batch that changes more rows than this rebuilds the view with one reset
REMOVED_MEMORY = 200_000  # removal tombstones kept while a snapshot is on its way
PERSISTENT_BY_SEARCH = 200  # up to this many persistent indexes are found again after a sort by a search each

STATE_LABELS = {"queued": "Queued", "active": "Active", "deferred": "Deferred", "etrn": "Held for ETRN",
                "frozen": "Frozen"}
STATE_ORDER = {state: number for number, state in enumerate(STATES)}
STATE_COLORS = {"deferred": QColor("#a4262c"), "frozen": QColor("#1f5fae"), "active": QColor("#2e7d32"),
                "etrn": QColor("#6a3d9a")}


def countdown(item: QueueItem, now: float) -> str:
    """The Next Retry column: a live countdown, or why there is none."""
    return countdown_text(display_state(item), item.next_attempt, item.etrn_held, bool(item.pending), now)


def countdown_text(state: str, next_attempt: float, etrn_held: tuple[str, ...], pending: bool, now: float) -> str:
    if state == "frozen":
        return "Held (frozen)"
    if state == "etrn":
        return f"Waiting for ETRN from {', '.join(etrn_held)}"
    if state == "active":
        return "Now"
    if not pending:
        return "—"
    left = int(next_attempt - now)
    return "Due" if left <= 0 else until(left)


def target_domains(item: QueueItem) -> tuple[str, ...]:
    """The domains of the recipients still pending (all of them once none is)."""
    return domains_of(item.pending or item.recipients)


def recipients_text(rows: QueueRows, slot: int) -> str:
    more = rows.shown_count(slot) - 1
    return rows.first_shown(slot) + (f" (+{more})" if more > 0 else "")


OFFLINE_RETRY = "Stopped"  # Next Retry of a scheduled message in a stopped server's folder scan
HELD_AFTER = 1e15  # added to the Next Retry key of a held message, after every scheduled one (one float, not a
                  # tuple: sorting 100,000 rows makes 100,000 keys)
_FROZEN, _ETRN, _ACTIVE = STATES.index("frozen"), STATES.index("etrn"), STATES.index("active")


def _next_retry_key(rows: QueueRows, slot: int) -> float:
    state = rows.state[slot]
    when = 0.0 if state == _ACTIVE else rows.next_attempt[slot]
    return when + HELD_AFTER if state in (_FROZEN, _ETRN) else when


def _sender_key(rows: QueueRows, slot: int) -> str:
    """The sender case-folded once per distinct sender (the rows share their sender strings)."""
    sender = rows.sender[slot]
    folded = _FOLDED.get(sender)
    if folded is None:
        if len(_FOLDED) > FOLDED_MAX:
            _FOLDED.clear()
        folded = _FOLDED[sender] = sender.casefold()
    return folded


FOLDED_MAX = 20_000
_FOLDED: dict[str, str] = {}


@dataclass(frozen=True)
class QueueColumn:
    title: str
    text: Callable[[QueueRows, int, float], str]  # (rows, slot, now)
    key: Callable[[QueueRows, int], Any]
    engine_sort: str | None = None  # the list_queue sort key giving the same order (ascending), if any
    engine_descending: bool = False
    right: bool = False
    width: int = 100


COLUMNS: tuple[QueueColumn, ...] = (  # what an administrator reads first comes first
    QueueColumn("State", lambda r, s, now: STATE_LABELS[STATES[r.state[s]]], lambda r, s: r.state[s], width=112),
    QueueColumn("Next Retry", lambda r, s, now: countdown_text(STATES[r.state[s]], r.next_attempt[s], r.etrn_held[s],
                                                               r.has_pending(s), now),
                _next_retry_key, right=True, width=95),
    QueueColumn("Attempts", lambda r, s, now: str(r.attempts[s]), lambda r, s: r.attempts[s],
                engine_sort="attempts", right=True, width=62),
    QueueColumn("Target Domains", lambda r, s, now: ", ".join(r.domains[s]), lambda r, s: r.domains[s],
                engine_sort="domain", width=140),
    QueueColumn("Last Error", lambda r, s, now: " ".join(r.last_error.get(s).split()),
                lambda r, s: r.last_error.get(s).casefold(), width=300),
    QueueColumn("Recipients", lambda r, s, now: recipients_text(r, s),
                lambda r, s: (recipients_text(r, s).casefold(), r.count[s]), width=200),
    QueueColumn("Subject", lambda r, s, now: r.subject_of(s) or "", lambda r, s: (r.subject_of(s) or "").casefold(),
                width=165),
    QueueColumn("Sender", lambda r, s, now: r.sender[s] or "<>", _sender_key,
                engine_sort="sender", width=165),
    QueueColumn("Age", lambda r, s, now: span(now - r.arrived[s]), lambda r, s: -r.arrived[s],
                engine_sort="age", engine_descending=True, right=True, width=80),
    QueueColumn("Size", lambda r, s, now: size_text(r.size[s]), lambda r, s: r.size[s], engine_sort="size",
                right=True, width=75),
    QueueColumn("Queue ID", lambda r, s, now: r.ids[s], lambda r, s: r.ids[s], width=200),
)
COLUMN = {column.title: number for number, column in enumerate(COLUMNS)}
TICKING = (COLUMN["Age"], COLUMN["Next Retry"])
SUBJECT_COLUMN = COLUMN["Subject"]


def haystack(rows: QueueRows, slot: int) -> str:
    """What the search looks in: id, sender, recipients, last error and subject, case-folded (made for each
    search, not kept)."""
    return "\n".join((rows.ids[slot], rows.sender[slot], rows.recipients.get(slot), rows.last_error.get(slot),
                      rows.subject_of(slot) or "")).casefold()


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

    def matcher(self, rows: QueueRows, now: float) -> Callable[[int], bool]:
        """Whether the message in a slot of ``rows`` is shown."""
        needle = self.text.strip().casefold()
        state = STATES.index(self.state) if self.state in STATES else -1
        domain, age = self.domain.casefold(), self.age

        def matches(slot: int) -> bool:
            if state >= 0 and rows.state[slot] != state:
                return False
            if domain and domain not in rows.domains[slot]:
                return False
            if age and not age[0] <= now - rows.arrived[slot] < age[1]:
                return False
            return not (needle and needle not in haystack(rows, slot))

        return matches


class QueueModel(QAbstractTableModel):
    """``apply_events`` keeps it live; ``snapshot_started``/``apply_snapshot`` load it; the view calls ``sort``.

    The rows are compact columns (``QueueRows``); the view is the list of shown ids in order. Subjects are read
    only for the rows painted, and for every row while a text search or the Subject order needs them:
    ``subjects_wanted`` is told which."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.columns = COLUMNS
        self.store = QueueRows()
        self._view: list[str] = []  # shown ids, ascending in (key, id)
        self._sort_column = COLUMN["Age"]
        self._descending = True  # oldest first, as mailq
        self._filter = QueueFilter()
        self._match: Callable[[int], bool] = lambda slot: True
        self.live = False  # set once a load started; events before it are left to the first snapshot
        self.offline = False  # the rows are a read-only scan of a stopped server's Queue folder: nothing is due
        self._generation = 0
        self._in_flight = 0
        self._removed: dict[str, None] = {}  # tombstones while a snapshot is on its way
        self._event_generation: dict[str, int] = {}  # id → generation when an event last wrote its row
        self._now = clock()
        # (ids, every): read these subjects — painted rows, or every one not read yet; set by the feed
        self.subjects_wanted: Callable[[Iterable[str], bool], None] = lambda queue_ids, every: None
        self._pending_subjects: dict[str, str] = {}  # of rows about to be inserted by one batch of events

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
        queue_id = self.id_at(index.row())
        slot = self.store.slot(queue_id) if queue_id is not None else None
        if slot is None:
            return None
        rows, number = self.store, index.column()
        column = self.columns[number]
        if role == Qt.ItemDataRole.DisplayRole:
            if not rows.has_subject[slot]:  # a row painted (whichever columns show): read its subject
                self.subjects_wanted((rows.ids[slot],), False)  # (the feed coalesces the asks)
            if self.offline and number == COLUMN["Next Retry"] and self._scheduled(slot):
                return OFFLINE_RETRY  # a countdown would say "Due" or "in 14 min" of a server that sends nothing
            return column.text(rows, slot, self._now)
        if role == KEY_ROLE:
            return rows.ids[slot]
        if role == Qt.ItemDataRole.DecorationRole and number == 0:
            return message_icon(STATES[rows.state[slot]])
        if role == Qt.ItemDataRole.TextAlignmentRole and column.right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and number == COLUMN["State"]:
            color = STATE_COLORS.get(STATES[rows.state[slot]])
            return QBrush(color) if color is not None else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(rows.item(slot), number)
        if role == SORT_ROLE:
            return column.key(rows, slot)
        return None

    def icon(self, item: QueueItem) -> QIcon:
        return message_icon(display_state(item))

    def _scheduled(self, slot: int) -> bool:
        """A row whose Next Retry is a countdown (queued or deferred, with recipients still pending)."""
        return STATES[self.store.state[slot]] in ("queued", "deferred") and self.store.has_pending(slot)

    def tooltip(self, item: QueueItem, column: int) -> str | None:
        state = display_state(item)
        if column == COLUMN["Recipients"]:
            pending = set(item.pending)
            return "\n".join(f"{address}{'' if address in pending else '  (done)'}" for address in item.recipients)
        if column == COLUMN["Last Error"] and item.last_error:
            return item.last_error
        if column == COLUMN["Age"]:
            return f"Arrived {moment(item.arrived)}"
        if column == COLUMN["Next Retry"] and item.pending and state in ("queued", "deferred"):
            when = moment(max(item.next_attempt, item.arrived))
            return (f"Scheduled for {when}; nothing is sent while the server is stopped" if self.offline
                    else f"Next attempt {when}")
        if column == COLUMN["Next Retry"] and state == "etrn":
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
        count = len(self._view)
        if len(old_ids) > PERSISTENT_BY_SEARCH:  # many: one pass over the view (a dict of every row, briefly)
            positions = {queue_id: position for position, queue_id in enumerate(self._view)}

            def position_of(queue_id: str) -> int:
                return positions.get(queue_id, -1)
        else:  # the usual few (the current row, a selection's ranges): a search each, no row-sized dict
            position_of = self._find
        old: list[QModelIndex] = []
        new: list[QModelIndex] = []
        for persistent, queue_id in old_ids.items():
            position = position_of(queue_id) if queue_id is not None else -1
            old.append(self.index(persistent.row(), persistent.column()))
            new.append(QModelIndex() if position < 0 else
                       self.index(self._row_of(position, count), persistent.column()))
        self.changePersistentIndexList(old, new)
        self.layoutChanged.emit()
        if column == SUBJECT_COLUMN:
            self._want_every_subject()

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
        return len(self.store)

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

    def get(self, queue_id: str) -> QueueItem | None:
        """The message as last known (a new object each call)."""
        return self.store.get(queue_id)

    def state_of(self, queue_id: str) -> str | None:
        """Its display state (STATES), None when not in the queue."""
        slot = self.store.slot(queue_id)
        return STATES[self.store.state[slot]] if slot is not None else None

    def etrn_held_of(self, queue_id: str) -> tuple[str, ...]:
        """The domains it waits for ETRN from (none when not in the queue)."""
        slot = self.store.slot(queue_id)
        return self.store.etrn_held[slot] if slot is not None else ()

    def row_of(self, queue_id: str) -> int:
        """The view row of a message, -1 when it is not shown."""
        if queue_id not in self.store:
            return -1
        position = self._find(queue_id)
        return -1 if position < 0 else self._row_of(position, len(self._view))

    def items(self) -> Iterable[QueueItem]:
        """Every message of the index, unfiltered, in no particular order (made one by one)."""
        return self.store.items()

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
                       span: tuple[str, str | None] | None = None) -> set[str]:
        """Merge a snapshot asked for at ``generation``. ``complete``: it lists the whole queue; ``span``: it
        lists every message whose id is in (span[0], span[1]] (None: to the end; a page of ``queue_page``).
        The rows such a snapshot could have seen and did not are removed.

        Returns the ids an event changed while the snapshot was on its way: ask for them again."""
        newer: set[str] = set()
        final: dict[str, QueueItem | None] = {}
        store = self.store
        for item in items:
            queue_id = item.queue_id
            if queue_id in self._removed:
                continue
            if self._event_generation.get(queue_id, 0) >= generation:
                newer.add(queue_id)
                continue
            if not store.same(item):
                final[queue_id] = item
        if complete:
            span = ("", None)
        if span is not None:
            after, upto = span
            seen = {item.queue_id for item in items}
            for queue_id in store.ids:
                if (queue_id > after and (upto is None or queue_id <= upto) and queue_id not in seen
                        and self._event_generation.get(queue_id, 0) < generation):
                    final[queue_id] = None
        self._apply(final)
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
        self.store.clear()
        self._view.clear()
        self.endResetModel()
        self.live = False

    # -- events ----------------------------------------------------------------------------------

    def apply_events(self, batch: Iterable[Event]) -> set[str]:
        """Follow the engine's queue events; returns ids whose new state only the engine knows (ask for them).
        A MessageQueued that carries its Subject (``scanned``) gives the row its subject too."""
        if not self.live:
            return set()
        final: dict[str, QueueItem | None] = {}
        refetch: set[str] = set()
        subjects: dict[str, str] = {}

        def current(queue_id: str) -> QueueItem | None:
            if queue_id in final:
                return final[queue_id]
            return self.store.get(queue_id)

        for event in batch:
            if isinstance(event, MessageQueued):
                if event.queue_id not in self._removed:
                    final[event.queue_id] = QueueItem(
                        event.queue_id, event.sender, event.recipients, event.recipients, event.size, event.at,
                        0, event.at, "queued", "", event.source)
                    if event.scanned:
                        subjects[event.queue_id] = event.subject
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
                subjects.pop(queue_id, None)
            elif self._in_flight:
                self._event_generation[queue_id] = self._generation
        for queue_id, subject in subjects.items():  # stored before the rows show (a search may need them)
            if queue_id not in self.store:
                self._pending_subjects[queue_id] = subject
        self._apply(final)
        self._pending_subjects.clear()
        return refetch

    def _remember_removed(self, queue_id: str) -> None:
        if not self._in_flight:
            return
        self._removed[queue_id] = None
        if len(self._removed) > REMOVED_MEMORY:
            del self._removed[next(iter(self._removed))]

    def set_subjects(self, subjects: dict[str, str]) -> None:
        """Subjects read for these messages: one dataChanged for the column; when the subject decides order or
        membership (sorted by it, a text search) the rows it moves, shows or hides (a reset for many)."""
        store = self.store
        changed = {queue_id: subject for queue_id, subject in subjects.items()
                   if (slot := store.slot(queue_id)) is not None and store.subject_of(slot) != subject}
        if not changed:
            return
        by_subject = self._sort_column == SUBJECT_COLUMN
        if not (self._filter.text or by_subject):
            for queue_id, subject in changed.items():
                store.set_subject(queue_id, subject)
            if self._view:
                self.dataChanged.emit(self.index(0, SUBJECT_COLUMN),
                                      self.index(len(self._view) - 1, SUBJECT_COLUMN), [Qt.ItemDataRole.DisplayRole])
            return
        if len(changed) > BULK:
            self.beginResetModel()
            for queue_id, subject in changed.items():
                store.set_subject(queue_id, subject)
            self._rebuild_view()
            self.endResetModel()
            return
        fresh = []
        for queue_id, subject in changed.items():
            shown = self._find(queue_id)  # (by the key it had)
            store.set_subject(queue_id, subject)
            stays = self._match(store.slots[queue_id])
            if shown >= 0 and not stays:
                self._remove_position(shown)
            elif shown < 0 and stays:
                fresh.append(queue_id)
            elif shown >= 0:
                self._move(queue_id, shown) if by_subject else self._changed(shown)
        for queue_id in fresh:
            self._insert(queue_id)

    def subject_of(self, queue_id: str) -> str | None:
        """Its subject ("" while not read), None when not in the queue."""
        slot = self.store.slot(queue_id)
        return (self.store.subject_of(slot) or "") if slot is not None else None

    def needs_subject(self, queue_id: str) -> bool:
        """In the queue, its subject not read yet."""
        slot = self.store.slot(queue_id)
        return slot is not None and not self.store.has_subject[slot]

    def unknown_subjects(self) -> list[str]:
        rows = self.store
        return [queue_id for queue_id, known in zip(rows.ids, rows.has_subject, strict=True) if not known]

    def _want_every_subject(self) -> None:
        unknown = self.unknown_subjects()
        if unknown:
            self.subjects_wanted(unknown, True)

    # -- filter and clock ------------------------------------------------------------------------

    def set_filter(self, wanted: QueueFilter) -> None:
        """Show only the matching messages (a reset: the pane keeps the selection by id)."""
        self._filter = wanted
        self._now = self.clock()
        self._match = wanted.matcher(self.store, self._now) if wanted.active else (lambda slot: True)
        self.beginResetModel()
        self._rebuild_view()
        self.endResetModel()
        if wanted.text:
            self._want_every_subject()  # the search looks in subjects too

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
        slot = self.store.slots[queue_id]
        return self.columns[self._sort_column].key(self.store, slot), queue_id

    def _row_of(self, position: int, count: int) -> int:
        return position if not self._descending else count - 1 - position

    def _find(self, queue_id: str) -> int:
        """The position of a shown row in ``_view`` (by its key as stored now), or -1."""
        position = bisect.bisect_left(self._view, self._key(queue_id), key=self._key)
        return position if position < len(self._view) and self._view[position] == queue_id else -1

    def _rebuild_view(self) -> None:
        match, slots = self._match, self.store.slots
        if self._filter.active:
            self._view = [queue_id for queue_id in self.store.ids if match(slots[queue_id])]
        else:
            self._view = list(self.store.ids)
        self._sort_view()

    def _sort_view(self) -> None:
        """Sort by (key, id): by id, then stably by key (no tuple per row; ids are unique)."""
        rows, slots = self.store, self.store.slots
        self._view.sort()
        if self._sort_column == COLUMN["Age"]:  # the usual order, once per page of a load: one call per row
            arrived = rows.arrived
            self._view.sort(key=lambda queue_id: -arrived[slots[queue_id]])
            return
        key = self.columns[self._sort_column].key
        self._view.sort(key=lambda queue_id: key(rows, slots[queue_id]))

    def _apply(self, final: dict[str, QueueItem | None]) -> None:
        """Make the index hold ``final`` (None: gone): removes, then updates, then inserts."""
        store = self.store
        final = {queue_id: item for queue_id, item in final.items() if not (item is None and queue_id not in store)}
        if not final:
            return
        if len(final) > BULK or not len(store):  # (a first load: one reset, not a signal per row)
            self.beginResetModel()
            for queue_id, item in final.items():
                self._store(queue_id, item)
            self._rebuild_view()
            self.endResetModel()
            return
        key = self.columns[self._sort_column].key
        fresh: list[str] = []
        for queue_id, item in final.items():
            slot = store.slot(queue_id)
            if slot is None:
                continue
            shown = self._find(queue_id)
            old_key = key(store, slot)
            self._store(queue_id, item)
            slot = store.slot(queue_id)
            stays = slot is not None and self._match(slot)
            if shown >= 0 and not stays:
                self._remove_position(shown)
            if slot is None or not stays:
                continue
            if shown < 0:
                fresh.append(queue_id)
            elif key(store, slot) != old_key:
                self._move(queue_id, shown)
            else:
                self._changed(shown)
        for queue_id, item in final.items():
            if item is not None and queue_id not in store:
                self._store(queue_id, item)
                if self._match(store.slots[queue_id]):
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

    def _store(self, queue_id: str, item: QueueItem | None) -> None:
        if item is None:
            self.store.remove(queue_id)
            return
        if self.store.put(item) and queue_id in self._pending_subjects:
            self.store.set_subject(queue_id, self._pending_subjects[queue_id])

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
