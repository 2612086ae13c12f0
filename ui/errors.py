"""The message bridge: every error meant for the user ends in one dialog or the status bar, never only a trace."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from engine.errors import ConfigError, EngineError

log = logging.getLogger(__name__)


def describe(error: BaseException) -> str:
    """The sentence a user reads for ``error``."""
    if isinstance(error, ConfigError):
        return "\n".join(f"{key}: {why}" for key, why in error.problems)
    text = str(error) or type(error).__name__
    return text[:1].upper() + text[1:]


class MessageBridge(QObject):
    """Shows errors (modal box) and notes (status bar); tests replace ``show_box`` to record instead."""

    note = Signal(str)

    def __init__(self, parent_widget: Callable[[], QWidget | None] = lambda: None) -> None:
        super().__init__()
        self.parent_widget = parent_widget
        self.show_box: Callable[[str, str, bool], None] = self._box

    def error(self, title: str, error: BaseException) -> None:
        if isinstance(error, EngineError):
            self.show_box(title, describe(error), False)
            return
        log.error("%s", title, exc_info=error)
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        self.show_box(title, f"An unexpected error occurred:\n{detail}", True)

    def refuse(self, title: str, reason: str) -> None:
        """An action the rules do not allow (delete the default domain...): a warning with the reason."""
        self.show_box(title, reason, False)

    def inform(self, text: str) -> None:
        self.note.emit(text)

    def _box(self, title: str, text: str, unexpected: bool) -> None:
        icon = QMessageBox.Icon.Critical if unexpected else QMessageBox.Icon.Warning
        box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self.parent_widget())
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # window-modal, without a nested event loop inside the asyncio loop
