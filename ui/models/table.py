"""A table model of rows with stable keys: row inserts, removes and dataChanged instead of resets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QIcon

R = TypeVar("R")
Index = QModelIndex | QPersistentModelIndex
SORT_ROLE = Qt.ItemDataRole.UserRole
KEY_ROLE = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class Column(Generic[R]):
    title: str
    text: Callable[[R], str]
    sort: Callable[[R], Any] | None = None  # default: the text, case-folded
    right: bool = False  # numbers are right-aligned
    width: int = 120


class KeyedTableModel(QAbstractTableModel, Generic[R]):
    """Subclasses give ``columns`` and ``key``; rows keep insertion order (a proxy sorts the view)."""

    columns: tuple[Column[R], ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._keys: list[str] = []
        self._rows: dict[str, R] = {}

    def key(self, row: R) -> str:
        raise NotImplementedError

    def icon(self, row: R) -> QIcon | None:
        return None

    def tooltip(self, row: R) -> str | None:
        return None

    def foreground(self, row: R, column: int) -> QColor | None:
        return None

    # -- reading ---------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._keys)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.columns):
            column = self.columns[section]
            if role == Qt.ItemDataRole.DisplayRole:
                return column.title
            if role == Qt.ItemDataRole.TextAlignmentRole:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter) if column.right \
                    else int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._keys) or \
                not 0 <= index.column() < len(self.columns):
            return None
        row = self._rows[self._keys[index.row()]]
        column = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(row)
        if role == Qt.ItemDataRole.DecorationRole and index.column() == 0:
            return self.icon(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(row)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole:
            color = self.foreground(row, index.column())
            return QBrush(color) if color is not None else None
        if role == SORT_ROLE:
            return column.sort(row) if column.sort else column.text(row).casefold()
        if role == KEY_ROLE:
            return self._keys[index.row()]
        return None

    def row_at(self, index: Index) -> R | None:
        if not index.isValid() or not 0 <= index.row() < len(self._keys):
            return None
        return self._rows[self._keys[index.row()]]

    def rows(self) -> list[R]:
        return [self._rows[key] for key in self._keys]

    def get(self, key: str) -> R | None:
        return self._rows.get(key)

    def row_of(self, key: str) -> int:
        return self._keys.index(key) if key in self._rows else -1

    # -- changing --------------------------------------------------------------------------------

    def upsert(self, row: R) -> None:
        key = self.key(row)
        if key in self._rows:
            self._rows[key] = row
            position = self._keys.index(key)
            self.dataChanged.emit(self.index(position, 0), self.index(position, len(self.columns) - 1))
            return
        position = len(self._keys)
        self.beginInsertRows(QModelIndex(), position, position)
        self._keys.append(key)
        self._rows[key] = row
        self.endInsertRows()

    def remove(self, key: str) -> bool:
        if key not in self._rows:
            return False
        position = self._keys.index(key)
        self.beginRemoveRows(QModelIndex(), position, position)
        del self._keys[position]
        del self._rows[key]
        self.endRemoveRows()
        return True

    def sync(self, rows: Iterable[R], *, keep: Callable[[str], bool] = lambda key: False) -> None:
        """Make the model hold ``rows``: removes, then updates, then inserts; rows ``keep`` names stay.

        Contiguous removals are one signal, the updates one dataChanged, the inserts one block at the end."""
        wanted = {self.key(row): row for row in rows}
        self.remove_many([key for key in self._keys if key not in wanted and not keep(key)])
        changed = [key for key, row in wanted.items() if key in self._rows and self._rows[key] != row]
        if changed:
            for key in changed:
                self._rows[key] = wanted[key]
            positions = [self._keys.index(key) for key in changed]
            self.dataChanged.emit(self.index(min(positions), 0), self.index(max(positions), len(self.columns) - 1))
        self.append_many([row for key, row in wanted.items() if key not in self._rows])

    def remove_many(self, keys: Iterable[str]) -> None:
        """Remove these rows: one beginRemoveRows per run of adjacent rows, from the bottom up."""
        gone = {key for key in keys if key in self._rows}
        if not gone:
            return
        positions = [position for position, key in enumerate(self._keys) if key in gone]
        runs: list[tuple[int, int]] = []
        for position in positions:
            if runs and runs[-1][1] == position - 1:
                runs[-1] = (runs[-1][0], position)
            else:
                runs.append((position, position))
        for first, last in reversed(runs):
            self.beginRemoveRows(QModelIndex(), first, last)
            for key in self._keys[first:last + 1]:
                del self._rows[key]
            del self._keys[first:last + 1]
            self.endRemoveRows()

    def append_many(self, rows: Iterable[R]) -> None:
        """New rows (keys not in the model yet) at the end, in one beginInsertRows."""
        fresh = {self.key(row): row for row in rows if self.key(row) not in self._rows}
        if not fresh:
            return
        first = len(self._keys)
        self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
        self._keys.extend(fresh)
        self._rows.update(fresh)
        self.endInsertRows()

    def column_changed(self, column: int) -> None:
        """Every row's ``column`` changed (a ticking clock): one dataChanged, no reset."""
        if self._keys:
            self.dataChanged.emit(self.index(0, column), self.index(len(self._keys) - 1, column),
                                  [Qt.ItemDataRole.DisplayRole])
