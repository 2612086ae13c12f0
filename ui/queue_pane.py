"""The Queue result pane: the filter bar, the message list (100,000 rows) and the queue-shape chart beneath it.

The list is always the detail view (icon views of 100,000 messages help nobody). The selection is kept by
queue id across the model's resets (filter changes, bulk updates).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import shiboken6
from PySide6.QtCore import QByteArray, QItemSelection, QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QResizeEvent, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.errors import EngineError, NotFoundError, StateError
from ui.columns import install_header_menu
from ui.facade import EngineFacade
from ui.icons import icon
from ui.models.queue import COLUMN, STATE_LABELS, STATES, QueueFilter, QueueModel
from ui.models.queue_shape import AGE_BUCKETS, ShapeCounter, bucket_range
from ui.queue_chart import QueueChart
from ui.queue_domains import REFRESH_MS, QueueDomains
from ui.queue_preview import HEAD_BYTES, QueuePreview, header_start
from ui.tasks import TaskRunner
from ui.views import ItemTable

SEARCH_DELAY_MS = 250  # typing pauses this long before the list is filtered
CHART_REFRESH_MS = 3000  # a changed queue redraws the chart at most this often
CHART_MAX_AGE_S = 60.0  # ... and an unchanged one this often (ages move on)
CHART_CHUNK = 12_000  # messages counted per event-loop turn
PREVIEW_DELAY_MS = 120  # arrowing through the list reads only the message the cursor stops at
SUBJECTS_PER_CALL = 500  # subjects read per engine call before an export
KEEP_SELECTION_UP_TO = 20_000  # a larger selection is not restored after a reset (it would cost more than it helps)


# px: a wider cell is elided (its tooltip says it all). Target Domains is not fitted: its names are cut in the
# middle, and widening it took Last Error's room beside the preview pane.
FIT_AT_MOST = {"Next Retry": 300}
FIT_ROWS = 200  # rows looked at when fitting them


class QueuePane(QWidget):
    """The Queue node's pane; ``activated`` gives model indexes (double-click or Enter)."""

    activated = Signal(QModelIndex)
    selection_changed = Signal()

    def __init__(self, model: QueueModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queue")
        self.model = model
        self.mode = "detail"
        self._saved: list[str] = []
        self._saved_current: str | None = None
        self.filter_bar = self._filter_bar()
        self.detail = ItemTable()
        self.detail.setObjectName("queueList")
        self.detail.setModel(model)
        column, order = model.sort_column, (Qt.SortOrder.DescendingOrder if model.descending
                                            else Qt.SortOrder.AscendingOrder)
        self.detail.header().setSortIndicator(column, order)  # before sorting is on: it sorts by the indicator
        self.detail.setSortingEnabled(True)
        for column, spec in enumerate(model.columns):
            self.detail.setColumnWidth(column, spec.width)
        header = self.detail.header()
        header.setStretchLastSection(False)
        install_header_menu(header)
        header.sectionResized.connect(self._fit_soon)
        header.sectionCountChanged.connect(self._fit_soon)
        self._fitting = False
        self._contents_fitted = False  # Next Retry fitted once, on the first rows
        for signal in (model.modelReset, model.rowsInserted):
            signal.connect(self._fit_contents_first)
        self._fit_contents_first()
        self.detail.activated.connect(self.activated)
        self.detail.selectionModel().selectionChanged.connect(self.selection_changed)
        self.preview = QueuePreview()
        self.preview.hide()
        self._preview_wanted = False
        self.list_split = QSplitter(Qt.Orientation.Horizontal)
        self.list_split.setObjectName("queuePreviewSplit")
        self.domains = QueueDomains()
        self.domains.force.connect(self._force_domain)
        self.domains.freeze.connect(self._freeze_domain)
        self.domains.open_domain.connect(self._open_domain)
        self.lists = QStackedWidget()  # the messages, or the Domains view
        self.lists.addWidget(self.detail)
        self.lists.addWidget(self.domains)
        self.list_split.addWidget(self.lists)
        self.list_split.addWidget(self.preview)
        self._domains_timer = QTimer(self)
        self._domains_timer.setSingleShot(True)
        self._domains_timer.setInterval(REFRESH_MS)
        self._domains_timer.timeout.connect(self.refresh_domains)
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset, model.dataChanged):
            signal.connect(self._domains_soon)
        self.list_split.setStretchFactor(0, 3)
        self.list_split.setStretchFactor(1, 2)
        self.list_split.setSizes([620, 380])
        self._source: tuple[EngineFacade, TaskRunner] | None = None
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.preview_current)
        self.detail.selectionModel().currentRowChanged.connect(self._preview_soon)
        self.detail.selectionModel().selectionChanged.connect(self._preview_soon)
        model.dataChanged.connect(self._preview_row_changed)
        model.modelReset.connect(self._preview_soon)
        model.rowsRemoved.connect(self._preview_soon)
        self.chart = QueueChart()
        self.chart.picked.connect(self._chart_picked)
        self.placeholder = QLabel()
        self.placeholder.setObjectName("placeholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.hide()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.list_split)
        self.splitter.addWidget(self.chart)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([420, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.filter_bar)
        layout.addWidget(self.placeholder)
        layout.addWidget(self.splitter, 1)
        model.modelAboutToBeReset.connect(self._save_selection)
        model.modelReset.connect(self._restore_selection)
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset):
            signal.connect(self._counts_soon)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.apply_filter)
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(100)
        self._count_timer.timeout.connect(self.update_counts)
        self._chart_timer = QTimer(self)
        self._chart_timer.setInterval(CHART_REFRESH_MS)
        self._chart_timer.timeout.connect(self.refresh_chart)
        self._chart_dirty = True
        self._chart_at = 0.0
        self._counting: tuple[ShapeCounter, tuple[list[tuple[str, ...]], Sequence[float]], int] | None = None
        self._count_step = QTimer(self)
        self._count_step.setInterval(0)
        self._count_step.timeout.connect(self._count_some)
        self.domain_counts: list[tuple[str, int]] | None = None
        # what moves the shape: messages coming and going (not ticks or subjects: dataChanged is ignored)
        model.rowsInserted.connect(self._chart_changed)
        model.rowsRemoved.connect(self._chart_changed)
        model.modelReset.connect(self._chart_changed)
        find = QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self)
        find.activated.connect(self.focus_search)
        self.update_counts()

    # -- building -------------------------------------------------------------------------------

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def _filter_bar(self) -> QWidget:
        bar = QWidget()
        bar.setObjectName("filterBar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(4, 4, 4, 2)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search sender, recipient, subject, error or queue id  (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _: self._search_timer.start())
        self.search.returnPressed.connect(self.apply_filter)
        self.state_box = QComboBox()
        self.state_box.addItem("All states", "")
        for state in STATES:
            self.state_box.addItem(STATE_LABELS[state], state)
        self.state_box.currentIndexChanged.connect(lambda _: self.apply_filter())
        self.domain_box = QComboBox()
        self.domain_box.setEditable(True)
        self.domain_box.setMinimumContentsLength(16)
        self.domain_box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        domain_edit = self.domain_box.lineEdit()
        assert domain_edit is not None  # editable
        domain_edit.setPlaceholderText("All domains")
        domain_edit.setClearButtonEnabled(True)
        domain_edit.editingFinished.connect(self.apply_filter)
        self.domain_box.activated.connect(lambda _: self.apply_filter())
        self.age_button = QToolButton()
        self.age_button.setToolTip("Only messages of this age (from the chart); click to show every age")
        self.age_button.clicked.connect(self._clear_age)
        self.age_button.hide()
        self._age: tuple[float, float] | None = None
        self._age_label = ""
        self.clear_button = QToolButton()
        self.clear_button.setText("Show All")
        self.clear_button.setToolTip("Clear the search and every filter")
        self.clear_button.clicked.connect(self.clear_filter)
        self.count_label = QLabel()
        self.count_label.setObjectName("queueCount")
        self.domains_button = QToolButton()
        self.domains_button.setText("By &Domain")
        self.domains_button.setCheckable(True)
        self.domains_button.setToolTip("One row per target domain: messages, state, next retry, last error; "
                                       "Force Connection, Freeze, Thaw")
        self.domains_button.toggled.connect(self.show_domains)
        self.chart_button = QToolButton()
        self.chart_button.setIcon(icon("chart"))
        self.chart_button.setCheckable(True)
        self.chart_button.setChecked(True)
        self.chart_button.setToolTip("Show or hide the queue-shape chart")
        self.chart_button.toggled.connect(self.show_chart)
        row.addWidget(self.search, 3)
        row.addWidget(self.state_box)
        row.addWidget(self.domain_box, 1)
        row.addWidget(self.age_button)
        row.addWidget(self.clear_button)
        row.addWidget(self.count_label)
        row.addWidget(self.domains_button)
        row.addWidget(self.chart_button)
        self.domain_box.installEventFilter(self)
        return bar

    # -- the result-pane interface the window uses ------------------------------------------------

    def view(self) -> QAbstractItemView:
        return self.detail

    def views(self) -> tuple[QAbstractItemView, ...]:
        return (self.detail,)

    def set_mode(self, mode: str) -> None:
        """Icon views are not offered for the queue: it stays a detail list."""

    def selected_keys(self) -> list[str]:
        model = self.model
        return [key for index in self.detail.selectionModel().selectedRows() if (key := model.id_at(index.row()))]

    def select_key(self, key: str) -> None:
        self.select_keys([key])

    def select_keys(self, keys: list[str], current: str | None = None) -> None:
        selection = QItemSelection()
        rows = sorted(row for key in keys if (row := self.model.row_of(key)) >= 0)
        start = previous = None
        for row in rows:  # contiguous runs as ranges: one range per run, not per row
            if start is None or previous is None or row != previous + 1:
                if start is not None and previous is not None:
                    selection.select(self.model.index(start, 0), self.model.index(previous, 0))
                start = row
            previous = row
        if start is not None and previous is not None:
            selection.select(self.model.index(start, 0), self.model.index(previous, 0))
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        selection_model = self.detail.selectionModel()
        selection_model.select(selection, flags)
        focus = current if current is not None else (keys[0] if keys else None)
        row = self.model.row_of(focus) if focus is not None else -1
        if row >= 0:
            selection_model.setCurrentIndex(self.model.index(row, 0), QItemSelectionModel.SelectionFlag.NoUpdate)

    def header_state(self) -> QByteArray:
        return self.detail.header().saveState()

    def restore_header(self, state: QByteArray | None) -> None:
        if state:
            self._contents_fitted = True  # the administrator's own widths
            self.detail.header().restoreState(state)
            header = self.detail.header()
            header.setStretchLastSection(False)
            self.model.sort(header.sortIndicatorSection(), header.sortIndicatorOrder())
        self._fit_soon()

    def _fit_contents_first(self, *_: object) -> None:
        if self._contents_fitted or self.model.rowCount() == 0:
            return
        self._contents_fitted = True
        QTimer.singleShot(0, self.detail, self.fit_contents)  # (dropped if the view is deleted first)

    def fit_contents(self) -> None:
        """Widen Next Retry to what the first rows hold ("Waiting for ETRN from sales.fabrikam.example"), within
        FIT_AT_MOST; Last Error then takes what is left."""
        header = self.detail.header()
        metrics = self.detail.fontMetrics()
        rows = min(self.model.rowCount(), FIT_ROWS)  # the first page's top: what is read first (not laid out yet)
        for title, most in FIT_AT_MOST.items():
            column = COLUMN[title]
            if header.isSectionHidden(column):
                continue
            widest = max((metrics.horizontalAdvance(str(self.model.data(self.model.index(row, column)) or ""))
                          for row in range(rows)), default=0)
            # never so wide that Last Error (when it comes after) has less than its usual width in view
            last_error = COLUMN["Last Error"]
            before = sum(header.sectionSize(i) for i in range(header.count()) if i != column
                         and not header.isSectionHidden(i) and header.visualIndex(i) < header.visualIndex(last_error))
            room = (self.detail.viewport().width() - before - self.model.columns[last_error].width
                    if header.visualIndex(column) < header.visualIndex(last_error) else most)
            wanted = min(most, widest + 16, room)  # (+ the cell's margins)
            if wanted > header.sectionSize(column):
                header.resizeSection(column, wanted)

    def _fit_soon(self, *_: object) -> None:
        if not self._fitting:
            QTimer.singleShot(0, self, self.fit_last_error)

    def fit_last_error(self) -> None:
        """Last Error takes the width the other shown columns leave (at least its usual width): it stretches."""
        header = self.detail.header()
        last_error = COLUMN["Last Error"]
        if header.isSectionHidden(last_error):
            return
        others = sum(header.sectionSize(i) for i in range(header.count())
                     if i != last_error and not header.isSectionHidden(i))
        wanted = max(self.model.columns[last_error].width, self.detail.viewport().width() - others)
        if header.sectionSize(last_error) != wanted:
            self._fitting = True
            try:
                header.resizeSection(last_error, wanted)
            finally:
                self._fitting = False

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_soon()

    def export_rows(self) -> tuple[list[str], list[list[str]]]:
        """Every shown row's text (subjects as read: ``read_subjects`` first reads those not read yet)."""
        model, rows, now = self.model, self.model.store, self.model.now
        headers = [column.title for column in model.columns]
        return headers, [[column.text(rows, rows.slots[queue_id], now) for column in model.columns]
                         for queue_id in model.shown_ids()]

    async def read_subjects(self) -> None:
        """Read the subjects of the shown rows not read yet (before an export: the list paints only a screenful)."""
        if self._source is None:
            return
        engine = self._source[0]
        wanted = [queue_id for queue_id in self.model.shown_ids() if self.model.needs_subject(queue_id)]
        for start in range(0, len(wanted), SUBJECTS_PER_CALL):
            batch = wanted[start:start + SUBJECTS_PER_CALL]
            try:
                found = await engine.queue_subjects(batch)
            except StateError:
                return
            if not shiboken6.isValid(self):
                return
            self.model.set_subjects({queue_id: found.get(queue_id, "") for queue_id in batch})

    # -- filter ---------------------------------------------------------------------------------

    def current_filter(self) -> QueueFilter:
        domain = self.domain_box.currentText().strip()
        if " (" in domain:  # "example.com (123)" as listed
            domain = domain.split(" (", 1)[0]
        return QueueFilter(self.search.text(), str(self.state_box.currentData() or ""), domain, self._age,
                           self._age_label)

    def apply_filter(self) -> None:
        self._search_timer.stop()
        wanted = self.current_filter()
        if wanted != self.model.filter:
            self.model.set_filter(wanted)
        self.clear_button.setEnabled(wanted.active)
        self.update_counts()

    def clear_filter(self) -> None:
        for widget in (self.search, self.state_box, self.domain_box):
            widget.blockSignals(True)
        self.search.clear()
        self.state_box.setCurrentIndex(0)
        self.domain_box.setEditText("")
        for widget in (self.search, self.state_box, self.domain_box):
            widget.blockSignals(False)
        self._set_age(None, "")
        self.apply_filter()

    def filter_domain(self, domain: str, bucket: int | None = None) -> None:
        self.domain_box.setEditText(domain)
        if bucket is not None:
            self._set_age(bucket_range(bucket), AGE_BUCKETS[bucket][1])
        self.apply_filter()

    def _chart_picked(self, domain: str, bucket: int) -> None:
        self.filter_domain(domain, bucket)

    def _set_age(self, age: tuple[float, float] | None, label: str) -> None:
        self._age, self._age_label = age, label
        self.age_button.setText(f"Age {label}  ✕")
        self.age_button.setVisible(age is not None)

    def _clear_age(self) -> None:
        self._set_age(None, "")
        self.apply_filter()

    def eventFilter(self, watched: object, event: object) -> bool:
        from PySide6.QtCore import QEvent

        if watched is self.domain_box and isinstance(event, QEvent) and event.type() == QEvent.Type.MouseButtonPress:
            self._fill_domains()
        return False

    def _fill_domains(self) -> None:
        """The domain list: the queue's target domains, busiest first, with their message counts."""
        if self.domain_counts is None:
            counter = ShapeCounter(time.time())
            counter.add(self.model.store.shape_pairs())
            self.domain_counts = counter.domains()
        text = self.domain_box.currentText()
        self.domain_box.blockSignals(True)
        self.domain_box.clear()
        for domain, count in self.domain_counts[:500]:
            self.domain_box.addItem(f"{domain} ({count:,})", domain)
        self.domain_box.setEditText(text)
        self.domain_box.blockSignals(False)

    # -- counts, chart, selection ---------------------------------------------------------------

    def _counts_soon(self) -> None:
        if not self._count_timer.isActive():
            self._count_timer.start()

    def update_counts(self) -> None:
        shown, total = self.model.rowCount(), self.model.total
        noun = "message" if total == 1 else "messages"
        self.count_label.setText(f"{shown:,} of {total:,} {noun}" if self.model.filter.active
                                 else f"{total:,} {noun}")
        self.clear_button.setEnabled(self.model.filter.active)

    def set_placeholder(self, text: str) -> None:
        """A line over the list (the server is stopped, the queue is loading); empty hides it."""
        self.placeholder.setText(text)
        self.placeholder.setVisible(bool(text))

    def show_chart(self, visible: bool) -> None:
        self.chart.setVisible(visible)
        if self.chart_button.isChecked() != visible:
            self.chart_button.setChecked(visible)
        if visible and self.isVisible():
            self.refresh_chart()

    def _chart_changed(self, *_: object) -> None:
        self._chart_dirty = True
        QTimer.singleShot(0, self, self._chart_if_contradicting)  # once the model has settled

    def _chart_if_contradicting(self) -> None:
        """"The queue is empty" over a list with rows (or the reverse) is redrawn at once, not at the next tick."""
        shown = self.chart.shape.total if self.chart.shape is not None else 0
        if (shown == 0) != (self.model.total == 0) and self.chart.isVisible():
            self.refresh_chart(force=True)

    def refresh_chart(self, force: bool = False) -> None:
        """Recount the queue shape (a chunk per event-loop turn) if it changed or aged; ``force``: at once."""
        if force:
            counter = ShapeCounter(time.time())
            counter.add(self.model.store.shape_pairs())
            self._counting = None
            self._count_step.stop()
            self._show_counted(counter)
            return
        stale = time.monotonic() - self._chart_at > CHART_MAX_AGE_S
        if not self.chart.isVisible() or self._counting is not None or not (self._chart_dirty or stale):
            return
        self._chart_dirty = False
        store = self.model.store  # (a copy of two columns: the rows change while counting goes on)
        self._counting = (ShapeCounter(time.time()), (list(store.domains), store.arrived[:]), 0)
        self._count_step.start()

    def _count_some(self) -> None:
        if self._counting is None:
            self._count_step.stop()
            return
        counter, (domains, arrived), start = self._counting
        counter.add(zip(domains[start:start + CHART_CHUNK], arrived[start:start + CHART_CHUNK], strict=True))
        if start + CHART_CHUNK < len(domains):
            self._counting = (counter, (domains, arrived), start + CHART_CHUNK)
            return
        self._counting = None
        self._count_step.stop()
        self._show_counted(counter)

    def _show_counted(self, counter: ShapeCounter) -> None:
        self._chart_at = time.monotonic()
        self.domain_counts = counter.domains()
        self.chart.show_shape(counter.shape())

    def showEvent(self, event: object) -> None:
        self._chart_timer.start()
        self._chart_dirty = True
        QTimer.singleShot(0, self, self.refresh_chart)

    def hideEvent(self, event: object) -> None:
        self._chart_timer.stop()

    def _save_selection(self) -> None:
        keys = self.selected_keys()
        self._saved = keys if len(keys) <= KEEP_SELECTION_UP_TO else []
        current = self.detail.currentIndex()
        self._saved_current = self.model.id_at(current.row()) if current.isValid() else None

    def _restore_selection(self) -> None:
        if self._saved or self._saved_current:
            self.select_keys(self._saved, self._saved_current)
            row = self.model.row_of(self._saved_current) if self._saved_current else -1
            if row >= 0:
                self.detail.scrollTo(self.model.index(row, 0), QAbstractItemView.ScrollHint.EnsureVisible)
        self._saved, self._saved_current = [], None

    # -- the preview pane -------------------------------------------------------------------------

    def set_source(self, engine: EngineFacade, runner: TaskRunner) -> None:
        """Where the preview reads the selected message's recipients and header (the window's engine)."""
        self._source = (engine, runner)
        self.preview.shown.item = None  # what it shows came from another engine: read it again
        self._preview_soon()

    def show_preview(self, visible: bool) -> None:
        self._preview_wanted = visible
        self.preview.setVisible(self.preview_on)  # (not beside the Domains view: it previews messages)
        if self.preview_on:
            self.preview.shown.item = None
            self.preview_current()

    @property
    def preview_on(self) -> bool:
        return self._preview_wanted and self.lists.currentWidget() is self.detail

    def _preview_soon(self, *_: object) -> None:
        if self.preview_on:
            self._preview_timer.start()

    def _previewed_id(self) -> str | None:
        """The current row if it is selected, else the first selected message."""
        current = self.detail.currentIndex()
        keys = self.selected_keys()
        queue_id = self.model.id_at(current.row()) if current.isValid() else None
        return queue_id if queue_id is not None and queue_id in keys else (keys[0] if keys else None)

    def preview_current(self) -> None:
        """Show the selected message: its row at once, its recipients and header when the engine has read them."""
        self._preview_timer.stop()
        if not self.preview_on:
            return
        queue_id = self._previewed_id()
        item = self.model.get(queue_id) if queue_id is not None else None
        if queue_id is None or item is None:
            self.preview.clear("Select a message to see its envelope, state and header here.")
            return
        fresh = self.preview.queue_id != queue_id
        self.preview.show_item(item, self.model.now)
        if fresh:
            self._load(queue_id)

    def _preview_row_changed(self, top: QModelIndex, bottom: QModelIndex, *_: object) -> None:
        """The previewed message changed (a tick, an attempt): its row again; a new attempt or state reads it again."""
        queue_id = self.preview.queue_id
        if not self.preview_on or queue_id is None:
            return
        row = self.model.row_of(queue_id)
        if not top.row() <= row <= bottom.row():
            return
        item = self.model.get(queue_id)
        before = self.preview.shown.item
        if item is None or before is None:
            return
        self.preview.show_item(item, self.model.now)
        if (item.attempts, item.state, item.last_error) != (before.attempts, before.state, before.last_error):
            self._load(queue_id)

    def _load(self, queue_id: str) -> None:
        if self._source is None:
            self.preview.show_loaded(queue_id, None, "", "")
            return
        engine, runner = self._source
        preview = self.preview

        async def load() -> None:
            detail, head, note = None, "", ""
            try:
                detail = await engine.queue_detail(queue_id)
                head = header_start(await engine.read_queued(queue_id, HEAD_BYTES + 1))  # (+1: says there is more)
            except NotFoundError:
                note = "This message is no longer in the queue (delivered, returned or deleted)."
            except StateError:
                note = "The server is stopped: start it to see the recipients and the header."
            except (EngineError, OSError) as error:
                note = f"The message could not be read: {error}"
            if shiboken6.isValid(preview):
                preview.show_loaded(queue_id, detail, head, note)

        runner.spawn(load(), "Queue Preview")

    # -- the Domains view -------------------------------------------------------------------------

    def show_domains(self, on: bool) -> None:
        """Switch the list between the messages and one row per target domain."""
        if self.domains_button.isChecked() != on:
            self.domains_button.setChecked(on)
            return
        self.lists.setCurrentWidget(self.domains if on else self.detail)
        self.show_preview(self._preview_wanted)
        if on:
            self.refresh_domains()

    def _domains_soon(self, *_: object) -> None:
        if self.lists.currentWidget() is self.domains and not self._domains_timer.isActive():
            self._domains_timer.start()

    def refresh_domains(self) -> None:
        self._domains_timer.stop()
        self.domains.show_rows(self.model.store, self.model.now)

    def _open_domain(self, domain: str) -> None:
        self.show_domains(False)
        self.filter_domain(domain)

    def _force_domain(self, domain: str) -> None:
        if self._source is None:
            return
        engine, runner = self._source
        runner.spawn(engine.retry_now(domain=domain), f"Force Connection to {domain}")

    def _freeze_domain(self, domain: str, frozen: bool) -> None:
        row = self.domains.model.get(domain)
        if self._source is None or row is None:
            return
        engine, runner = self._source
        wanted = [queue_id for queue_id in row.queue_ids
                  if (state := self.model.state_of(queue_id)) is not None and (state == "frozen") != frozen]

        async def run() -> None:
            for queue_id in wanted:  # one call each: a message delivered meanwhile is skipped
                try:
                    await (engine.freeze(queue_id) if frozen else engine.thaw(queue_id))
                except NotFoundError:
                    continue

        runner.spawn(run(), f"{'Freeze' if frozen else 'Thaw'} {domain}")
