"""The property-sheet frame: tabs, a problem line, OK / Cancel / Apply (Apply only after a change), one apply.

Invariant: the engine receives one whole, validated configuration per OK/Apply, or nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWhatsThis,
    QWidget,
)

from engine.conf.config import Config
from engine.errors import ConfigError, EngineError
from ui.errors import MessageBridge
from ui.help import show_help
from ui.icons import icon
from ui.tasks import TaskRunner

Problems = list[tuple[str, str]]
ApplyFn = Callable[[Config], Awaitable[None]]


class PropertySheet(QDialog):
    """Subclasses build tabs and implement ``candidate``, ``dirty``, ``mark_clean`` and ``show_problems``."""

    applied = Signal(object)  # the Config that reached the engine

    def __init__(self, title: str, apply: ApplyFn, runner: TaskRunner, messages: MessageBridge,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setModal(True)
        self._apply_fn = apply
        self._runner = runner
        self._messages = messages
        self._busy = False
        self.problems: Problems = []
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(False)
        self.problem_icon = QLabel()
        self.problem_icon.setPixmap(icon("badge-stopped").pixmap(16, 16))
        self.problem_label = QLabel()
        self.problem_label.setObjectName("problem")
        self.problem_label.setWordWrap(True)
        problem_row = QHBoxLayout()
        problem_row.addWidget(self.problem_icon, 0, Qt.AlignmentFlag.AlignTop)
        problem_row.addWidget(self.problem_label, 1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                        | QDialogButtonBox.StandardButton.Apply
                                        | QDialogButtonBox.StandardButton.Help)
        self.buttons.helpRequested.connect(self.show_help)
        help_key = QShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents), self)
        help_key.activated.connect(self.show_help)
        # What's This? (MMC's "?" on a property sheet): the "?" of the title bar where the window manager draws
        # one, a button beside Help, and Shift+F1; then a click on a field shows that field's help.
        self.setWindowFlag(Qt.WindowType.WindowContextHelpButtonHint, True)
        self.whats_this_button = QPushButton("?")
        self.whats_this_button.setToolTip("What's This? (Shift+F1): then click a field to read what it does")
        self.whats_this_button.setFixedWidth(self.whats_this_button.fontMetrics().horizontalAdvance("?") + 24)
        self.whats_this_button.setAutoDefault(False)
        self.whats_this_button.clicked.connect(QWhatsThis.enterWhatsThisMode)
        self.buttons.addButton(self.whats_this_button, QDialogButtonBox.ButtonRole.HelpRole)
        self.whats_this_key = QShortcut(QKeySequence(QKeySequence.StandardKey.WhatsThis), self)
        self.whats_this_key.activated.connect(QWhatsThis.enterWhatsThisMode)
        self._explained = False
        self.ok_button: QPushButton = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.cancel_button: QPushButton = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.apply_button: QPushButton = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.ok_button.clicked.connect(lambda: self._submit(close=True))
        self.apply_button.clicked.connect(lambda: self._submit(close=False))
        self.cancel_button.clicked.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(problem_row)
        layout.addWidget(self.buttons)
        self._show_problem_line()

    def showEvent(self, event: QShowEvent) -> None:
        if not self._explained:
            self._explained = True
            self.explain_fields()
        super().showEvent(event)

    def explain_fields(self) -> None:
        """Each field's What's This? text is its tooltip (what it does and the IIS metabase name); a label says
        what its field says."""
        for widget in self.findChildren(QWidget):
            if widget.toolTip() and not widget.whatsThis():
                widget.setWhatsThis(widget.toolTip())
        for label in self.findChildren(QLabel):
            buddy = label.buddy()
            if buddy is not None and buddy.whatsThis() and not label.whatsThis():
                label.setWhatsThis(buddy.whatsThis())

    # -- to implement ---------------------------------------------------------------------------

    def help_topic(self) -> str:
        """The manual's section for the page in front: "sheet-general", "sheet-access", …"""
        return "sheet-" + self.tabs.tabText(self.tabs.currentIndex()).replace("&", "").lower()

    def show_help(self) -> None:
        show_help(self.help_topic(), self)

    def candidate(self) -> Config:
        """The whole configuration the sheet would apply; raises ConfigError (or DomainError) if invalid."""
        raise NotImplementedError

    def dirty(self) -> bool:
        raise NotImplementedError

    def mark_clean(self) -> None:
        raise NotImplementedError

    async def apply_extra(self) -> None:
        """Changes the sheet makes beside the configuration, after it (the Security tab's Operators list)."""

    def show_problems(self, problems: Problems) -> Problems:
        """Mark the fields ``problems`` name; return the problems no field shows."""
        return problems

    # -- validation and applying ----------------------------------------------------------------

    def revalidate(self) -> None:
        problems: Problems = []
        try:
            self.candidate()
        except ConfigError as error:
            problems = error.problems
        except EngineError as error:
            problems = [("", str(error))]
        self.problems = problems
        self.show_problems(problems)
        self._show_problem_line()
        self._update_buttons()

    def _show_problem_line(self) -> None:
        text = "\n".join(why for _key, why in self.problems[:3])
        if len(self.problems) > 3:
            text += f"\n… and {len(self.problems) - 3} more"
        self.problem_label.setText(text)
        self.problem_label.setVisible(bool(text))
        self.problem_icon.setVisible(bool(text))

    def _update_buttons(self) -> None:
        valid = not self.problems
        self.ok_button.setEnabled(valid and not self._busy)
        self.apply_button.setEnabled(valid and not self._busy and self.dirty())
        self.cancel_button.setEnabled(not self._busy)

    def _submit(self, close: bool) -> None:
        self.revalidate()
        if self.problems or self._busy:
            return
        if not self.dirty():
            if close:
                self.accept()
            return
        config = self.candidate()
        self._busy = True
        self._update_buttons()
        self._runner.spawn(self._apply(config, close), "Apply properties")

    async def _apply(self, config: Config, close: bool) -> None:
        try:
            await self._apply_fn(config)
            await self.apply_extra()
        except Exception as error:
            self._busy = False
            self._update_buttons()
            self._messages.error(f"{self.windowTitle()}: the changes were not applied", error)
            return
        self._busy = False
        self.mark_clean()
        self.applied.emit(config)
        self.revalidate()
        if close:
            self.accept()

    @property
    def busy(self) -> bool:
        return self._busy
