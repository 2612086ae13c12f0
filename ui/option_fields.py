"""Editors for the rows of the engine's option table: kind, range, unit and tooltip come from the Option."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.conf.config_file import item_problem
from engine.conf.hostport import split_hostport
from engine.conf.options import OPTIONS_BY_NAME, Option

# The words of the IIS property sheets; the option table's description is the tooltip.
LABELS: dict[str, str] = {
    "listen": "Identities (IP address and TCP port):",
    "fqdn": "Fully-qualified domain name:",
    "max_connections": "Limit number of connections to:",
    "connection_timeout": "Connection time-out:",
    "max_connections_per_peer": "Limit connections from one computer to:",
    "max_message_size_kb": "Limit message size to (KB):",
    "max_session_size_kb": "Limit session size to (KB):",
    "max_messages_per_connection": "Limit number of messages per connection to:",
    "max_recipients": "Limit number of recipients per message to:",
    "ndr_copy_to": "Send copy of Non-Delivery Report to:",
    "badmail_dir": "Badmail directory:",
    "retry_intervals_min": "Retry intervals (minutes):",
    "delay_notification_min": "Delay notification:",
    "expiration_min": "Expiration timeout:",
    "local_delay_notification_min": "Delay notification:",
    "local_expiration_min": "Expiration timeout:",
    "max_outbound_connections": "Limit number of connections to:",
    "max_outbound_per_domain": "Limit number of connections per domain to:",
    "outbound_timeout": "Time-out:",
    "outbound_port": "TCP port:",
    "max_hop_count": "Maximum hop count:",
    "outbound_tls": "TLS encryption (require it on every outbound connection)",
    "outbound_user": "User name:",
    "outbound_password": "Password:",
    "outbound_tls_verify": "Verify the next hop's certificate when TLS is required:",
    "outbound_tls_ca_file": "Trusted CA certificates (PEM file; empty = the system's store):",
    "auth_anonymous": "Anonymous access",
    "auth_basic": "Basic authentication (AUTH PLAIN and LOGIN)",
    "auth_plaintext_allowed": "Allow basic authentication without TLS encryption (passwords in clear text)",
    "auth_default_domain": "Default domain (for user names given without one):",
    "users_file": "Users file:",
    "auth_lockout_failures": "Lock out a computer after this many failed logons:",
    "auth_lockout_seconds": "Lock-out duration (seconds):",
    "auth_failure_delay_ms": "Delay after a failed logon (milliseconds):",
    "tls_certificate": "Certificate (PEM file):",
    "tls_key": "Private key (PEM file):",
    "require_tls": "Require TLS encryption",
    "tls_listen": "Secure identities — TLS from the first byte (SMTPS), HOST:PORT:",
    "connection_grant": "Computers that may connect:",
    "connection_list": "The list (IP address, network such as 192.0.2.0/24, or domain name):",
    "masquerade_domain": "Masquerade domain:",
    "smart_host": "Smart host:",
    "attempt_direct_before_smart_host": "Attempt direct delivery before sending to smart host",
    "reverse_dns_lookup": "Perform reverse DNS lookup on incoming messages",
    "dns_servers": "External DNS servers (HOST[:PORT]):",
    "relay_mode": "Computers that may relay:",
    "relay_allowed": "The list (IP address, network such as 192.0.2.0/24, or domain name):",
    "allow_verify": "Answer VRFY (the address is not confirmed: 252)",
    "badmail_max_size_mb": "Limit the Badmail directory to (MB):",
    "badmail_max_age_days": "Remove Badmail items older than (days):",
    "authenticated_may_relay": "Allow all computers which successfully authenticate to relay, "
                               "regardless of the list above",
    "max_bad_commands": "Limit bad commands per session to:",
    "max_command_line": "Longest command line (bytes):",
    "bare_newline": "Bare CR or LF in message data:",
    "log_enabled": "Enable logging",
    "log_format": "Active log format:",
    "log_period": "New log schedule:",
    "log_max_size_mb": "When file size reaches (MB):",
    "log_local_time": "Use local time for file naming and rollover",
    "log_dir": "Log file directory (empty: Logs beside the configuration file):",
    "log_fields": "Extended logging properties (W3C fields, in order):",
    "metrics_listen": "Prometheus /metrics address (HOST:PORT; empty = off):",
    "admin_listen": "Admin server address (HOST:PORT; empty = off):",
    "admin_tls_certificate": "Admin server certificate (PEM file; empty = the SMTP certificate):",
    "admin_tls_key": "Its private key (PEM file; empty = the SMTP key):",
    "admin_allow_plain_loopback": "Allow plain HTTP on a loopback address when there is no certificate",
    "operators_file": "Operators file (empty: beside the configuration file):",
}
RETRY_LABELS = ("First retry interval:", "Second retry interval:", "Third retry interval:",
                "Subsequent retry interval:")
CHOICE_LABELS: dict[str, str] = {
    "reject": "Reject the message (550 5.6.0)",
    "normalize": "Convert to CRLF",
    "all_except_listed": "All except the list below",
    "only_listed": "Only the list below",
    "required": "Yes, against the trusted certificates",
    "never": "No",
    "w3c": "W3C Extended Log File Format",
    "ncsa": "NCSA Common Log File Format",
    "iis": "Microsoft IIS Log File Format",
    "hourly": "Hourly",
    "daily": "Daily",
    "weekly": "Weekly",
    "monthly": "Monthly",
    "size": "When file size reaches the limit below",
    "unlimited": "Unlimited file size",
}
# Where "0 = no limit" reads as IIS's "Limit ... to" check box, the number shown when it is first ticked.
LIMIT_SUGGESTION: dict[str, int] = {"max_connections": 1000, "max_connections_per_peer": 20,
                                    "badmail_max_size_mb": 1024, "badmail_max_age_days": 30}


def label_of(option: Option) -> str:
    return LABELS.get(option.name, option.name.replace("_", " ").capitalize() + ":")


def tooltip_of(option: Option) -> str:
    parts = [option.description]
    if option.minimum is not None and option.maximum is not None:
        parts.append(f"Allowed: {option.minimum:,} to {option.maximum:,}{' ' + option.unit if option.unit else ''}.")
    if option.iis_name:
        parts.append(f"IIS: {option.iis_name}")
    return "\n".join(parts)


class OptionField(QObject):
    """One option's editor: ``widget`` goes in a layout; ``changed`` fires on every edit."""

    changed = Signal()

    def __init__(self, option: Option) -> None:
        super().__init__()
        self.option = option
        self.label = QLabel(label_of(option))
        self.widget = QWidget()
        self.initial: Any = None
        self.problem: str | None = None
        self.with_label = True  # False: the editor shows its own text (check boxes)

    def rows(self) -> list[tuple[QWidget | None, QWidget]]:
        """(label, editor) pairs for a two-column form; a None label lets the editor span both columns."""
        return [(self.label, self.widget)] if self.with_label else [(None, self.widget)]

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        raise NotImplementedError

    def load(self, value: Any) -> None:
        """Show ``value`` as the unchanged state."""
        self.blockSignals(True)
        try:
            self.set_value(value)
        finally:
            self.blockSignals(False)
        self.initial = self.value()

    def mark_clean(self) -> None:
        self.initial = self.value()

    @property
    def dirty(self) -> bool:
        return bool(self.value() != self.initial)

    def set_problem(self, why: str | None) -> None:
        self.problem = why
        for widget in self.marked_widgets():
            widget.setProperty("invalid", why is not None)
            widget.setToolTip(why or tooltip_of(self.option))
            widget.style().unpolish(widget)
            widget.style().polish(widget)

    def marked_widgets(self) -> list[QWidget]:
        return [self.widget]

    def set_enabled(self, enabled: bool, why: str = "") -> None:
        self.widget.setEnabled(enabled)
        self.label.setEnabled(enabled)
        if why:
            self.widget.setToolTip(why)
            self.label.setToolTip(why)


