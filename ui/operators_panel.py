"""The Security tab's Operators list (IIS's Operators tab): who may administer remotely; Add, Remove, Set Password,
Role — each pending until the sheet's OK or Apply."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Literal

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.errors import EngineError
from ui.errors import MessageBridge, describe
from ui.facade import OperatorsFacade
from ui.tasks import TaskRunner
from ui.users_dialog import AccountDialog

ROLES = {"admin": "Administrator (everything)", "viewer": "Viewer (read-only)",
         "poster": "Poster (may only post messages)"}  # the engine's roles (engine.admin.operators.ROLES)


class OperatorDialog(AccountDialog):
    """Add Operator (name, role, password twice) or, given a name, Set Password (the password twice)."""

    NOUN = "operator"
    NAME_LABEL = "&Name:"
    PLACEHOLDER = ""
    NAME_MISSING = "Type an operator name."

    def extra_rows(self, *, adding: bool) -> list[tuple[str, QWidget]]:
        self.role = QComboBox()
        for role, text in ROLES.items():
            self.role.addItem(text, role)
        return [("&Role:", self.role)] if adding else []

    def values(self) -> tuple[str, str, str]:
        """(name, password, role)."""
        return self.name.text().strip(), self.password.text(), str(self.role.currentData())


@dataclass(frozen=True)
class Pending:
    """One change of the list not yet made in the engine: made at the sheet's OK or Apply, dropped at Cancel.
    A password stays here, in memory only, until then."""

    kind: Literal["add", "remove", "password", "role"]
    name: str
    password: str = ""
    role: str = ""


class OperatorsPanel(QWidget):
    """The operators of the engine's operators file, read through the engine. Add, Remove and Set Password
    are pending until the sheet's OK or Apply (``apply``), like every other property on the sheet; Cancel
    drops them. The engine still has the last word (it refuses to remove the last admin)."""

    changed = Signal()  # the pending changes changed: the sheet enables or disables Apply

    def __init__(self, engine: OperatorsFacade, runner: TaskRunner, messages: MessageBridge,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.runner = runner
        self.messages = messages
        self.pending: list[Pending] = []
        self._engine_rows: list[tuple[str, str]] = []
        intro = QLabel("Grant operator permissions to these accounts: they administer this virtual server from "
                       "other computers over HTTPS (the admin server below). On this computer, whoever can run "
                       f"smtpsvc as {getpass.getuser()} administers it.")
        intro.setWordWrap(True)
        self.list = QTreeWidget()
        self.list.setHeaderLabels(["Operator", "Role"])
        self.list.setRootIsDecorated(False)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.list.header().setStretchLastSection(False)
        self.list.setMinimumHeight(110)
        self.add_button = QPushButton("A&dd…")
        self.remove_button = QPushButton("Re&move")
        self.password_button = QPushButton("Set Pass&word…")
        self.role_button = QPushButton("R&ole…")
        self.add_button.clicked.connect(self.add)
        self.role_button.clicked.connect(self.change_role)
        self.remove_button.clicked.connect(self.remove)
        self.password_button.clicked.connect(self.set_password)
        self.list.itemSelectionChanged.connect(self._selection)
        buttons = QVBoxLayout()
        for button in (self.add_button, self.remove_button, self.password_button, self.role_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.list, 1)
        row.addLayout(buttons)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(intro)
        layout.addLayout(row, 1)
        layout.addWidget(self.status)
        self.busy = False
        self._loaded = False
        self._selection()
        self.reload()

    # -- asked of the user (tests replace these) -------------------------------------------------

    def ask_operator(self, name: str = "") -> tuple[str, str, str] | None:
        """(name, password, role) from the Add Operator or Set Password dialog; None when cancelled."""
        box = OperatorDialog(name, self)
        if box.exec() != QDialog.DialogCode.Accepted:
            return None
        return box.values()

    def ask_role(self, name: str, current: str) -> str | None:
        """The role ``name`` is to have; None when cancelled."""
        texts = list(ROLES.values())
        text, ok = QInputDialog.getItem(self, "Operator Role", f"Role of {name}:", texts,
                                        list(ROLES).index(current) if current in ROLES else 0, False)
        return next((role for role, shown in ROLES.items() if shown == text), None) if ok else None

    def confirm_remove(self, name: str) -> bool:
        answer = QMessageBox.question(self, "Remove Operator", f"Remove the operator {name}?\n\nIt can no longer "
                                      "administer this virtual server remotely once you choose OK or Apply.")
        return answer == QMessageBox.StandardButton.Yes

    # -- what the list shows ---------------------------------------------------------------------

    def selected(self) -> str | None:
        items = self.list.selectedItems()
        return items[0].text(0) if items else None

    def rows(self) -> list[tuple[str, str]]:
        """What the list shows: (name, role), the pending changes included."""
        return [(item.text(0), str(item.data(1, Qt.ItemDataRole.UserRole))) for item in
                (self.list.topLevelItem(i) for i in range(self.list.topLevelItemCount())) if item is not None]

    def has_changes(self) -> bool:
        return bool(self.pending)

    def _shown(self) -> list[tuple[str, str, bool]]:
        """(name, role, pending) of the engine's operators with the pending changes made."""
        rows = [(name, role, False) for name, role in self._engine_rows]
        for change in self.pending:
            if change.kind == "remove":
                rows = [row for row in rows if row[0].casefold() != change.name.casefold()]
            elif change.kind == "add":
                rows.append((change.name, change.role, True))
            elif change.kind == "role":
                rows = [(n, change.role if n == change.name else r, new) for n, r, new in rows]
        return rows

    def _selection(self) -> None:
        chosen = self.selected() is not None and not self.busy
        self.remove_button.setEnabled(chosen)
        self.password_button.setEnabled(chosen)
        self.role_button.setEnabled(chosen)
        self.add_button.setEnabled(self._loaded and not self.busy)

    def _show(self) -> None:
        current = self.selected()
        self.list.clear()
        shown = self._shown()
        for name, role, new in shown:
            item = QTreeWidgetItem([name, ROLES.get(role, role).split(" (")[0]])
            item.setData(1, Qt.ItemDataRole.UserRole, role)  # Qt.UserRole: the engine's word for the role
            if new:
                item.setToolTip(0, "Added: made when you choose OK or Apply")
                font = item.font(0)
                font.setItalic(True)
                item.setFont(0, font)
                item.setFont(1, font)
            self.list.addTopLevelItem(item)
            if name == current:
                self.list.setCurrentItem(item)
        self.list.resizeColumnToContents(1)
        admins = sum(role == "admin" for _, role, _ in shown)
        text = (f"{len(shown)} operator{'s' * (len(shown) != 1)}, {admins} administrator{'s' * (admins != 1)}."
                if shown else "No operators yet: add one to administer this virtual server from other computers.")
        if self.pending:
            count = len(self.pending)
            text += f" {count} change{'s' * (count != 1)} not made yet: choose OK or Apply to make them."
        self.status.setText(text)
        self._selection()

    def reload(self) -> None:
        self.runner.spawn(self._reload(), "Operators")

    async def _reload(self) -> None:
        try:
            rows = list(await self.engine.list_operators())
        except EngineError as error:
            if not shiboken6.isValid(self.list):
                return  # the sheet closed meanwhile (a remote computer's answer can come after OK)
            self.list.clear()
            self.status.setText(f"{describe(error)}.".replace("..", "."))
            self._loaded = False
            self._selection()
            return
        if not shiboken6.isValid(self.list):
            return
        self._engine_rows = rows
        self._loaded = True
        self._show()

    # -- changes (pending) ---------------------------------------------------------------------------

    def _change(self, change: Pending) -> None:
        self.pending.append(change)
        self._show()
        self.changed.emit()

    def add(self) -> None:
        answer = self.ask_operator()
        if answer is None:
            return
        name, password, role = answer
        if any(shown.casefold() == name.casefold() for shown, _, _ in self._shown()):
            self.messages.error("Add Operator", EngineError(f"{name} is an operator already"))
            return
        self._change(Pending("add", name, password, role))

    def set_password(self) -> None:
        name = self.selected()
        answer = self.ask_operator(name) if name else None
        if name is None or answer is None:
            return
        for index, change in enumerate(self.pending):
            if change.kind == "add" and change.name == name:  # not in the engine yet: the pending add changes
                self.pending[index] = Pending("add", name, answer[1], change.role)
                self._show()
                self.changed.emit()
                return
        self.pending = [c for c in self.pending if not (c.kind == "password" and c.name == name)]
        self._change(Pending("password", name, answer[1]))

    def change_role(self, *_: object) -> None:
        name = self.selected()
        current = dict((n, r) for n, r, _ in self._shown()).get(name or "", "")
        role = self.ask_role(name, current) if name else None
        if name is None or role is None or role == current:
            return
        for index, change in enumerate(self.pending):
            if change.kind == "add" and change.name == name:  # not in the engine yet: the pending add changes
                self.pending[index] = Pending("add", name, change.password, role)
                self._show()
                self.changed.emit()
                return
        self.pending = [c for c in self.pending if not (c.kind == "role" and c.name == name)]
        engine_role = dict(self._engine_rows).get(name)
        if role == engine_role:  # back to what the engine has: nothing to change
            self._show()
            self.changed.emit()
        else:
            self._change(Pending("role", name, role=role))

    def remove(self) -> None:
        name = self.selected()
        if not name or not self.confirm_remove(name):
            return
        added = [c for c in self.pending if c.kind == "add" and c.name == name]
        # Removing what was only added here just forgets it (and its password); otherwise the removal is pending.
        self.pending = [c for c in self.pending if c.name != name or c.kind == "remove"]
        if added:
            self._show()
            self.changed.emit()
        else:
            self._change(Pending("remove", name))

    def discard(self) -> None:
        """Forget the pending changes (the sheet's Cancel)."""
        self.pending = []
        self._show()
        self.changed.emit()

    async def apply(self) -> None:
        """Make the pending changes in the engine: new accounts first, then roles (promotions first), then
        removals (so that replacing the only admin works), then re-added names and passwords. Stops at the
        first refusal, which is raised; what was not made stays pending."""
        existing = {name.casefold() for name, _ in self._engine_rows}

        def order(change: Pending) -> int:
            if change.kind == "add":
                return 4 if change.name.casefold() in existing else 0
            if change.kind == "role":
                return 1 if change.role == "admin" else 2  # promotions before demotions
            return 3 if change.kind == "remove" else 5

        self.busy = True
        self._selection()
        try:
            for change in sorted(self.pending, key=order):
                if change.kind == "add":
                    await self.engine.add_operator(change.name, change.password, change.role)
                elif change.kind == "remove":
                    await self.engine.delete_operator(change.name)
                elif change.kind == "role":
                    await self.engine.set_operator_role(change.name, change.role)
                else:
                    await self.engine.set_operator_password(change.name, change.password)
                self.pending.remove(change)
        finally:
            self.busy = False
            await self._reload()
            self.changed.emit()
