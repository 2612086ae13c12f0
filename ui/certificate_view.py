"""View Certificate: every detail of the server's certificate (General, Details, Certification Path)."""

from __future__ import annotations

import datetime
import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.smtpd.tls import CertificateInfo
from ui.elide import ElidedLabel
from ui.icons import icon


def utc(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def detail_fields(info: CertificateInfo) -> list[tuple[str, str]]:
    """The Details tab: (field, value), in the order certificate viewers list them."""
    return [("Subject", info.subject), ("Subject alternative names", ", ".join(info.names) or "(none)"),
            ("Issuer", info.issuer or info.subject), ("Valid from", utc(info.not_before)),
            ("Valid to", utc(info.not_after)), ("Serial number", info.serial),
            ("Public key", info.key), ("Signature algorithm", info.signature),
            ("SHA-256 fingerprint", info.sha256), ("SHA-1 fingerprint", info.sha1),
            ("Certificates in the file", str(1 + len(info.chain)))]


def general_html(info: CertificateInfo, now: datetime.datetime) -> str:
    if info.not_after < now:
        verdict = f"<p style='color:#a4262c'>This certificate expired on {info.not_after:%Y-%m-%d}.</p>"
    elif info.not_before > now:
        verdict = f"<p style='color:#a4262c'>This certificate is not valid before {info.not_before:%Y-%m-%d}.</p>"
    elif info.self_signed:
        verdict = ("<p>This certificate is self-signed: clients that verify certificates must be told to trust "
                   "it.</p>")
    else:
        verdict = "<p>This certificate was issued by a certificate authority.</p>"
    rows = [("Issued to", info.subject), ("Issued by", info.issuer or info.subject),
            ("Names", ", ".join(info.names) or "(none)"),
            ("Valid", f"{info.not_before:%Y-%m-%d} to {info.not_after:%Y-%m-%d}"), ("Key", info.key),
            ("SHA-256", info.sha256)]
    table = "".join(f"<tr><td><b>{html.escape(name)}:</b>&nbsp;&nbsp;</td><td>{html.escape(value)}</td></tr>"
                    for name, value in rows)
    return f"{verdict}<table cellspacing='4'>{table}</table>"


class CertificateDialog(QDialog):
    """Read-only; ``details`` and ``path`` are the trees of the Details and Certification Path tabs."""

    def __init__(self, info: CertificateInfo, path: str, parent: QWidget | None = None,
                 now: datetime.datetime | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Certificate")
        self.setWindowIcon(icon("properties"))
        now = now or datetime.datetime.now(datetime.UTC)
        self.tabs = QTabWidget()
        general = QLabel(general_html(info, now))
        general.setWordWrap(True)
        general.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        general.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        file_label = ElidedLabel(f"File: {path}")
        file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        page = QWidget()
        page_layout = QVBoxLayout(page)
        page_layout.addWidget(general, 1)
        page_layout.addWidget(file_label)
        self.tabs.addTab(page, "&General")
        self.details = QTreeWidget()
        self.details.setHeaderLabels(["Field", "Value"])
        self.details.setRootIsDecorated(False)
        self.details.setUniformRowHeights(True)
        self.details.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # both ends of a fingerprint stay readable
        for name, value in detail_fields(info):
            QTreeWidgetItem(self.details, [name, value]).setToolTip(1, value)
        self.details.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.value = QPlainTextEdit()  # the selected field whole, to read or copy (as Windows does)
        self.value.setReadOnly(True)
        self.details.currentItemChanged.connect(
            lambda item, _: self.value.setPlainText(item.text(1) if item is not None else ""))
        first = self.details.topLevelItem(0)
        if first is not None:
            self.details.setCurrentItem(first)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.details)
        split.addWidget(self.value)
        split.setSizes([260, 90])
        self.tabs.addTab(split, "&Details")
        self.path = QTreeWidget()
        self.path.setHeaderLabels(["Certificate", "Expires"])
        parent_item: QTreeWidget | QTreeWidgetItem = self.path
        links = [(link.subject, link.not_after) for link in reversed(info.chain)]  # the root first, as Windows
        for subject, expires in [*links, (info.subject, info.not_after)]:
            item = QTreeWidgetItem(parent_item, [subject, f"{expires:%Y-%m-%d}"])
            item.setToolTip(0, subject)
            parent_item = item
        self.path.expandAll()
        self.path.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        path_note = QLabel("Only the certificates in the file are shown: clients complete the path from their own "
                           "trusted authorities." if not info.self_signed else
                           "A self-signed certificate is its own path.")
        path_note.setWordWrap(True)
        path_page = QWidget()
        path_layout = QVBoxLayout(path_page)
        path_layout.addWidget(self.path, 1)
        path_layout.addWidget(path_note)
        self.tabs.addTab(path_page, "Certification &Path")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)
        self.resize(max(860, self.sizeHint().width()), 480)  # a SHA-256 fingerprint fits whole
