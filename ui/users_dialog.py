"""Users…: the AUTH accounts of the users file (add, set password, remove), as hMailServer's Accounts page."""

from __future__ import annotations

from collections.abc import Awaitable

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.errors import EngineError
from ui.errors import MessageBridge, describe
from ui.facade import AccountsFacade
from ui.tasks import TaskRunner


class AccountDialog(QDialog):
    """A name (Add only) and the password twice; OK only when both passwords match and are not empty.
    Subclasses name the kind of account and may add rows after the name (the operators' role)."""

    NOUN = "user"
    NAME_LABEL = "&User name:"
    PLACEHOLDER = "e.g. alice or alice@example.com"
    NAME_MISSING = "Type a user name."

    def __init__(self, name: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Set Password for {name}" if name else f"Add {self.NOUN.capitalize()}")
        self.name = QLineEdit(name)
        self.name.setReadOnly(bool(name))
        self.name.setPlaceholderText(self.PLACEHOLDER)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.again = QLineEdit()
        self.again.setEchoMode(QLineEdit.EchoMode.Password)
        self.problem = QLabel()
        self.problem.setObjectName("problem")
        form = QFormLayout()
        rows = [(self.NAME_LABEL, self.name), *self.extra_rows(adding=not name),
                ("&Password:", self.password), ("&Confirm password:", self.again)]
        for text, widget in rows:
            label = QLabel(text)
            label.setBuddy(widget)
            form.addRow(label, widget)
        for edit in (self.name, self.password, self.again):
            edit.textChanged.connect(self._check)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(380)
        self._check()

    def extra_rows(self, *, adding: bool) -> list[tuple[str, QWidget]]:
        """Rows shown between the name and the passwords; none for an AUTH user."""
        return []

    def why_not(self) -> str:
        if not self.name.text().strip():
            return self.NAME_MISSING
        if not self.password.text():
            return "Type a password."
        if self.password.text() != self.again.text():
            return "The two passwords differ."
        return ""

    def _check(self) -> None:
        why = self.why_not()
        self.problem.setText(why)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not why)


class UsersDialog(QDialog):
    """The accounts, read from and written through the engine (scrypt hashes in the users file)."""

    def __init__(self, engine: AccountsFacade, runner: TaskRunner, messages: MessageBridge,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self.runner = runner
        self.messages = messages
        self.setWindowTitle("Users")
        self.setMinimumSize(420, 320)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.add_button = QPushButton("&Add…")
        self.password_button = QPushButton("Set &Password…")
        self.remove_button = QPushButton("&Remove")
        self.add_button.clicked.connect(self.add)
        self.password_button.clicked.connect(self.set_password)
        self.remove_button.clicked.connect(self.remove)
        self.list.itemSelectionChanged.connect(self._selection)
        buttons = QVBoxLayout()
        for button in (self.add_button, self.password_button, self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.list, 1)
        row.addLayout(buttons)
        intro = QLabel("Accounts that may send mail with AUTH PLAIN or LOGIN (Basic authentication). Passwords are "
                       "kept as scrypt hashes in the users file.")
        intro.setWordWrap(True)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row, 1)
        layout.addWidget(self.status)
        layout.addWidget(close)
        self.busy = False
        self._reloads = 0  # reloads asked for so far (see _reload)
        self._selection()
        self.reload()

    # -- asked of the user (tests replace these) -------------------------------------------------

    def ask_account(self, name: str = "") -> tuple[str, str] | None:
        box = AccountDialog(name, self)
        if box.exec() != QDialog.DialogCode.Accepted:
            return None
        return box.name.text().strip(), box.password.text()

    def confirm_remove(self, name: str) -> bool:
        answer = QMessageBox.question(self, "Remove User", f"Remove the account {name}?\n\nIt can no longer "
                                      "authenticate.")
        return answer == QMessageBox.StandardButton.Yes

    # -- actions ---------------------------------------------------------------------------------

    def selected(self) -> str | None:
        items = self.list.selectedItems()
        return items[0].text() if items else None

    def _selection(self) -> None:
        chosen = self.selected() is not None and not self.busy
        self.password_button.setEnabled(chosen)
        self.remove_button.setEnabled(chosen)

    def reload(self) -> None:
        self.runner.spawn(self._reload(), "Users")

    async def _reload(self) -> None:
        # Only the newest reload shows its answer: an older one may be answered after a later change's reload
        # (a list read before a removal would put the removed account back).
        self._reloads += 1
        ticket = self._reloads
        try:
            names = await self.engine.list_users()
        except EngineError as error:
            if ticket != self._reloads:
                return
            self.list.clear()
            self.status.setText(f"{describe(error)[:1].upper()}{describe(error)[1:]}. Set the users file in "
                                "Authentication…, apply, then add accounts here.")
            self.add_button.setEnabled(False)
            return
        if ticket != self._reloads:
            return
        current = self.selected()
        self.list.clear()
        self.list.addItems(names)
        for row in range(self.list.count()):
            if self.list.item(row).text() == current:
                self.list.setCurrentRow(row)
        self.add_button.setEnabled(True)
        self.status.setText(f"{len(names)} account{'s' * (len(names) != 1)}.")

    def _run(self, title: str, work: Awaitable[None]) -> None:
        # Busy from the click on, not from when the task first runs: a second click cannot start a second change.
        self.busy = True
        self._selection()

        async def run() -> None:
            try:
                await work
            except EngineError as error:
                self.messages.error(title, error)
            finally:
                try:
                    await self._reload()
                finally:
                    self.busy = False  # (after the reload: not busy means the list shows the change)
                    self._selection()

        self.runner.spawn(run(), title)

    def add(self) -> None:
        account = self.ask_account()
        if account is not None:
            self._run("Add User", self.engine.add_user(*account))

    def set_password(self) -> None:
        name = self.selected()
        account = self.ask_account(name) if name else None
        if account is not None:
            self._run("Set Password", self.engine.set_user_password(*account))

    def remove(self) -> None:
        name = self.selected()
        if name and self.confirm_remove(name):
            self._run("Remove User", self.engine.delete_user(name))

