"""The detail list view of the result panes: a QTreeView whose drags carry the selected items out as .eml files."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QTreeView, QWidget

DragStarter = Callable[[], None]


class ItemView(QTreeView):
    """A flat, sortable, multi-selection list; ``start_drag`` (when set) runs instead of Qt's own item drag."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start_drag: DragStarter | None = None
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAllColumnsShowFocus(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)

    def enable_drag_out(self, starter: DragStarter) -> None:
        self.start_drag = starter
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)

    def startDrag(self, supportedActions: Qt.DropAction) -> None:
        if self.start_drag is not None:
            self.start_drag()
        else:
            super().startDrag(supportedActions)
