"""The Certificate page: details and key match; View Certificate…, Create Self-Signed…, Import… (PEM or PKCS#12) and
Remove (the files are read and made by the engine side, through the facade)."""

from __future__ import annotations

import datetime
import html
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from engine.smtpd.tls import PairReport, TlsError
from ui.certificate_view import CertificateDialog
from ui.errors import MessageBridge
from ui.facade import CertificateFacade
from ui.option_fields import TextField
from ui.tasks import TaskRunner

PKCS12_SUFFIXES = (".pfx", ".p12")
EXPIRY_WARNING_DAYS = 30
CHECK_DELAY_MS = 300


def report_html(report: PairReport, now: datetime.datetime) -> str:
    """The details as a small table; a problem or a near expiry in red."""
    rows: list[tuple[str, str]] = []
    info = report.info
    if info is not None:
        left = (info.not_after - now).days
        rows += [("Subject", info.subject),
                 ("Names", ", ".join(info.names) or "(none)"),
                 ("Issuer", "self-signed (clients must be told to trust it)" if info.self_signed
                  else "a certificate authority"),
                 ("Valid", f"{info.not_before:%Y-%m-%d} to {info.not_after:%Y-%m-%d} UTC"
                  + (f" — expires in {left} days" if 0 <= left <= EXPIRY_WARNING_DAYS else "")),
                 ("SHA-256", info.sha256)]
    # (the fingerprint in two lines of 16 bytes: a label does not break a word that long)
    def cell(name: str, text: str) -> str:
        return html.escape(text[:48]) + "<br>" + html.escape(text[48:]) if name == "SHA-256" else html.escape(text)

    body = "".join(f"<tr><td><b>{html.escape(name)}:</b>&nbsp;</td><td>{cell(name, text)}</td></tr>"
                   for name, text in rows)
    status = (f"<p style='color:#a4262c'>{html.escape(report.problem[:1].upper() + report.problem[1:])}.</p>"
              if report.problem else "<p style='color:#2e7d32'>The certificate and its key match and load.</p>")
    return f"<table>{body}</table>{status}"


