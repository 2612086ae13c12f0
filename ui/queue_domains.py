"""The Queue by domain (Exchange's Queue Viewer): one row per target domain with its count, state, next retry and
last error; Force Connection, Freeze and Thaw act on the domain's messages."""

from __future__ import annotations

import time
from dataclasses import dataclass

from PySide6.QtCore import QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ui.models.queue import STATE_COLORS, STATE_LABELS, STATES
from ui.models.queue_rows import QueueRows
from ui.models.table import SORT_ROLE, Column, KeyedTableModel
from ui.units import moment, size_text, span, until
from ui.views import ItemView

REFRESH_MS = 2000  # a changing queue regroups at most this often while the view shows


@dataclass(frozen=True)
class DomainRow:
    domain: str
    messages: int
    states: tuple[tuple[str, int], ...]  # (display state, count), in STATES order
    next_retry: float  # earliest next attempt of a waiting message; 0 = none scheduled
    oldest: float  # arrival of the oldest message
    size: int
    last_error: str  # of the message tried most recently
    queue_ids: tuple[str, ...]

    @property
    def state(self) -> str:
        """The state that matters most: any message being delivered, then retrying, then held."""
        names = [name for name, _count in self.states]
        for state in ("active", "deferred", "queued", "etrn", "frozen"):
            if state in names:
                return state
        return "queued"


def domain_rows(rows: QueueRows) -> list[DomainRow]:
    """Group the queue's messages by target domain (a message to two domains counts in both)."""
    groups: dict[str, list[int]] = {}
    for slot, domains in enumerate(rows.domains):
        for domain in domains:
            groups.setdefault(domain, []).append(slot)
    waiting_states = (STATES.index("queued"), STATES.index("deferred"))
    result = []
    for domain, members in groups.items():
        counts = dict.fromkeys(STATES, 0)
        for slot in members:
            counts[STATES[rows.state[slot]]] += 1
        waiting = [rows.next_attempt[slot] for slot in members
                   if rows.state[slot] in waiting_states and rows.next_attempt[slot]]
        tried = [slot for slot in members if not rows.last_error.empty(slot)]
        latest = max(tried, key=lambda slot: (rows.attempts[slot], rows.next_attempt[slot])) if tried else None
        result.append(DomainRow(domain, len(members), tuple((s, n) for s, n in counts.items() if n),
                                min(waiting, default=0.0), min(rows.arrived[slot] for slot in members),
                                sum(rows.size[slot] for slot in members),
                                rows.last_error.get(latest) if latest is not None else "",
                                tuple(rows.ids[slot] for slot in members)))
    return result


def states_text(row: DomainRow) -> str:
    if len(row.states) == 1:
        return STATE_LABELS[row.states[0][0]]
    return ", ".join(f"{count:,} {STATE_LABELS[state].lower()}" for state, count in row.states)


class DomainsModel(KeyedTableModel[DomainRow]):
    def __init__(self) -> None:
        super().__init__()
        self.now = time.time()

    @property
    def columns(self) -> tuple[Column[DomainRow], ...]:  # type: ignore[override]
        now = self.now
        return (
            Column("Domain", lambda r: r.domain, width=160),
            Column("Messages", lambda r: f"{r.messages:,}", sort=lambda r: r.messages, right=True, width=80),
            Column("State", states_text, sort=lambda r: STATES.index(r.state), width=130),
            Column("Next Retry", lambda r: until(r.next_retry - now) if r.next_retry else "—",
                   sort=lambda r: r.next_retry or float("inf"), right=True, width=95),
            Column("Oldest", lambda r: span(now - r.oldest), sort=lambda r: r.oldest, right=True, width=80),
            Column("Size", lambda r: size_text(r.size), sort=lambda r: r.size, right=True, width=80),
            Column("Last Error", lambda r: " ".join(r.last_error.split()), width=360),
        )

    def key(self, row: DomainRow) -> str:
        return row.domain

    def tooltip(self, row: DomainRow) -> str | None:
        lines = [f"{row.messages:,} message(s) to {row.domain}, the oldest since {moment(row.oldest)}"]
        if row.next_retry:
            lines.append(f"Next attempt at {moment(row.next_retry)}")
        if row.last_error:
            lines.append(row.last_error)
        return "\n".join(lines)

    def foreground(self, row: DomainRow, column: int) -> QColor | None:
        return STATE_COLORS.get(row.state) if column == 2 else None