def _spin(option: Option, minimum: int | None = None) -> QSpinBox:
    spin = QSpinBox()
    low = option.minimum if minimum is None else minimum
    spin.setRange(low or 0, option.maximum or 2_147_483_647)
    spin.setGroupSeparatorShown(not option.name.endswith("port"))  # a port reads 2525, never "2,525"
    spin.setAlignment(Qt.AlignmentFlag.AlignRight)
    spin.setToolTip(tooltip_of(option))
    spin.setMinimumWidth(100)
    return spin


class IntField(OptionField):
    def __init__(self, option: Option) -> None:
        super().__init__(option)
        self.widget = self.spin = _spin(option)
        self.label.setBuddy(self.spin)
        self.spin.valueChanged.connect(self.changed)

    def value(self) -> int:
        return self.spin.value()

    def set_value(self, value: Any) -> None:
        self.spin.setValue(int(value))


class LimitField(OptionField):
    """IIS's "[x] Limit ... to: [n]": 0 in the option table means no limit (box unticked)."""

    def __init__(self, option: Option) -> None:
        super().__init__(option)
        self.with_label = False
        self.check = QCheckBox(label_of(option))
        self.check.setToolTip(tooltip_of(option))
        self.spin = _spin(option, minimum=1)
        self.widget = self.spin
        self.check.toggled.connect(self._toggled)
        self.spin.valueChanged.connect(self.changed)

    def rows(self) -> list[tuple[QWidget | None, QWidget]]:
        return [(self.check, self.spin)]

    def set_enabled(self, enabled: bool, why: str = "") -> None:
        self.check.setEnabled(enabled)
        self.spin.setEnabled(enabled and self.check.isChecked())

    def _toggled(self, on: bool) -> None:
        self.spin.setEnabled(on)
        self.changed.emit()

    def value(self) -> int:
        return self.spin.value() if self.check.isChecked() else 0

    def set_value(self, value: Any) -> None:
        number = int(value)
        default = self.option.default if isinstance(self.option.default, int) else 0
        suggestion = number or default or LIMIT_SUGGESTION.get(self.option.name, 1000)
        self.spin.setValue(suggestion)
        self.check.setChecked(number > 0)
        self.spin.setEnabled(number > 0)

    def marked_widgets(self) -> list[QWidget]:
        return [self.spin]


