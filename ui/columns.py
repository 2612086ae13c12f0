"""Column chooser of the result lists (MMC's Add/Remove Columns…): a header menu and a dialog; and fitting the
columns to their contents on a list's first load."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QVBoxLayout,
    QWidget,
)

FIT_AT_MOST = 420  # px: a column fitted to its contents never grows wider than this (its cells are elided then)


def titles(header: QHeaderView) -> list[tuple[int, str]]:
    """(logical index, title) in the order the columns are shown."""
    model = header.model()
    result = []
    for visual in range(header.count()):
        logical = header.logicalIndex(visual)
        result.append((logical, str(model.headerData(logical, Qt.Orientation.Horizontal) or "")))
    return result


def set_shown(header: QHeaderView, logical: int, shown: bool) -> None:
    """Show or hide a column; the last shown one stays (a list without columns shows nothing)."""
    if not shown and header.count() - header.hiddenSectionCount() <= 1:
        return
    header.setSectionHidden(logical, not shown)


def install_header_menu(header: QHeaderView) -> None:
    """Right-click on the column header: a check per column."""
    header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    header.customContextMenuRequested.connect(lambda point: header_menu(header).popup(header.mapToGlobal(point)))


def header_menu(header: QHeaderView, _point: QPoint | None = None) -> QMenu:
    menu = QMenu(header)
    for logical, title in titles(header):
        action = menu.addAction(title)
        action.setCheckable(True)
        action.setChecked(not header.isSectionHidden(logical))
        action.toggled.connect(lambda on, column=logical: set_shown(header, column, on))
    return menu


class ColumnsDialog(QDialog):
    """View ▸ Add/Remove Columns…: tick the columns to show; OK applies."""

    def __init__(self, header: QHeaderView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.header = header
        self.setWindowTitle("Add/Remove Columns")
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        for logical, title in titles(header):
            item = QListWidgetItem(title)
            item.setData(Qt.ItemDataRole.UserRole, logical)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if header.isSectionHidden(logical) else Qt.CheckState.Checked)
            self.list.addItem(item)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.list.itemChanged.connect(self._check)
        layout = QVBoxLayout(self)
        intro = QLabel("&Displayed columns (drag a column header to move it):")
        intro.setBuddy(self.list)
        layout.addWidget(intro)
        layout.addWidget(self.list)
        layout.addWidget(self.buttons)

    def shown(self) -> list[int]:
        return [int(self.list.item(row).data(Qt.ItemDataRole.UserRole)) for row in range(self.list.count())
                if self.list.item(row).checkState() == Qt.CheckState.Checked]

    def _check(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(bool(self.shown()))

    def accept(self) -> None:
        shown = set(self.shown())
        if not shown:
            return
        for logical in range(self.header.count()):
            self.header.setSectionHidden(logical, logical not in shown)
        super().accept()


def fit_to_contents(view: QAbstractItemView, header: QHeaderView, minimum: dict[int, int]) -> None:
    """Widen each shown column to its contents (at most FIT_AT_MOST px), never below its usual width."""
    for logical in range(header.count()):
        if header.isSectionHidden(logical) or header.sectionResizeMode(logical) != QHeaderView.ResizeMode.Interactive:
            continue
        wanted = max(view.sizeHintForColumn(logical), header.sectionSizeHint(logical)) + 8
        header.resizeSection(logical, max(minimum.get(logical, 0), min(wanted, FIT_AT_MOST)))
