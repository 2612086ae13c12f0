"""One result-pane list: a sortable detail view and the icon/list views (View menu) over one model."""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractItemModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ui.columns import fit_to_contents, install_header_menu
from ui.models.table import KEY_ROLE, SORT_ROLE, KeyedTableModel
from ui.views import ItemView

VIEW_MODES = ("large", "small", "list", "detail")


class SortProxy(QSortFilterProxyModel):
    """Sorts by the column's Python sort key (tuples, numbers), which a QVariant comparison cannot do."""

    def lessThan(self, left: QModelIndex | QPersistentModelIndex,
                 right: QModelIndex | QPersistentModelIndex) -> bool:
        source = self.sourceModel()
        return bool(source.data(left, SORT_ROLE) < source.data(right, SORT_ROLE))


class ResultPane(QStackedWidget):
    """Shows ``model`` sorted; ``activated`` gives source-model indexes (double-click or Enter)."""

    activated = Signal(QModelIndex)
    selection_changed = Signal()

    def __init__(self, model: KeyedTableModel, name: str, sort_column: int = 0,  # type: ignore[type-arg]
                 parent: QWidget | None = None, *, descending: bool = False) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.model = model
        self.proxy = SortProxy(self)
        self.proxy.setSourceModel(model)
        self.proxy.setDynamicSortFilter(True)
        self.detail = ItemView()
        self.icons = QListView()
        for view in (self.detail, self.icons):
            view.setModel(self.proxy)
            view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
            view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            view.activated.connect(self._activated)
        self.icons.setSelectionModel(self.detail.selectionModel())
        self.detail.selectionModel().selectionChanged.connect(self.selection_changed)
        self.detail.setSortingEnabled(True)
        self.detail.sortByColumn(sort_column, Qt.SortOrder.DescendingOrder if descending
                                 else Qt.SortOrder.AscendingOrder)
        for column, spec in enumerate(model.columns):
            self.detail.setColumnWidth(column, spec.width)
        install_header_menu(self.detail.header())
        self._fitted = False  # columns fitted to their contents once, on the first rows (unless a layout was saved)
        for signal in (model.rowsInserted, model.modelReset):
            signal.connect(self._fit_first)
        self.addWidget(self.detail)
        self.addWidget(self.icons)
        self.mode = "detail"

    def _activated(self, index: QModelIndex) -> None:
        self.activated.emit(self.proxy.mapToSource(index))

    def view(self) -> QAbstractItemView:
        return self.detail if self.mode == "detail" else self.icons

    def views(self) -> tuple[QAbstractItemView, ...]:
        return self.detail, self.icons

    def export_rows(self) -> tuple[list[str], list[list[str]]]:
        """The list as shown (sorted): headers and the text of every cell."""
        proxy = self.proxy
        columns = range(len(self.model.columns))
        headers = [column.title for column in self.model.columns]
        return headers, [[str(proxy.data(proxy.index(row, column)) or "") for column in columns]
                         for row in range(proxy.rowCount())]

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "detail":
            self.setCurrentWidget(self.detail)
            return
        large = mode == "large"
        self.icons.setViewMode(QListView.ViewMode.IconMode if mode != "list" else QListView.ViewMode.ListMode)
        self.icons.setFlow(QListView.Flow.TopToBottom if mode == "list" else QListView.Flow.LeftToRight)
        self.icons.setWrapping(True)
        self.icons.setResizeMode(QListView.ResizeMode.Adjust)
        self.icons.setIconSize(QSize(32, 32) if large else QSize(16, 16))
        self.icons.setGridSize(QSize(132, 64) if large else QSize())
        self.icons.setWordWrap(large)
        self.icons.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.icons.setMovement(QListView.Movement.Static)
        self.setCurrentWidget(self.icons)

    def selected_keys(self) -> list[str]:
        rows = self.detail.selectionModel().selectedRows()
        keys = [self.proxy.mapToSource(index).siblingAtColumn(0) for index in rows]
        return [str(self.model.data(index, KEY_ROLE)) for index in keys]

    def select_key(self, key: str) -> None:
        row = self.model.row_of(key)
        if row < 0:
            return
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        self.detail.setCurrentIndex(index)
        self.detail.selectionModel().select(
            index, self.detail.selectionModel().SelectionFlag.ClearAndSelect
            | self.detail.selectionModel().SelectionFlag.Rows)

    def header_state(self) -> QByteArray:
        return self.detail.header().saveState()

    def restore_header(self, state: QByteArray | None) -> None:
        if state and self.detail.header().restoreState(state):
            self._fitted = True  # the administrator's own widths

    def _fit_first(self, *_: object) -> None:
        if self._fitted or self.model.rowCount() == 0:
            return
        self._fitted = True
        QTimer.singleShot(0, self.detail, self._fit_now)  # (dropped if the view is deleted first)

    def _fit_now(self) -> None:
        fit_to_contents(self.detail, self.detail.header(), {i: c.width for i, c in enumerate(self.model.columns)})

    def source(self) -> QAbstractItemModel:
        return self.model