class BoolField(OptionField):
    def __init__(self, option: Option) -> None:
        super().__init__(option)
        self.with_label = False
        self.widget = self.check = QCheckBox(label_of(option))
        self.check.setToolTip(tooltip_of(option))
        self.check.toggled.connect(self.changed)

    def value(self) -> bool:
        return self.check.isChecked()

    def set_value(self, value: Any) -> None:
        self.check.setChecked(bool(value))


# Options naming a file: Browse… picks one (a users or operators file may not exist yet: it is made at the first add).
FILE_OPTIONS: dict[str, str] = {
    "tls_certificate": "PEM files (*.pem *.crt *.cer);;All files (*)",
    "tls_key": "PEM files (*.pem *.key);;All files (*)",
    "admin_tls_certificate": "PEM files (*.pem *.crt *.cer);;All files (*)",
    "admin_tls_key": "PEM files (*.pem *.key);;All files (*)",
    "outbound_tls_ca_file": "PEM files (*.pem *.crt);;All files (*)",
    "users_file": "",
    "operators_file": "",
}


class TextField(OptionField):
    def __init__(self, option: Option, browse: bool = False) -> None:
        super().__init__(option)
        self.edit = QLineEdit()
        self.edit.setToolTip(tooltip_of(option))
        self.edit.setClearButtonEnabled(True)
        if option.secret:
            self.edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.edit.textChanged.connect(self.changed)
        self.label.setBuddy(self.edit)
        self.widget = self.edit
        if browse:
            self.widget = QWidget()
            row = QHBoxLayout(self.widget)
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(self.edit, 1)
            button = QPushButton("Browse…")
            button.clicked.connect(self._browse)
            row.addWidget(button)

    def rows(self) -> list[tuple[QWidget | None, QWidget]]:
        return [(None, self.label), (None, self.widget)]  # as IIS: the label above a full-width box

    def _browse(self) -> None:
        title = label_of(self.option).replace("&", "").rstrip(":")
        name = self.option.name
        if name not in FILE_OPTIONS:
            chosen = QFileDialog.getExistingDirectory(self.widget, title, self.edit.text())
        elif FILE_OPTIONS[name]:
            chosen, _ = QFileDialog.getOpenFileName(self.widget, title, self.edit.text(), FILE_OPTIONS[name])
        else:  # a file smtpsvc makes when it is missing
            chosen, _ = QFileDialog.getSaveFileName(self.widget, title, self.edit.text(),
                                                    options=QFileDialog.Option.DontConfirmOverwrite)
        if chosen:
            self.edit.setText(chosen)

    def value(self) -> str:
        return self.edit.text().strip()

    def set_value(self, value: Any) -> None:
        self.edit.setText(str(value))

    def marked_widgets(self) -> list[QWidget]:
        return [self.edit]