class QueueDomains(QWidget):
    """The Domains view of the Queue node; the pane runs the actions (it has the engine)."""

    force = Signal(str)  # Force Connection: retry every message for the domain now (releases ETRN holds too)
    freeze = Signal(str, bool)  # freeze (True) or thaw the domain's messages
    open_domain = Signal(str)  # double-click: the domain's messages in the message list

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queueDomains")
        self.model = DomainsModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.view = ItemView()
        self.view.setObjectName("queueDomainList")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(1, Qt.SortOrder.DescendingOrder)  # the busiest first
        for column, spec in enumerate(self.model.columns):
            self.view.setColumnWidth(column, spec.width)
        self.view.set_empty_text("The queue is empty: no domain has mail waiting.")
        self.view.activated.connect(lambda index: self.open_domain.emit(self._domain_at(index.row())))
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.force_button = QPushButton("&Force Connection")
        self.force_button.setToolTip("Try every message for the selected domain now (mail held for ETRN is released)")
        self.freeze_button = QPushButton("F&reeze")
        self.freeze_button.setToolTip("Hold every message for the selected domain: no attempt until thawed")
        self.thaw_button = QPushButton("T&haw")
        self.thaw_button.setToolTip("Release the selected domain's frozen messages")
        self.force_button.clicked.connect(lambda: self._act(self.force.emit))
        self.freeze_button.clicked.connect(lambda: self._act(lambda domain: self.freeze.emit(domain, True)))
        self.thaw_button.clicked.connect(lambda: self._act(lambda domain: self.freeze.emit(domain, False)))
        self.summary = QLabel()
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary, 1)
        for button in (self.force_button, self.freeze_button, self.thaw_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_MS)
        self._update_buttons()

    def selected_domain(self) -> str | None:
        rows = self.view.selectionModel().selectedRows()
        return self._domain_at(rows[0].row()) if rows else None

    def _domain_at(self, proxy_row: int) -> str:
        return str(self.proxy.data(self.proxy.index(proxy_row, 0)))

    def _act(self, action: object) -> None:
        domain = self.selected_domain()
        if domain is not None and callable(action):
            action(domain)

    def _update_buttons(self) -> None:
        domain = self.selected_domain()
        row = self.model.get(domain) if domain is not None else None
        names = {state for state, _count in row.states} if row is not None else set()
        self.force_button.setEnabled(row is not None and bool(names - {"frozen", "active"}))
        self.freeze_button.setEnabled(row is not None and bool(names - {"frozen"}))
        self.thaw_button.setEnabled("frozen" in names)

    def show_rows(self, rows: QueueRows, now: float | None = None) -> None:
        """Regroup the queue's messages (called when the view shows and, at most every REFRESH_MS, on changes)."""
        self.model.now = time.time() if now is None else now
        grouped = domain_rows(rows)
        self.model.sync(grouped)
        if self.model.rowCount():  # countdowns and ages moved on
            self.model.dataChanged.emit(self.model.index(0, 0),
                                        self.model.index(self.model.rowCount() - 1, self.model.columnCount() - 1))
        total = sum(row.messages for row in grouped)
        self.summary.setText(f"{len(grouped):,} domain{'s' * (len(grouped) != 1)}" if grouped else "")
        self.summary.setToolTip(f"{total:,} messages counted per target domain (a message to two domains counts "
                                "in both)")
        self._update_buttons()
