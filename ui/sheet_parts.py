"""Building blocks of the property sheets: forms of option fields, group boxes, "…" sub-dialogs, not-built controls."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPushButton,
    QVBoxLayout,
    QWhatsThis,
    QWidget,
)

from ui.option_fields import OptionField

NOT_BUILT = "Not available yet: {what} is not built in this version of smtpsvc."
W = TypeVar("W", bound=QWidget)


def _mnemonic_of(text: str) -> str:
    at = text.replace("&&", "").find("&")
    return text.replace("&&", "")[at + 1].lower() if 0 <= at < len(text.replace("&&", "")) - 1 else ""


def with_mnemonic(text: str, used: set[str]) -> str:
    """``text`` with an accelerator on a letter not in ``used`` (a word's first letter if one is free)."""
    if _mnemonic_of(text) or not text.strip():
        return text
    starts = [i for i, c in enumerate(text) if c.isalnum() and (i == 0 or not text[i - 1].isalnum())]
    others = [i for i, c in enumerate(text) if c.isalnum() and i not in starts]
    for i in starts + others:
        if text[i].lower() not in used:
            used.add(text[i].lower())
            return text[:i] + "&" + text[i:]
    return text


def assign_mnemonics(root: QWidget, taken: str = "") -> None:
    """MMC/IIS habit: every label, check box and button of a page has its Alt+letter, each letter once.

    Letters already given (OK, Cancel, Apply, "Re&move" …) are kept; labels without a buddy are left alone
    (an accelerator must lead somewhere); ``taken``: letters of the dialog's own buttons (OK, Cancel …)."""
    widgets = [w for w in root.findChildren(QWidget) if isinstance(w, QLabel | QAbstractButton)
               and not isinstance(w.parentWidget(), QDialogButtonBox)]  # OK, Cancel: Enter and Esc
    used = {letter for w in widgets if (letter := _mnemonic_of(_text_of(w)))} | set(taken)
    for widget in widgets:
        if isinstance(widget, QLabel) and (widget.buddy() is None or widget.textFormat() == Qt.TextFormat.RichText):
            continue
        text = _text_of(widget)
        if not text or "&" in text.replace("&&", ""):
            continue
        marked = with_mnemonic(text, used)
        if isinstance(widget, QLabel | QAbstractButton):
            widget.setText(marked)


def _text_of(widget: QWidget) -> str:
    if isinstance(widget, QLabel | QAbstractButton):
        return widget.text()
    return ""


def not_built(widget: W, what: str) -> W:
    """Show a control for a feature the engine does not have yet: visible, disabled, saying so."""
    widget.setEnabled(False)
    widget.setToolTip(NOT_BUILT.format(what=what))
    return widget


def form(fields: Iterable[OptionField], parent: QWidget | None = None) -> QGridLayout:
    """Labels (or "Limit … to" check boxes) in one column, editors in the next; numbers stay narrow."""
    layout = QGridLayout(parent)
    layout.setColumnStretch(1, 1)
    row = 0
    for field in fields:
        for label, editor in field.rows():
            if label is None:
                layout.addWidget(editor, row, 0, 1, 2)
            else:
                layout.addWidget(label, row, 0)
                narrow = isinstance(editor, QAbstractSpinBox | QComboBox)
                layout.addWidget(editor, row, 1, Qt.AlignmentFlag.AlignLeft if narrow else Qt.AlignmentFlag(0))
            row += 1
    return layout


def group(title: str, *rows: QWidget | QLayout) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    for row in rows:
        if isinstance(row, QWidget):
            layout.addWidget(row)
        else:
            layout.addLayout(row)
    return box


def note(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


def button_row(*buttons: QPushButton) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addStretch(1)
    for button in buttons:
        row.addWidget(button)
    return row


class SubDialog(QDialog):
    """A "…" dialog of a sheet: edits fields the sheet owns; Cancel puts back what they held when it opened.

    The sheet calls ``update_ok`` after each validation (OK stays disabled while a field here is invalid).
    """

    def __init__(self, title: str, fields: list[OptionField], intro: str = "",
                 parent: QWidget | None = None, extra: QWidget | None = None,
                 show_help: Callable[[], object] | None = None, extra_before: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setModal(True)
        self.fields = fields
        self._saved: list[object] = []
        layout = QVBoxLayout(self)
        if intro:
            layout.addWidget(note(intro))
        # ``extra`` goes under the fields, or over the field named ``extra_before`` (a choice that governs it)
        split = next((n for n, field in enumerate(fields) if field.option.name == extra_before), len(fields))
        before, after = fields[:split], fields[split:]
        if before or not after:
            body = QWidget()
            form(before, body)
            layout.addWidget(body)
        if extra is not None:
            layout.addWidget(extra)
        if after:
            body = QWidget()
            form(after, body)
            layout.addWidget(body)
        layout.addStretch(1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        if show_help is not None:  # as IIS's dialogs: Help (F1) for the sheet's page, and What's This? (Shift+F1)
            self.buttons.addButton(QDialogButtonBox.StandardButton.Help)
            self.buttons.helpRequested.connect(show_help)
            QShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents), self).activated.connect(show_help)
            self.setWindowFlag(Qt.WindowType.WindowContextHelpButtonHint, True)
            whats_this = QPushButton("?")
            whats_this.setToolTip("What's This? (Shift+F1): then click a field to read what it does")
            whats_this.setFixedWidth(whats_this.fontMetrics().horizontalAdvance("?") + 24)
            whats_this.setAutoDefault(False)
            whats_this.clicked.connect(QWhatsThis.enterWhatsThisMode)
            self.buttons.addButton(whats_this, QDialogButtonBox.ButtonRole.HelpRole)
            QShortcut(QKeySequence(QKeySequence.StandardKey.WhatsThis), self).activated.connect(
                QWhatsThis.enterWhatsThisMode)
        layout.addWidget(self.buttons)
        assign_mnemonics(self, "oc")

    def open(self) -> None:
        self._saved = [field.value() for field in self.fields]
        self.update_ok()
        super().open()

    def update_ok(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(
            not any(field.problem for field in self.fields))

    def reject(self) -> None:
        for field, value in zip(self.fields, self._saved, strict=False):
            field.set_value(value)
        super().reject()


def opener(text: str, dialog: SubDialog) -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(dialog.open)
    return button
