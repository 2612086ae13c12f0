"""The one way the window shortens a path, host name or address that does not fit: in the middle, whole in a tooltip."""

from __future__ import annotations

import re

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFontMetrics, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

# One token with a separator: /var/mail/Drop, C:\Inetpub\mailroot, relay1.partner.example:25, a@b.example
_NAME = re.compile(r"^[^\s]*[/\\.@:][^\s]*$")


def is_name(text: str) -> bool:
    """Whether ``text`` is a path, host name or address (both ends matter: cut in the middle), not prose."""
    if _NAME.match(text):
        return True
    return ("/" in text or "\\" in text) and len(text.split()) <= 3  # "Delivered to: /var/mail/Drop"


def elide_mode(text: str) -> Qt.TextElideMode:
    return Qt.TextElideMode.ElideMiddle if is_name(text) else Qt.TextElideMode.ElideRight


def elided(text: str, metrics: QFontMetrics, width: int) -> str:
    """``text`` as it fits in ``width`` pixels: a name cut in the middle, prose at the end."""
    return metrics.elidedText(text, elide_mode(text), max(0, width))


class ElidedLabel(QLabel):
    """A one-line label for a path, host or address: cut in the middle when narrow, the whole text in its tooltip.
    ``full`` is the text; ``text()`` is what shows."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.full = ""
        self._tip = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def setText(self, text: str) -> None:
        self.full = text
        self._fit()

    def setToolTip(self, tip: str) -> None:
        self._tip = tip
        self._fit()

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance(self.full) + 4, super().sizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        shown = elided(self.full, self.fontMetrics(), self.contentsRect().width()) if self.width() > 0 else self.full
        super().setText(shown)
        cut = shown != self.full
        super().setToolTip("\n".join(t for t in (self.full if cut else "", self._tip) if t))

    @property
    def is_cut(self) -> bool:
        return self.text() != self.full
