"""The detail list views of the result panes, whose drags carry the selected items out as .eml files: a
QTreeView (MMC's list look), and a QTableView that looks the same for lists of 100,000 rows (a QTreeView lays
out every row of a flat model after each reset, asking the model about each; a table does not)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QHelpEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QToolTip,
    QTreeView,
    QWidget,
)

from ui.elide import elide_mode

DragStarter = Callable[[], None]


class ElidedTipDelegate(QStyledItemDelegate):
    """A cell whose text does not fit gets its whole text as tooltip (unless the model gives one).

    Qt's own hook for item tooltips (``helpEvent``): no override of the view's event handlers, which Qt also
    calls while a view is being destroyed."""

    def initStyleOption(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        """Paths, host names and addresses are cut in the middle (both ends tell them apart), prose at the end."""
        super().initStyleOption(option, index)
        option.textElideMode = elide_mode(option.text)

    def helpEvent(self, event: QHelpEvent, view: QAbstractItemView, option: QStyleOptionViewItem,
                  index: QModelIndex | QPersistentModelIndex) -> bool:
        tip = event.type() == QEvent.Type.ToolTip and index.isValid()
        if tip and not index.data(Qt.ItemDataRole.ToolTipRole) and elided_tooltip(view, event, index):
            return True
        return super().helpEvent(event, view, option, index)


def elided_tooltip(view: QAbstractItemView, event: QHelpEvent,
                   index: QModelIndex | QPersistentModelIndex | None = None) -> bool:
    """Show the cell's whole text when it is cut; True: shown."""
    index = view.indexAt(event.pos()) if index is None else index
    if not index.isValid() or index.data(Qt.ItemDataRole.ToolTipRole):
        return False
    text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
    rect = view.visualRect(index)
    icon_room = view.iconSize().width() + 8 if index.data(Qt.ItemDataRole.DecorationRole) is not None else 0
    if text and view.fontMetrics().horizontalAdvance(text) + icon_room + 10 > rect.width():
        QToolTip.showText(event.globalPos(), text, view.viewport(), rect)
        return True
    QToolTip.hideText()
    return False


def paint_empty_text(view: QAbstractItemView, text: str) -> None:
    """An empty list says why it is empty, greyed in the middle of its viewport."""
    model = view.model()
    if not text or model is None or model.rowCount() > 0:
        return
    painter = QPainter(view.viewport())
    painter.setPen(view.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
    area = view.viewport().rect().adjusted(24, 24, -24, -24)
    painter.drawText(area, int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap),
                     text)
    painter.end()


class ItemView(QTreeView):
    """A flat, sortable, multi-selection list; ``start_drag`` (when set) runs instead of Qt's own item drag;
    ``empty_text`` is shown while it has no rows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.empty_text = ""
        self.setItemDelegate(ElidedTipDelegate(self))
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

    def set_empty_text(self, text: str) -> None:
        if text != self.empty_text:
            self.empty_text = text
            self.viewport().update()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        paint_empty_text(self, self.empty_text)


class ItemTable(QTableView):
    """A QTableView dressed as the QTreeView list above (no grid, no row numbers, whole rows selected)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start_drag: DragStarter | None = None
        self.setItemDelegate(ElidedTipDelegate(self))
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setTabKeyNavigation(False)
        self.setCornerButtonEnabled(False)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        rows = self.verticalHeader()
        rows.hide()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(self.fontMetrics().height() + 4)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header.setStretchLastSection(True)
        header.setSectionsMovable(True)

    def header(self) -> QHeaderView:
        """As QTreeView's: the column header."""
        return self.horizontalHeader()

    def enable_drag_out(self, starter: DragStarter) -> None:
        self.start_drag = starter
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)

    def startDrag(self, supportedActions: Qt.DropAction) -> None:
        if self.start_drag is not None:
            self.start_drag()
        else:
            super().startDrag(supportedActions)
