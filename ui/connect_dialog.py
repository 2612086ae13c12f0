"""File → Connect to Computer…: the address of another computer's admin server, the operator, the password and,
optionally, the certificate authorities to trust (as `smtpsvc --connect --cafile`)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
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
        self.cafile = QLineEdit()
        self.cafile.setPlaceholderText("none: the system's authorities, or confirm the fingerprint once")
        self.cafile.setToolTip("A PEM file of certificate authorities: the server's certificate must be issued by "
                               "one of them and name its host (as smtpsvc --connect --cafile FILE)")
        browse = QPushButton("&Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.cafile, 1)
        row.addWidget(browse)
        label = QLabel("&CA file:")  # a row of a layout gets no buddy from the form: Alt+C needs one
        label.setBuddy(self.cafile)
        form.addRow(label, row)
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

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Certificate Authorities", self.cafile.text(),
                                              "PEM certificates (*.pem *.crt *.cer);;All files (*)")
        if path:
            self.cafile.setText(path)

    def values(self) -> tuple[str, str, str, str]:
        """(address, operator, password, CA file or "")."""
        return (self.address.currentText().strip(), self.user.text().strip(), self.password.text(),
                self.cafile.text().strip())