class FramedPane(QWidget):
    """A ResultPane with a widget above it (the Pickup pane's drop hint); the window sees the ResultPane."""

    def __init__(self, top: QWidget, pane: ResultPane, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(pane.objectName())
        self.inner = pane
        self.top = top
        self.model = pane.model
        self.proxy = pane.proxy
        self.detail = pane.detail
        self.icons = pane.icons
        self.activated = pane.activated
        self.selection_changed = pane.selection_changed
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 0, 0)
        layout.addWidget(top)
        layout.addWidget(pane, 1)

    @property
    def mode(self) -> str:
        return self.inner.mode

    def view(self) -> QAbstractItemView:
        return self.inner.view()

    def views(self) -> tuple[QAbstractItemView, ...]:
        return self.inner.views()

    def set_mode(self, mode: str) -> None:
        self.inner.set_mode(mode)

    def selected_keys(self) -> list[str]:
        return self.inner.selected_keys()

    def select_key(self, key: str) -> None:
        self.inner.select_key(key)

    def header_state(self) -> QByteArray:
        return self.inner.header_state()

    def restore_header(self, state: QByteArray | None) -> None:
        self.inner.restore_header(state)

    def export_rows(self) -> tuple[list[str], list[list[str]]]:
        return self.inner.export_rows()


class SearchBar(QWidget):
    """A search box over a list (Drop, Badmail): rows containing the text in any column; Ctrl+F focuses it."""

    def __init__(self, pane: ResultPane, placeholder: str) -> None:
        super().__init__()
        self.setObjectName("filterBar")
        self.pane = pane
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder + "  (Ctrl+F)")
        self.edit.setClearButtonEnabled(True)
        self.count = QLabel()
        pane.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        pane.proxy.setFilterKeyColumn(-1)  # every column
        self.edit.textChanged.connect(self.apply)
        for signal in (pane.model.rowsInserted, pane.model.rowsRemoved, pane.model.modelReset):
            signal.connect(self._count)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 4, 2)
        row.addWidget(self.edit, 1)
        row.addWidget(self.count)
        find = QShortcut(QKeySequence(QKeySequence.StandardKey.Find), pane)
        find.activated.connect(self.focus)
        self._count()

    def focus(self) -> None:
        self.edit.setFocus()
        self.edit.selectAll()

    def apply(self) -> None:
        self.pane.proxy.setFilterFixedString(self.edit.text().strip())
        self._count()

    def _count(self, *_: object) -> None:
        shown, total = self.pane.proxy.rowCount(), self.pane.model.rowCount()
        noun = "item" if total == 1 else "items"
        self.count.setText(f"{shown:,} of {total:,} {noun}" if self.edit.text().strip() else f"{total:,} {noun}")
