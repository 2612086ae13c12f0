"""File → Connect to Computer…: the address of another computer's admin server, the operator and the password."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)


class ConnectDialog(QDialog):
    """``recent``: addresses connected to before (the first is offered)."""

    def __init__(self, recent: list[str], user: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Connect to Computer")
        layout = QVBoxLayout(self)
        intro = QLabel("Administer the SMTP service of another computer through its admin server "
                       "(<code>admin_listen</code>, HTTPS). Its operators are managed there with "
                       "<code>smtpsvc operator</code>.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.address = QComboBox()
        self.address.setEditable(True)
        self.address.addItems(recent)
        self.address.setCurrentText(recent[0] if recent else "https://")
        self.address.setMinimumWidth(320)
        self.user = QLineEdit(user)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow("&Address:", self.address)
        form.addRow("&Operator:", self.user)
        form.addRow("&Password:", self.password)
        layout.addLayout(form)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Connect")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        for edit in (self.user, self.password):
            edit.textChanged.connect(self._check)
        self.address.editTextChanged.connect(self._check)
        self._check()
        (self.password if recent else self.address).setFocus()

    def _check(self) -> None:
        address = self.address.currentText().strip()
        ready = address.startswith(("https://", "http://")) and len(address) > 8 and bool(self.user.text().strip())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ready)

    def values(self) -> tuple[str, str, str]:
        return self.address.currentText().strip(), self.user.text().strip(), self.password.text()
