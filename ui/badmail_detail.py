"""Badmail Properties: the reason (.BDR), the envelope and properties (.BDP) of one Badmail item."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.bounce.badmail import BadmailItem
from ui.elide import ElidedLabel, is_name
from ui.icons import icon
from ui.models.folders import source_label
from ui.units import moment

PROPERTY_LABELS = {"pickup-file": "Original Pickup file", "queue-id": "Queued message", "badmailed-at":
                   "Badmailed at (UTC)"}


class BadmailDialog(QDialog):
    """``act(name)`` asks the window to run "view" or "resend" on this item."""

    act = Signal(str)

    def __init__(self, item: BadmailItem, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.item = item
        self.setWindowTitle(f"Badmail Item {item.name} Properties")
        self.setMinimumWidth(560)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.labels: dict[str, QLabel] = {}
        rows = [("Name", item.name), ("Date", moment(item.at) if item.at else "—"),
                ("Source", source_label(item)),
                *((PROPERTY_LABELS.get(key, key.replace("-", " ").capitalize()), value)
                  for key, value in item.properties),
                ("Sender", item.sender or ("(none)" if item.source == "pickup" else "<> (null sender)")),
                ("Recipients", "\n".join(item.recipients) or "(none)")]
        for name, text in rows:
            label = QLabel(text) if "\n" in text or not is_name(text) else ElidedLabel(text)  # prose wraps
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(not isinstance(label, ElidedLabel))
            self.labels[name] = label
            form.addRow(f"{name}:", label)
        self.reason = QPlainTextEdit(item.reason)
        self.reason.setReadOnly(True)
        self.reason.setMaximumHeight(110)
        reason_label = QLabel("&Reason (.BDR):")
        reason_label.setBuddy(self.reason)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        for action, text, icon_name, tip in (
                ("view", "&View Message", "view", "Show the bad file or message as it was received"),
                ("resend", "Re&send", "resend", "Put it back into the Pickup directory")):
            button = QPushButton(icon(icon_name), text)
            button.setToolTip(tip)
            button.setAutoDefault(False)
            button.clicked.connect(lambda _=False, name=action: self.act.emit(name))
            self.buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(reason_label)
        layout.addWidget(self.reason)
        layout.addWidget(self.buttons)
