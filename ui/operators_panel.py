"""The Security tab's Operators list (IIS's Operators tab): who may administer remotely; Add, Remove, Set Password."""

from __future__ import annotations

import getpass
from collections.abc import Awaitable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
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


class OperatorsPanel(QWidget):
    """The operators of the engine's operators file, read and changed through the engine (which refuses to
    remove the last admin); every change takes effect at once, not at the sheet's Apply."""

    def __init__(self, engine: OperatorsFacade, runner: TaskRunner, messages: MessageBridge,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.runner = runner
        self.messages = messages
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
        self.add_button.clicked.connect(self.add)
        self.remove_button.clicked.connect(self.remove)
        self.password_button.clicked.connect(self.set_password)
        self.list.itemSelectionChanged.connect(self._selection)
        buttons = QVBoxLayout()
        for button in (self.add_button, self.remove_button, self.password_button):
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
        self._selection()
        self.reload()

    # -- asked of the user (tests replace these) -------------------------------------------------

    def ask_operator(self, name: str = "") -> tuple[str, str, str] | None:
        """(name, password, role) from the Add Operator or Set Password dialog; None when cancelled."""
        box = OperatorDialog(name, self)
        if box.exec() != QDialog.DialogCode.Accepted:
            return None
        return box.values()

    def confirm_remove(self, name: str) -> bool:
        answer = QMessageBox.question(self, "Remove Operator", f"Remove the operator {name}?\n\nIt can no longer "
                                      "administer this virtual server remotely.")
        return answer == QMessageBox.StandardButton.Yes

    # -- actions ---------------------------------------------------------------------------------

    def selected(self) -> str | None:
        items = self.list.selectedItems()
        return items[0].text(0) if items else None

    def rows(self) -> list[tuple[str, str]]:
        """What the list shows: (name, role)."""
        return [(item.text(0), str(item.data(1, Qt.ItemDataRole.UserRole))) for item in
                (self.list.topLevelItem(i) for i in range(self.list.topLevelItemCount())) if item is not None]

    def _selection(self) -> None:
        chosen = self.selected() is not None and not self.busy
        self.remove_button.setEnabled(chosen)
        self.password_button.setEnabled(chosen)

    def reload(self) -> None:
        self.runner.spawn(self._reload(), "Operators")

    async def _reload(self) -> None:
        try:
            operators = await self.engine.list_operators()
        except EngineError as error:
            self.list.clear()
            self.status.setText(f"{describe(error)}.".replace("..", "."))
            self.add_button.setEnabled(False)
            return
        current = self.selected()
        self.list.clear()
        for name, role in operators:
            item = QTreeWidgetItem([name, ROLES.get(role, role).split(" (")[0]])
            item.setData(1, Qt.ItemDataRole.UserRole, role)  # Qt.UserRole: the engine's word for the role
            self.list.addTopLevelItem(item)
            if name == current:
                self.list.setCurrentItem(item)
        self.list.resizeColumnToContents(1)
        self.add_button.setEnabled(True)
        admins = sum(role == "admin" for _, role in operators)
        self.status.setText(f"{len(operators)} operator{'s' * (len(operators) != 1)}, {admins} administrator"
                            f"{'s' * (admins != 1)}." if operators else
                            "No operators yet: add one to administer this virtual server from other computers.")

    def _run(self, title: str, work: Awaitable[None]) -> None:
        async def run() -> None:
            self.busy = True
            self._selection()
            try:
                await work
            except EngineError as error:
                self.messages.error(title, error)  # e.g. the engine keeps the last admin
            finally:
                self.busy = False
                await self._reload()
                self._selection()

        self.runner.spawn(run(), title)

    def add(self) -> None:
        answer = self.ask_operator()
        if answer is not None:
            name, password, role = answer
            self._run("Add Operator", self.engine.add_operator(name, password, role))

    def set_password(self) -> None:
        name = self.selected()
        answer = self.ask_operator(name) if name else None
        if name and answer is not None:
            self._run("Set Password", self.engine.set_operator_password(name, answer[1]))

    def remove(self) -> None:
        name = self.selected()
        if name and self.confirm_remove(name):
            self._run("Remove Operator", self.engine.delete_operator(name))
