"""The virtual server's property sheet: General, Access, Messages, Delivery, Security, built from the option table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.conf.config import Config
from engine.conf.config_file import validate_config
from engine.conf.options import OPTIONS
from engine.errors import ConfigError
from engine.store.mailroot import Mailroot
from ui.certificate_panel import CertificatePanel
from ui.dns_check import CheckDnsButton
from ui.errors import MessageBridge
from ui.facade import CertificateFacade, DnsCheckFacade, OperatorsFacade
from ui.icons import state_icon
from ui.operators_panel import OperatorsPanel
from ui.option_fields import OptionField, TextField, make_field
from ui.outbound_security import ServerAuthChoice
from ui.sheet import ApplyFn, Problems, PropertySheet
from ui.sheet_parts import SubDialog, assign_mnemonics, button_row, form, group, note, opener
from ui.tasks import TaskRunner

NAME_KEY = "name"


def _summary(listen: tuple[str, ...]) -> str:
    return ", ".join(listen) if len(listen) <= 2 else f"{listen[0]} and {len(listen) - 1} more"


class ServerSheet(PropertySheet):
    """``current()`` is the engine's configuration now: the sheet's changes go on top of it at apply time."""

    def __init__(self, current: Callable[[], Config], state: str, apply: ApplyFn, runner: TaskRunner,
                 messages: MessageBridge, parent: QWidget | None = None, *,
                 open_users: Callable[[QWidget], object] | None = None,
                 certificates: CertificateFacade | None = None, operators: OperatorsFacade | None = None,
                 dns: DnsCheckFacade | None = None) -> None:
        self._open_users = open_users
        self._dns = dns
        self.check_dns: CheckDnsButton | None = None
        self._certificates = certificates
        self._operators = operators
        self.operators_panel: OperatorsPanel | None = None
        self.certificate_panel: CertificatePanel | None = None
        config = current()
        super().__init__(f"{config.name} Properties", apply, runner, messages, parent)
        self._current = current
        self.fields: dict[str, OptionField] = {}
        for option in OPTIONS:
            self.fields[option.name] = make_field(option)
        self.where: dict[str, str] = {}
        self.name_edit = QLineEdit()
        self._state = state
        self.tabs.addTab(self._general(), "General")
        self.tabs.addTab(self._access(), "Access")
        self.tabs.addTab(self._messages_tab(), "Messages")
        self.tabs.addTab(self._delivery(), "Delivery")
        self.tabs.addTab(self._security(), "Security")
        self._load(config)
        for index in range(self.tabs.count()):
            if (page := self.tabs.widget(index)) is not None:
                assign_mnemonics(page, "ocah")  # OK, Cancel, Apply, Help
        badmail = self.fields["badmail_dir"]
        if isinstance(badmail, TextField):
            badmail.edit.setPlaceholderText(str(Mailroot.from_config(replace(
                config, server=replace(config.server, badmail_dir=""))).badmail))
        for field in self.fields.values():
            field.changed.connect(self.revalidate)
        self.name_edit.textChanged.connect(self.revalidate)
        self.fields["listen"].changed.connect(self._show_listen)
        for field in self.fields.values():
            field.changed.connect(self.show_access_summaries)
        self.show_access_summaries()
        self.resize(500, 640)  # the Access page's summary lines fit
        self.revalidate()

    def _load(self, config: Config) -> None:
        for name, field in self.fields.items():
            field.load(getattr(config.server, name))
        self.name_edit.setText(config.name)
        self._initial_name = config.name
        self._show_listen()

    def _take(self, names: list[str], where: str) -> list[OptionField]:
        for name in names:
            self.where[name] = where
        return [self.fields[name] for name in names]

    def _certificate_panel(self) -> QWidget | None:
        certificate, key = self.fields["tls_certificate"], self.fields["tls_key"]
        if self._certificates is None or not isinstance(certificate, TextField) or not isinstance(key, TextField):
            return None
        self.certificate_panel = CertificatePanel(certificate, key, self._certificates, self._runner,
                                                  self._messages, lambda: self._current().fqdn)
        return self.certificate_panel

    def _users_row(self) -> QWidget:
        """Users… (the accounts of Basic authentication), when the window can reach the engine's users file."""
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        self.users_button = QPushButton("&Users…")
        self.users_button.setToolTip("Add, remove or set the password of the accounts that may authenticate")
        self.users_button.setVisible(self._open_users is not None)
        self.users_button.clicked.connect(lambda: self._open_users(self) if self._open_users else None)
        layout.addStretch(1)
        layout.addWidget(self.users_button)
        return row

    def _fqdn_typed(self) -> str:
        """The FQDN field as typed; empty means this computer's name, which the engine uses then."""
        return str(self.fields["fqdn"].value()) or self._current().fqdn

    def _sub(self, title: str, names: list[str], intro: str = "", extra: QWidget | None = None,
             extra_before: str = "") -> SubDialog:
        return SubDialog(title, self._take(names, title), intro, self, extra, self.show_help,  # the page's help
                         extra_before=extra_before)

    # -- tabs -----------------------------------------------------------------------------------

    def _general(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        header = QHBoxLayout()
        badge = QLabel()
        badge.setPixmap(state_icon("server", self._state).pixmap(32, 32))
        header.addWidget(badge)
        header.addWidget(self.name_edit, 1)
        layout.addLayout(header)
        self.where[NAME_KEY] = "General"
        identities = self._sub("Advanced", ["listen"],
                               "Identities of this virtual server: the IP addresses and TCP ports it listens on. "
                               "Use 0.0.0.0 (or [::]) for all unassigned addresses.")
        self.listen_summary = QLineEdit()
        self.listen_summary.setReadOnly(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("IP address:"))
        row.addWidget(self.listen_summary, 1)
        row.addWidget(opener("Advanced…", identities))
        layout.addLayout(row)
        layout.addWidget(group("Connections", form(self._take(
            ["max_connections", "max_connections_per_peer", "connection_timeout"], "General"))))
        log_properties = self._sub("Logging Properties", ["log_period", "log_max_size_mb", "log_local_time",
                                                          "log_dir", "log_fields", "metrics_listen"],
                                   "One line per SMTP command, inbound and outbound, in the Logs\\SMTPSVC1 folder "
                                   "(`smtpsvc log path` prints today's file).")
        layout.addWidget(group("Logging", form(self._take(["log_enabled", "log_format"], "General")),
                               button_row(opener("Properties…", log_properties))))
        layout.addStretch(1)
        return page

    def _access(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        authentication = self._sub("Authentication", [
            "auth_anonymous", "auth_basic", "auth_plaintext_allowed", "auth_default_domain", "users_file",
            "auth_lockout_failures", "auth_lockout_seconds", "auth_failure_delay_ms"],
            "Select acceptable authentication methods for this resource.", extra=self._users_row())
        self.summaries = {name: QLabel() for name in ("access", "secure", "connection", "relay")}
        for label in self.summaries.values():
            label.setObjectName("summary")
            label.setWordWrap(True)
        layout.addWidget(group(
            "Access control",
            note("Enable anonymous access and edit the authentication methods for this resource."),
            self.summaries["access"],
            button_row(opener("Authentication…", authentication))))
        certificate = self._sub("Certificate", ["tls_certificate", "tls_key"],
                                "The server certificate for STARTTLS and the secure identities (PEM files).",
                                extra=self._certificate_panel())
        certificate.setMinimumWidth(600)
        communication = self._sub("Communication", ["require_tls", "tls_listen"])
        layout.addWidget(group(
            "Secure communication",
            note("View or set the secure communications method used when this virtual server is accessed."),
            self.summaries["secure"],
            button_row(opener("Certificate…", certificate), opener("Communication…", communication))))
        connection = self._sub("Connection", ["connection_grant", "connection_list"],
                               "Select which computers may connect to this virtual server.")
        layout.addWidget(group(
            "Connection control",
            note("Grant or deny access to this resource using IP addresses or Internet domain names."),
            self.summaries["connection"],
            button_row(opener("Connection…", connection))))
        relay = self._sub("Relay Restrictions", ["relay_mode", "relay_allowed", "authenticated_may_relay"],
                          "Select which computers may relay through this virtual server. Mail for the local "
                          "domains and for remote domains that allow relay is always accepted.")
        layout.addWidget(group(
            "Relay restrictions",
            note("Grant or deny permissions to relay e-mail through this SMTP virtual server."),
            self.summaries["relay"],
            button_row(opener("Relay…", relay))))
        layout.addStretch(1)
        return page

    def show_access_summaries(self) -> None:
        """One line per Access group saying what is set now (IIS's page is all buttons)."""
        v = {name: field.value() for name, field in self.fields.items()}
        methods = [m for m, on in (("Anonymous", v["auth_anonymous"]), ("Basic authentication", v["auth_basic"]))
                   if on] or ["No authentication method: nobody may send mail"]
        basic = " (also without TLS)" if v["auth_basic"] and v["auth_plaintext_allowed"] else \
            " (after STARTTLS)" if v["auth_basic"] else ""
        self.summaries["access"].setText(" and ".join(methods) + basic + ".")
        certificate = Path(v["tls_certificate"]).name if v["tls_certificate"] else ""
        secure = [f"Certificate {certificate}" if certificate else "No certificate: STARTTLS is not offered"]
        if v["require_tls"]:
            secure.append("TLS required")
        if v["tls_listen"]:
            secure.append(f"SMTPS on {', '.join(v['tls_listen'])}")
        self.summaries["secure"].setText("; ".join(secure) + ".")
        listed = len(v["connection_list"])
        if v["connection_grant"] == "all_except_listed":
            connect = f"Every computer except the {listed} listed may connect" if listed else \
                "Every computer may connect"
        else:
            connect = f"Only the {listed} listed may connect" if listed else "Nobody may connect (the list is empty)"
        self.summaries["connection"].setText(connect + ".")
        relayed, authenticated = len(v["relay_allowed"]), bool(v["authenticated_may_relay"])
        if v["relay_mode"] == "only_listed":
            who = [f"the {relayed} listed computer{'s' * (relayed != 1)}"] if relayed else []
        else:
            who = [f"every computer except the {relayed} listed" if relayed else "every computer"]
        who += ["authenticated users"] if authenticated else []
        self.summaries["relay"].setText("Relay: " + (" and ".join(who) or "nobody")
                                        + (" (the list is empty)" if not relayed and
                                           v["relay_mode"] == "only_listed" else "") + ".")

    def _messages_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(note("Specify the following messaging information."))
        body = QWidget()
        form(self._take(["max_message_size_kb", "max_session_size_kb", "max_messages_per_connection",
                         "max_recipients", "ndr_copy_to", "badmail_dir", "badmail_max_size_mb",
                         "badmail_max_age_days"], "Messages"), body)
        layout.addWidget(body)
        layout.addWidget(group("Protocol", form(self._take(
            ["max_bad_commands", "max_command_line", "bare_newline", "allow_verify"], "Messages")))
        )
        layout.addStretch(1)
        return page

    def _delivery(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(group("Outbound", form(self._take(
            ["retry_intervals_min", "delay_notification_min", "expiration_min"], "Delivery"))))
        layout.addWidget(group("Local", form(self._take(
            ["local_delay_notification_min", "local_expiration_min"], "Delivery"))))
        connections = self._sub("Outbound Connections", ["max_outbound_connections", "max_outbound_per_domain",
                                                         "outbound_timeout", "outbound_port"],
                                "The connections this server opens to deliver mail, and the port it connects to.")
        if self._dns is not None:  # IIS's Check DNS, with the names and DNS servers as typed
            self.check_dns = CheckDnsButton(self._dns, self._runner, lambda: self._fqdn_typed(),
                                            lambda: tuple(self.fields["dns_servers"].value()))
        advanced = self._sub("Advanced Delivery", ["max_hop_count", "masquerade_domain", "fqdn", "smart_host",
                                                   "attempt_direct_before_smart_host", "reverse_dns_lookup",
                                                   "dns_servers"],
                             "How mail leaves this server: the hops it allows, the name it gives, the smart host "
                             "it sends through and the DNS servers it asks.", extra=self.check_dns,
                             extra_before="smart_host")  # Check DNS right under the name it checks
        self.advanced_delivery = advanced
        user, password = self.fields["outbound_user"], self.fields["outbound_password"]
        assert isinstance(user, TextField) and isinstance(password, TextField)
        self.outbound_auth = ServerAuthChoice(user, password)
        security = SubDialog("Outbound Security", self._take(["outbound_user", "outbound_password", "outbound_tls",
                                                              "outbound_tls_verify", "outbound_tls_ca_file"],
                                                             "Outbound Security"),
                             "How this server authenticates to the smart host and the remote servers it sends to.",
                             self, self.outbound_auth, self.show_help, extra_before="outbound_user")
        security_button = opener("Outbound Security…", security)
        security_button.clicked.connect(self.outbound_auth.sync)  # as the fields hold now (Cancel put them back)
        layout.addLayout(button_row(security_button,
                                    opener("Outbound connections…", connections),
                                    opener("Advanced…", advanced)))
        layout.addStretch(1)
        return page

    def _security(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        if self._operators is not None:  # IIS's Operators list, through the engine
            self.operators_panel = OperatorsPanel(self._operators, self._runner, self._messages)
            self.operators_panel.changed.connect(self.revalidate)  # pending until OK or Apply
            self.rejected.connect(self.operators_panel.discard)
            layout.addWidget(group("Operators", self.operators_panel), 1)
        layout.addWidget(group("Remote administration (HTTPS)", form(self._take(
            ["admin_listen", "admin_tls_certificate", "admin_tls_key", "admin_allow_plain_loopback",
             "operators_file"], "Security"))))
        layout.addStretch(1)
        return page

    def _show_listen(self) -> None:
        self.listen_summary.setText(_summary(self.fields["listen"].value()) or "(none)")

    # -- PropertySheet --------------------------------------------------------------------------

    def changes(self) -> dict[str, Any]:
        return {name: field.value() for name, field in self.fields.items() if field.dirty}

    def candidate(self) -> Config:
        base = self._current()
        name = self.name_edit.text().strip() if self.name_edit.text().strip() != self._initial_name else base.name
        config = replace(base, name=name, server=replace(base.server, **self.changes()))
        validate_config(config)
        return config

    def dirty(self) -> bool:
        operators = self.operators_panel is not None and self.operators_panel.has_changes()
        return bool(self.changes()) or self.name_edit.text().strip() != self._initial_name or operators

    async def apply_extra(self) -> None:
        if self.operators_panel is not None and self.operators_panel.has_changes():
            await self.operators_panel.apply()

    def mark_clean(self) -> None:
        for field in self.fields.values():
            field.mark_clean()
        self._initial_name = self.name_edit.text().strip()
        self.setWindowTitle(f"{self._initial_name} Properties")

    def show_problems(self, problems: Problems) -> Problems:
        rest = self._mark_fields(problems)
        for dialog in self.findChildren(SubDialog):
            dialog.update_ok()
        return rest

    def _mark_fields(self, problems: Problems) -> Problems:
        by_field: dict[str, str] = {}
        rest: Problems = []
        for key, why in problems:
            name = key.removeprefix("server.")
            if name in self.fields or name == NAME_KEY:
                by_field.setdefault(name, why)
            else:
                rest.append((key, why))
        for name, field in self.fields.items():
            field.set_problem(by_field.get(name))
        self.name_edit.setProperty("invalid", NAME_KEY in by_field)
        self.name_edit.style().polish(self.name_edit)
        # The sheet's problem line says where the field is (some live in "…" dialogs).
        self.problems = [(key, self._located(key, why)) for key, why in problems]
        return rest

    def _located(self, key: str, why: str) -> str:
        name = key.removeprefix("server.")
        if name == NAME_KEY:
            return f"Name: {why}"
        field = self.fields.get(name)
        if field is None:
            return why
        label = field.label.text().replace("&", "").rstrip(":")
        place = self.where.get(name, "")
        return f"{place} › {label}: {why}" if place else f"{label}: {why}"


def check(config: Config) -> Problems:
    """Every problem of ``config`` (tests and callers that want the list rather than an exception)."""
    try:
        validate_config(config)
    except ConfigError as error:
        return error.problems
    return []