class NewCertificateDialog(QDialog):
    def __init__(self, fqdn: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Create Self-Signed Certificate")
        self.name = QLineEdit(fqdn)
        self.others = QLineEdit()
        self.others.setPlaceholderText("e.g. mail.example.com, smtp.example.com")
        self.days = QSpinBox()
        self.days.setRange(1, 3650)
        self.days.setValue(825)
        self.days.setSuffix(" days")
        form = QFormLayout()
        for text, widget in (("&Name (the server's FQDN):", self.name), ("&Other names:", self.others),
                             ("&Valid for:", self.days)):
            label = QLabel(text)
            label.setBuddy(widget)
            form.addRow(label, widget)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setMinimumWidth(460)

    def request(self) -> tuple[str, tuple[str, ...], int]:
        others = tuple(n.strip() for n in self.others.text().replace(";", ",").split(",") if n.strip())
        return self.name.text().strip(), others, self.days.value()


class CertificatePanel(QWidget):
    def __init__(self, certificate: TextField, key: TextField, facade: CertificateFacade, runner: TaskRunner,
                 messages: MessageBridge, fqdn: Callable[[], str]) -> None:
        super().__init__()
        self.certificate, self.key = certificate, key
        self.facade = facade
        self.runner = runner
        self.messages = messages
        self.fqdn = fqdn
        self.report: PairReport | None = None
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setMinimumHeight(120)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.view_button = QPushButton("&View Certificate…")
        self.view_button.setToolTip("Every detail: names, issuer, validity, serial number, fingerprints, key, chain")
        self.view_button.setEnabled(False)
        self.view_button.clicked.connect(self.view)
        self.create_button = QPushButton("&Create Self-Signed…")
        self.import_button = QPushButton("&Import…")
        self.remove_button = QPushButton("Re&move")
        self.create_button.setToolTip("Make a new key and a self-signed certificate (as `smtpsvc cert new`)")
        self.import_button.setToolTip("Use an existing certificate: a PEM file and its private key, or a PKCS#12 "
                                      "file (.pfx, .p12) with its password")
        self.remove_button.setToolTip("Use no certificate: STARTTLS is no longer offered")
        self.create_button.clicked.connect(self.create_new)
        self.import_button.clicked.connect(self.import_files)
        self.remove_button.clicked.connect(self.remove)
        buttons = QHBoxLayout()
        buttons.addWidget(self.view_button)
        buttons.addStretch(1)
        for button in (self.create_button, self.import_button, self.remove_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.details)
        layout.addLayout(buttons)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(CHECK_DELAY_MS)
        self.timer.timeout.connect(self.check)
        certificate.changed.connect(self.timer.start)
        key.changed.connect(self.timer.start)
        self.check()

    # -- asked of the user (tests replace these) -------------------------------------------------

    def ask_new(self) -> tuple[str, tuple[str, ...], int] | None:
        box = NewCertificateDialog(self.fqdn(), self)
        return box.request() if box.exec() == QDialog.DialogCode.Accepted else None

    def ask_files(self) -> tuple[str, str] | None:
        """A PEM certificate and its key ("" = in the same file), or a PKCS#12 file and ""."""
        certificate, _ = QFileDialog.getOpenFileName(
            self, "Import Certificate", self.certificate.value(),
            "Certificates (*.pem *.crt *.cer *.pfx *.p12);;PKCS#12 (*.pfx *.p12);;All files (*)")
        if not certificate:
            return None
        if certificate.lower().endswith(PKCS12_SUFFIXES):
            return certificate, ""
        key, _ = QFileDialog.getOpenFileName(self, "Private Key of the Certificate (PEM; Cancel: in the same file)",
                                             certificate, "Keys (*.pem *.key);;All files (*)")
        return certificate, key

    def ask_password(self, path: str, again: bool) -> str | None:
        text = (f"The password that protects {path}:" if not again else
                f"That password does not open {path}. Try again:")
        password, accepted = QInputDialog.getText(self, "Import PKCS#12 Certificate", text,
                                                  QLineEdit.EchoMode.Password)
        return password if accepted else None

    # -- actions ---------------------------------------------------------------------------------

    def check(self) -> None:
        certificate, key = self.certificate.value(), self.key.value()

        async def run() -> None:
            report = await self.facade.inspect_certificate(certificate, key)
            if (certificate, key) == (self.certificate.value(), self.key.value()):
                self.report = report
                self.details.setText(report_html(report, datetime.datetime.now(datetime.UTC)))
                self.view_button.setEnabled(report.info is not None)
                self.remove_button.setEnabled(bool(certificate))

        self.runner.spawn(run(), "Certificate")

    def create_new(self) -> None:
        request = self.ask_new()
        if request is None:
            return

        async def run() -> None:
            certificate, key = await self.facade.create_certificate(*request)
            self.certificate.set_value(certificate)
            self.key.set_value(key)
            self.messages.inform(f"Made {certificate} and its key; OK and Apply put them to use")

        self.runner.spawn(run(), "Create Self-Signed Certificate")

    def view(self) -> CertificateDialog | None:
        info = self.report.info if self.report is not None else None
        if info is None:
            return None
        dialog = CertificateDialog(info, self.certificate.value(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def import_files(self) -> None:
        chosen = self.ask_files()
        if chosen is None:
            return
        if chosen[0].lower().endswith(PKCS12_SUFFIXES):
            self.import_pkcs12(chosen[0])
            return
        self.certificate.set_value(chosen[0])
        self.key.set_value(chosen[1])

    def import_pkcs12(self, path: str, again: bool = False) -> None:
        """Ask the file's password; the engine side writes its certificate and key as PEM files, then the page
        uses them. A wrong password asks again; any other failure is said."""
        password = self.ask_password(path, again)
        if password is None:
            return

        async def run() -> None:
            try:
                certificate, key = await self.facade.import_certificate(path, password)
            except TlsError as error:
                if "password" in str(error):
                    self.import_pkcs12(path, again=True)
                    return
                raise
            self.certificate.set_value(certificate)
            self.key.set_value(key)
            self.messages.inform(f"Imported {path} as {certificate} and its key; OK and Apply put them to use")

        self.runner.spawn(run(), "Import Certificate")

    def remove(self) -> None:
        self.certificate.set_value("")
        self.key.set_value("")