class ChoiceField(OptionField):
    def __init__(self, option: Option) -> None:
        super().__init__(option)
        self.widget = self.combo = QComboBox()
        self.label.setBuddy(self.combo)
        for choice in option.choices:
            self.combo.addItem(CHOICE_LABELS.get(choice, choice), choice)
        self.combo.setToolTip(tooltip_of(option))
        self.combo.currentIndexChanged.connect(self.changed)

    def value(self) -> str:
        return str(self.combo.currentData())

    def set_value(self, value: Any) -> None:
        self.combo.setCurrentIndex(max(0, self.combo.findData(value)))


class IntListField(OptionField):
    """The retry intervals: one box per entry, as IIS's first/second/third/subsequent."""

    def __init__(self, option: Option) -> None:
        super().__init__(option)
        self.with_label = False
        self.spins = [_spin(option) for _ in range(option.max_items or 4)]
        self.labels = [QLabel(RETRY_LABELS[row] if row < len(RETRY_LABELS) else f"Interval {row + 1}:")
                       for row in range(len(self.spins))]
        self.widget = self.spins[0]
        for label, spin in zip(self.labels, self.spins, strict=True):
            label.setBuddy(spin)
            spin.setSuffix(f" {option.unit}" if option.unit else "")
            spin.valueChanged.connect(self.changed)

    def rows(self) -> list[tuple[QWidget | None, QWidget]]:
        return list(zip(self.labels, self.spins, strict=True))

    def value(self) -> tuple[int, ...]:
        return tuple(spin.value() for spin in self.spins)

    def set_value(self, value: Any) -> None:
        items = [int(item) for item in value] or [int(v) for v in self.option.default]  # type: ignore[attr-defined]
        for index, spin in enumerate(self.spins):
            spin.setValue(items[min(index, len(items) - 1)])

    def marked_widgets(self) -> list[QWidget]:
        return list(self.spins)


# Examples of one entry: shown greyed in the empty Add box, never put into the list themselves.
EXAMPLES: dict[str, str] = {
    "listen": "e.g. 127.0.0.1:25, [::1]:25 or 0.0.0.0:25",
    "tls_listen": "e.g. 127.0.0.1:465",
    "dns_servers": "e.g. 192.0.2.53 or 192.0.2.53:5353",
    "relay_allowed": "e.g. 192.0.2.7 or 192.0.2.0/24",
    "connection_list": "e.g. 192.0.2.7, 192.0.2.0/24, 10.0.0.0/255.0.0.0 or *.example.com",
}
ENTRY_TITLES: dict[str, str] = {
    "listen": "Identity", "tls_listen": "Secure Identity", "dns_servers": "DNS Server",
    "relay_allowed": "Computer", "connection_list": "Computer", "log_fields": "Field",
}


