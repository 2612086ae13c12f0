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
    Signal,
)
from PySide6.QtWidgets import QAbstractItemView, QListView, QStackedWidget, QTreeView, QWidget

from ui.models.table import SORT_ROLE, KeyedTableModel

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
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.model = model
        self.proxy = SortProxy(self)
        self.proxy.setSourceModel(model)
        self.proxy.setDynamicSortFilter(True)
        self.detail = QTreeView()
        self.icons = QListView()
        for view in (self.detail, self.icons):
            view.setModel(self.proxy)
            view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
            view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
            view.activated.connect(self._activated)
        self.icons.setSelectionModel(self.detail.selectionModel())
        self.detail.selectionModel().selectionChanged.connect(self.selection_changed)
        self.detail.setRootIsDecorated(False)
        self.detail.setUniformRowHeights(True)
        self.detail.setSortingEnabled(True)
        self.detail.setAllColumnsShowFocus(True)
        self.detail.sortByColumn(sort_column, Qt.SortOrder.AscendingOrder)
        for column, spec in enumerate(model.columns):
            self.detail.setColumnWidth(column, spec.width)
        self.addWidget(self.detail)
        self.addWidget(self.icons)
        self.mode = "detail"

    def _activated(self, index: QModelIndex) -> None:
        self.activated.emit(self.proxy.mapToSource(index))

    def view(self) -> QAbstractItemView:
        return self.detail if self.mode == "detail" else self.icons

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
        return [str(self.model.data(index, Qt.ItemDataRole.UserRole + 1)) for index in keys]

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
        if state:
            self.detail.header().restoreState(state)

    def source(self) -> QAbstractItemModel:
        return self.model
