"""The "Outbound Security…" choices: a remote domain's dialog (as the virtual server, anonymous, or basic with an
account), and the virtual server's Anonymous / Basic authentication radio group."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.conf.config import DomainConfig
from ui.option_fields import TextField
from ui.sheet_parts import note

AUTH_LABELS = {
    "server": "Same as the virtual server (its Outbound Security, for its smart host)",
    "anonymous": "Anonymous access",
    "basic": "Basic authentication",
}


class OutboundSecurityDialog(QDialog):
    """Edits ``outbound_auth``, ``outbound_user`` and ``outbound_password`` of one remote domain; Cancel puts
    back what it held when opened. ``changed`` fires on every edit (the sheet revalidates)."""

    changed = Signal()

    def __init__(self, domain: DomainConfig, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Outbound Security")
        self.setModal(True)
        self.radios = {key: QRadioButton(label) for key, label in AUTH_LABELS.items()}
        choices = QButtonGroup(self)
        self.user_edit = QLineEdit()
        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        layout = QVBoxLayout(self)
        layout.addWidget(note(f"How this server authenticates when it sends mail for {domain.name}. With basic "
                              "authentication the account is given to this domain's hosts (its smart host, or "
                              "its mail servers found in DNS). Without \"Require TLS encryption\" the password "
                              "may travel in clear text to a host that offers no TLS."))
        account = QFormLayout()
        account.setContentsMargins(24, 0, 0, 0)  # under "Basic authentication", which it belongs to
        account.addRow("User name:", self.user_edit)
        account.addRow("Password:", self.password_edit)
        for radio in self.radios.values():
            choices.addButton(radio)
            layout.addWidget(radio)
            radio.toggled.connect(self._toggled)
        layout.addLayout(account)
        layout.addStretch(1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.user_edit.textChanged.connect(self._toggled)
        self.password_edit.textChanged.connect(self._toggled)
        self.set_values(domain.outbound_auth, domain.outbound_user, domain.outbound_password)
        self._saved = self.values()

    def values(self) -> tuple[str, str, str]:
        """(outbound_auth, outbound_user, outbound_password); the account only with basic authentication."""
        auth = next((key for key, radio in self.radios.items() if radio.isChecked()), "server")
        if auth != "basic":
            return auth, "", ""
        return auth, self.user_edit.text().strip(), self.password_edit.text()

    def set_values(self, auth: str, user: str, password: str) -> None:
        self.radios.get(auth, self.radios["server"]).setChecked(True)
        self.user_edit.setText(user)
        self.password_edit.setText(password)
        self._toggled()

    def problem(self) -> str | None:
        auth, user, _ = self.values()
        return "basic authentication needs a user name" if auth == "basic" and not user else None

    def _toggled(self) -> None:
        basic = self.radios["basic"].isChecked()
        self.user_edit.setEnabled(basic)
        self.password_edit.setEnabled(basic)
        why = self.problem()
        self.user_edit.setToolTip(why or "")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(why is None)
        self.changed.emit()

    def open(self) -> None:
        self._saved = self.values()
        super().open()

    def reject(self) -> None:
        self.set_values(*self._saved)
        super().reject()


class ServerAuthChoice(QWidget):
    """IIS's Anonymous access / Basic authentication radios over the virtual server's outbound account: the
    account's fields are enabled only with Basic, and Anonymous empties them (the dialog's Cancel puts them back).
    ``sync`` shows what the fields hold (call it when the dialog opens)."""

    def __init__(self, user: TextField, password: TextField, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.user = user
        self.password = password
        self.anonymous = QRadioButton("Anonymous access")
        self.basic = QRadioButton("Basic authentication (the account below, with AUTH)")
        choices = QButtonGroup(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(9, 0, 9, 0)  # in line with the form's fields below
        for radio in (self.anonymous, self.basic):
            choices.addButton(radio)
            layout.addWidget(radio)
        self.basic.toggled.connect(self._chosen)
        self.sync()

    def sync(self) -> None:
        basic = bool(self.user.value())
        (self.basic if basic else self.anonymous).setChecked(True)
        self._enable(basic)

    def _chosen(self, basic: bool) -> None:
        if not basic:
            self.user.set_value("")
            self.password.set_value("")
        self._enable(basic)

    def _enable(self, basic: bool) -> None:
        for field in (self.user, self.password):
            field.label.setEnabled(basic)
            field.edit.setEnabled(basic)
