"""Tray notices (View ▸ Tray Notices, off by default): new Badmail and returned mail, as a desktop notification."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QSystemTrayIcon

from engine.events import Event, MessageBadmailed, MessageRemoved

NOTICE_MS = 8000


def notice_for(batch: Iterable[Event]) -> tuple[str, str] | None:
    """(title, text) for a batch of engine events, or None when nothing in it is worth a notice."""
    badmail = [e for e in batch if isinstance(e, MessageBadmailed)]
    returned = [e for e in batch if isinstance(e, MessageRemoved) and e.reason == "returned"]
    if not badmail and not returned:
        return None
    parts = []
    if badmail:
        first = " ".join(badmail[0].reason.split())
        parts.append(f"New Badmail: {first}" if len(badmail) == 1 else f"{len(badmail)} new Badmail items")
    if returned:
        parts.append("A message could not be delivered and was returned to its sender" if len(returned) == 1
                     else f"{len(returned)} messages could not be delivered and were returned to their senders")
    title = "Badmail" if badmail and not returned else "Delivery failure" if returned and not badmail \
        else "Badmail and delivery failures"
    return f"SMTP Service: {title}", "\n".join(parts)


class TrayNotices(QObject):
    """Shows notices while enabled and the desktop has a tray; a click on one raises the window."""

    clicked = Signal()

    def __init__(self, icon: QIcon, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._icon = icon
        self._tray: QSystemTrayIcon | None = None
        self.enabled = False
        self.shown: list[tuple[str, str]] = []  # what was shown (the last few), for the window and tests

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        if on and self._tray is None and self.available():
            self._tray = QSystemTrayIcon(self._icon, self)
            self._tray.setToolTip("SMTP Service Manager")
            self._tray.messageClicked.connect(self.clicked.emit)
            self._tray.activated.connect(lambda _reason: self.clicked.emit())
        if self._tray is not None:
            self._tray.setVisible(on)

    def on_events(self, batch: list[Event]) -> None:
        if not self.enabled:
            return
        notice = notice_for(batch)
        if notice is not None:
            self.show(*notice)

    def show(self, title: str, text: str) -> None:
        self.shown = [*self.shown[-9:], (title, text)]
        if self._tray is not None:
            self._tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Warning, NOTICE_MS)

    def close(self) -> None:
        if self._tray is not None:
            self._tray.hide()