class EntryDialog(QDialog):
    """Add… / Edit… of one list entry: OK only for an entry the option table accepts (and not listed yet)."""

    def __init__(self, option: Option, text: str, others: tuple[str, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.option = option
        self.others = {other.casefold() for other in others}
        noun = ENTRY_TITLES.get(option.name, "Entry")
        self.setWindowTitle(f"Edit {noun}" if text else f"Add {noun}")
        self.edit = QLineEdit(text)
        self.edit.setPlaceholderText(EXAMPLES.get(option.name) or
                                     (f"e.g. {option.choices[0]}" if option.choices else ""))
        if option.choices:  # (the W3C log fields): offer the names not listed yet
            completer = QCompleter([c for c in option.choices if c.casefold() not in self.others], self)
            completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
            completer.setFilterMode(Qt.MatchFlag.MatchContains)
            self.edit.setCompleter(completer)
        self.edit.setMinimumWidth(360)
        self.edit.setToolTip(tooltip_of(option))
        self.problem = QLabel()
        self.problem.setObjectName("problem")
        self.problem.setWordWrap(True)
        self.problem.setMinimumHeight(3 * self.problem.fontMetrics().lineSpacing())  # room before it is needed
        self.problem.setAlignment(Qt.AlignmentFlag.AlignTop)
        label = QLabel(label_of(option).replace("&", "&&"))
        label.setWordWrap(True)
        label.setBuddy(self.edit)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(self.edit)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.edit.textChanged.connect(self._check)
        self._check()

    def entry(self) -> str:
        return self.edit.text().strip()

    def why_not(self) -> str | None:
        text = self.entry()
        if not text:
            return ""  # nothing to say yet, but nothing to add either
        if text.casefold() in self.others:
            return f"{text} is already in the list"
        return item_problem(self.option, text)

    def _check(self) -> None:
        why = self.why_not()
        self.problem.setText(why[:1].upper() + why[1:] if why else "")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(why is None)

    def accept(self) -> None:
        if self.why_not() is None:
            super().accept()


# IIS's number + unit rows (Delivery tab: "Delay notification: [12] [Hours]"; General: time-out in minutes).
# The option keeps its own unit; the field shows the largest unit that states the value exactly.
DURATION_UNITS: dict[str, tuple[tuple[str, int], ...]] = {
    "min": (("Minutes", 1), ("Hours", 60), ("Days", 1440)),
    "s": (("Seconds", 1), ("Minutes", 60), ("Hours", 3600)),
}
DURATIONS = ("delay_notification_min", "expiration_min", "local_delay_notification_min", "local_expiration_min",
             "connection_timeout", "outbound_timeout")


class DurationField(OptionField):
    """A duration as number + unit (Minutes / Hours / Days); ``value()`` is in the option's own unit."""

    def __init__(self, option: Option) -> None:
        super().__init__(option)
        self.units = DURATION_UNITS[option.unit]
        self.spin = _spin(option)
        self.spin.setMinimumWidth(80)
        self.combo = QComboBox()
        for name, factor in self.units:
            self.combo.addItem(name, factor)
        self.combo.setToolTip(tooltip_of(option))
        self.widget = QWidget()
        row = QHBoxLayout(self.widget)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.spin)
        row.addWidget(self.combo)
        row.addStretch(1)
        self.label.setBuddy(self.spin)
        self.spin.valueChanged.connect(self.changed)
        self.combo.currentIndexChanged.connect(self._unit_changed)

    def factor(self) -> int:
        return int(self.combo.currentData())

    def _unit_changed(self) -> None:
        """As IIS: the number stays, its unit changes (the range follows the unit)."""
        number = self.spin.value()
        self._range()
        self.spin.setValue(number)
        self.changed.emit()

    def _range(self) -> None:
        factor = self.factor()
        low = max(1, -(-(self.option.minimum or 1) // factor))
        self.spin.setRange(low, max(low, (self.option.maximum or 2_147_483_647) // factor))

    def value(self) -> int:
        return self.spin.value() * self.factor()

    def set_value(self, value: Any) -> None:
        number = int(value)
        index = max((i for i, (_, factor) in enumerate(self.units) if number % factor == 0), default=0)
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(index)
        self.combo.blockSignals(False)
        self._range()
        self.spin.setValue(number // self.units[index][1])

    def marked_widgets(self) -> list[QWidget]:
        return [self.spin]

    def set_enabled(self, enabled: bool, why: str = "") -> None:
        super().set_enabled(enabled, why)
        self.spin.setEnabled(enabled)
        self.combo.setEnabled(enabled)


class StrListField(OptionField):
    """A list of text entries (identities, relay list, DNS servers): Add…, Edit… and Remove.

    Entries are changed only through EntryDialog, which checks them as the option table does; a cancelled
    or empty dialog changes nothing (examples are placeholder text, never values)."""

    def __init__(self, option: Option) -> None:
        super().__init__(option)
        self.list = QListWidget()
        self.list.setToolTip(tooltip_of(option))
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setMinimumHeight(90)
        self.add_button = QPushButton("A&dd…")
        self.edit_button = QPushButton("&Edit…")
        self.remove_button = QPushButton("Re&move")
        self.add_button.clicked.connect(self.add_entry)
        self.edit_button.clicked.connect(self.edit_entry)
        self.remove_button.clicked.connect(self._remove)
        self.list.itemActivated.connect(lambda _item: self.edit_entry())
        self.list.itemSelectionChanged.connect(self._selection)
        self.widget = QWidget()
        row = QHBoxLayout(self.widget)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.list, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.edit_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        row.addLayout(buttons)
        self.label.setBuddy(self.list)
        self._selection()

    def rows(self) -> list[tuple[QWidget | None, QWidget]]:
        return [(None, self.label), (None, self.widget)]

    def dialog(self, text: str = "") -> EntryDialog:
        """The Add/Edit dialog (tests drive it; ``add_entry``/``edit_entry`` run it modally)."""
        current = self.value()
        others = tuple(entry for entry in current if entry != text)
        return EntryDialog(self.option, text, others, self.widget)

    def add_entry(self) -> None:
        box = self.dialog()
        if box.exec() == QDialog.DialogCode.Accepted and box.entry():
            self.list.addItem(box.entry())
            self.list.setCurrentRow(self.list.count() - 1)
            self.changed.emit()

    def edit_entry(self) -> None:
        if self.list.currentRow() < 0:
            return
        item = self.list.currentItem()
        box = self.dialog(item.text())
        if box.exec() == QDialog.DialogCode.Accepted and box.entry() and box.entry() != item.text():
            item.setText(box.entry())
            self.changed.emit()

    def _remove(self) -> None:
        taken = [self.list.takeItem(self.list.row(item)) for item in self.list.selectedItems()]
        if taken:
            self.changed.emit()

    def _selection(self) -> None:
        selected = len(self.list.selectedItems())
        self.remove_button.setEnabled(selected > 0)
        self.edit_button.setEnabled(selected == 1)

    def value(self) -> tuple[str, ...]:
        return tuple(self.list.item(i).text().strip() for i in range(self.list.count()))

    def set_value(self, value: Any) -> None:
        self.list.clear()
        for text in value:
            self.list.addItem(str(text))

    def marked_widgets(self) -> list[QWidget]:
        return [self.list]


ALL_UNASSIGNED = {"0.0.0.0": "(All Unassigned)", "::": "(All Unassigned, IPv6)"}


def identity_cells(text: str) -> tuple[str, str]:
    """An identity ("HOST:PORT") as IIS's Identities table shows it: (IP address, TCP port)."""
    try:
        host, port = split_hostport(text, 25)
    except ValueError:
        return text, ""  # shown as it is; the field's problem line says what is wrong
    return ALL_UNASSIGNED.get(host, host), str(port)


class IdentitiesField(StrListField):
    """The virtual server's identities as IIS's address table (IP address, TCP port); the entries stay
    "HOST:PORT" (the list under the table keeps them, the Add/Edit dialog checks them)."""

    def __init__(self, option: Option) -> None:
        super().__init__(option)
        self.table = QTreeWidget()
        self.table.setHeaderLabels(["IP address", "TCP port"])
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setToolTip(self.list.toolTip())
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setMinimumHeight(90)
        self.table.setMinimumWidth(300)
        header = self.table.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the port column always shows
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._table_selection)
        self.table.itemActivated.connect(lambda *_: self.edit_entry())
        layout = self.widget.layout()
        if isinstance(layout, QHBoxLayout):
            layout.replaceWidget(self.list, self.table)
        self.list.hide()
        self.label.setBuddy(self.table)
        self.changed.connect(self._fill_table)

    def _fill_table(self) -> None:
        selected = {self.list.row(item) for item in self.list.selectedItems()}
        self.table.blockSignals(True)
        self.table.clear()
        for row, text in enumerate(self.value()):
            item = QTreeWidgetItem(self.table, list(identity_cells(text)))
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setToolTip(0, text)
            item.setSelected(row in selected)
        self.table.blockSignals(False)

    def _table_selection(self) -> None:
        """The table's selection is the list's: Edit… and Remove act on it."""
        rows = {self.table.indexOfTopLevelItem(item) for item in self.table.selectedItems()}
        self.list.blockSignals(True)
        for row in range(self.list.count()):
            self.list.item(row).setSelected(row in rows)
        current = self.table.currentItem()
        if current is not None:
            self.list.setCurrentRow(self.table.indexOfTopLevelItem(current),
                                    QItemSelectionModel.SelectionFlag.NoUpdate)
        self.list.blockSignals(False)
        self._selection()

    def add_entry(self) -> None:
        super().add_entry()
        self._fill_table()

    def edit_entry(self) -> None:
        super().edit_entry()
        self._fill_table()

    def set_value(self, value: Any) -> None:
        super().set_value(value)
        self._fill_table()

    def marked_widgets(self) -> list[QWidget]:
        return [self.table]


def make_field(option: Option) -> OptionField:
    """The editor the option's type calls for."""
    if option.name == "listen":
        return IdentitiesField(option)
    if option.type == "int" and option.name in DURATIONS and option.unit in DURATION_UNITS:
        return DurationField(option)
    if option.type == "int":
        return LimitField(option) if option.minimum == 0 else IntField(option)
    if option.type == "bool":
        return BoolField(option)
    if option.type == "choice":
        return ChoiceField(option)
    if option.type == "int_list":
        return IntListField(option)
    if option.type == "str_list":
        return StrListField(option)
    return TextField(option, browse=option.name.endswith("_dir") or option.name in FILE_OPTIONS)


def make_fields(names: list[str], factory: Callable[[Option], OptionField] = make_field) -> dict[str, OptionField]:
    return {name: factory(OPTIONS_BY_NAME[name]) for name in names}
