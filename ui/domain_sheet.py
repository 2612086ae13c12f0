"""A domain's property sheet: the Drop directory of a local domain (default or alias), routing for a remote one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.conf.config import Config, DomainConfig, smart_host_problem, update_domain
from engine.conf.options import DOMAIN_TYPE_LABELS
from engine.errors import DomainError
from engine.store.mailroot import Mailroot
from ui.elide import ElidedLabel
from ui.errors import MessageBridge
from ui.icons import domain_icon
from ui.outbound_security import OutboundSecurityDialog
from ui.sheet import ApplyFn, Problems, PropertySheet
from ui.sheet_parts import assign_mnemonics, button_row, group, note
from ui.tasks import TaskRunner


def _mark(widget: QWidget, why: str | None, tooltip: str = "") -> None:
    widget.setProperty("invalid", why is not None)
    widget.setToolTip(why or tooltip)
    widget.style().unpolish(widget)
    widget.style().polish(widget)


class DomainSheet(PropertySheet):
    def __init__(self, current: Callable[[], Config], domain: DomainConfig, apply: ApplyFn, runner: TaskRunner,
                 messages: MessageBridge, parent: QWidget | None = None) -> None:
        super().__init__(f"{domain.name} Properties", apply, runner, messages, parent)
        self._current = current
        self.initial = domain
        self.drop_edit = QLineEdit(domain.drop_dir)
        self.relay_check = QCheckBox("Allow incoming mail to be relayed to this domain")
        self.helo_check = QCheckBox("Send HELO instead of EHLO")
        self.tls_check = QCheckBox("Require TLS encryption for outbound mail to this domain")
        self.dns_radio = QRadioButton("Use DNS to route to this domain")
        self.smarthost_radio = QRadioButton("Forward all mail to smart host:")
        self.smart_host_edit = QLineEdit(domain.smart_host)
        self.etrn_check = QCheckBox("Queue messages for remote triggered delivery (ETRN)")
        self.security_dialog = OutboundSecurityDialog(domain, self)
        self.tabs.addTab(self._general(domain), "General")
        if domain.type == "remote":
            self.tabs.addTab(self._advanced(), "Advanced")
        self._load(domain)
        for index in range(self.tabs.count()):
            if (page := self.tabs.widget(index)) is not None:
                assign_mnemonics(page, "ocah")  # OK, Cancel, Apply, Help
        for signal in (self.drop_edit.textChanged, self.relay_check.toggled, self.helo_check.toggled,
                       self.tls_check.toggled, self.dns_radio.toggled, self.smart_host_edit.textChanged,
                       self.etrn_check.toggled, self.security_dialog.changed):
            signal.connect(self.revalidate)
        self.resize(520, 400)  # the Drop path and the smart host fit
        self.revalidate()

    def _header(self, domain: DomainConfig) -> QHBoxLayout:
        row = QHBoxLayout()
        badge = QLabel()
        badge.setPixmap(domain_icon(domain.type).pixmap(32, 32))
        row.addWidget(badge)
        title = QLabel(f"<b>{domain.name}</b><br>{DOMAIN_TYPE_LABELS.get(domain.type, domain.type)}")
        row.addWidget(title, 1)
        return row

    def _general(self, domain: DomainConfig) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addLayout(self._header(domain))
        if domain.type in ("default", "alias"):
            layout.addWidget(self._local_delivery(domain))
        else:
            routes = QButtonGroup(page)
            routes.addButton(self.dns_radio)
            routes.addButton(self.smarthost_radio)
            route_form = QVBoxLayout()
            route_form.addWidget(self.dns_radio)
            row = QHBoxLayout()
            row.addWidget(self.smarthost_radio)
            row.addWidget(self.smart_host_edit, 1)
            route_form.addLayout(row)
            self.smart_host_edit.setPlaceholderText("mail.example.com or [192.0.2.25]")
            layout.addWidget(self.relay_check)
            layout.addWidget(self.helo_check)
            security = QPushButton("Outbound Security…")
            security.clicked.connect(self.security_dialog.open)
            layout.addWidget(group("Outbound security", self.tls_check, button_row(security)))
            layout.addWidget(group("Route domain", route_form))
        layout.addStretch(1)
        return page

    def _local_delivery(self, domain: DomainConfig) -> QWidget:
        """The Drop directory: a folder picker for every local domain; empty falls back to the default's Drop."""
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.drop_edit, 1)
        row.addWidget(browse)
        current = self._current()
        fallback = Mailroot.from_config(replace(current, domains=tuple(
            replace(d, drop_dir="") if d.name.lower() == domain.name.lower() else d for d in current.domains)))
        self.drop_edit.setPlaceholderText(str(fallback.drop_for(domain.name)))
        self.drop_edit.setClearButtonEnabled(True)
        self.drop_where = ElidedLabel()  # a long path: both ends shown, the whole in the tooltip
        self.drop_where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow("Drop directory:", row)
        form.addRow("", self.drop_where)
        if domain.type == "default":
            text = ("Messages for this domain, and for every alias without a Drop directory of its own, are "
                    "written to the Drop directory as .eml files with x-sender / x-receiver lines. Empty: the "
                    "Mailroot's Drop directory. A relative path is taken inside the Mailroot.")
        else:
            text = (f"Messages for this alias domain are written to its own Drop directory, or, when empty, to "
                    f"the default domain's ({current.default_domain.name}). A relative path is taken inside the "
                    "Mailroot.")
        return group("Local delivery", note(text), form)

    def _show_drop(self) -> None:
        """Where mail for this domain will go, by the Mailroot's own rule (relative paths, ~)."""
        if self.initial.type == "remote":
            return
        try:
            config = update_domain(self._current(), self.edited())
        except DomainError:
            config = self._current()
        self.drop_where.setText(f"Delivered to: {Mailroot.from_config(config).drop_for(self.initial.name)}")

    def _advanced(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.etrn_check)
        layout.addWidget(note("A remote server that sends ETRN for this domain then gets its queued mail."))
        layout.addStretch(1)
        return page

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Drop directory", self.drop_edit.text())
        if folder:
            self.drop_edit.setText(folder)

    def _load(self, domain: DomainConfig) -> None:
        self.relay_check.setChecked(domain.relay_allowed)
        self.helo_check.setChecked(domain.use_helo)
        self.tls_check.setChecked(domain.tls_required)
        self.etrn_check.setChecked(domain.etrn_queue)
        (self.smarthost_radio if domain.route == "smarthost" else self.dns_radio).setChecked(True)
        self.smart_host_edit.setEnabled(domain.route == "smarthost")
        self.smarthost_radio.toggled.connect(self.smart_host_edit.setEnabled)

    def edited(self) -> DomainConfig:
        domain = self.initial
        if domain.type in ("default", "alias"):
            return replace(domain, drop_dir=self.drop_edit.text().strip())
        if domain.type != "remote":
            return domain
        smarthost = self.smarthost_radio.isChecked()
        auth, user, password = self.security_dialog.values()
        return replace(domain, relay_allowed=self.relay_check.isChecked(), use_helo=self.helo_check.isChecked(),
                       outbound_auth=auth, outbound_user=user, outbound_password=password,
                       tls_required=self.tls_check.isChecked(), etrn_queue=self.etrn_check.isChecked(),
                       route="smarthost" if smarthost else "dns",
                       smart_host=self.smart_host_edit.text().strip() if smarthost else "")

    # -- PropertySheet --------------------------------------------------------------------------

    def candidate(self) -> Config:
        return update_domain(self._current(), self.edited())

    def dirty(self) -> bool:
        return self.edited() != self.initial

    def mark_clean(self) -> None:
        self.initial = self.edited()

    def show_problems(self, problems: Problems) -> Problems:
        domain = self.edited()
        smart = None
        if domain.route == "smarthost":
            smart = smart_host_problem(domain.smart_host) if domain.smart_host else "a smart host is required"
        _mark(self.smart_host_edit, smart)
        drop_problem = next((why for key, why in problems if key.endswith(".drop_dir") or "Drop directory" in why),
                            None)
        _mark(self.drop_edit, drop_problem)
        self._show_drop()
        return problems

    def help_topic(self) -> str:
        return "sheet-domain"


def domain_problem(current: Config, domain: DomainConfig) -> str | None:
    try:
        update_domain(current, domain)
    except DomainError as error:
        return str(error)
    return None
