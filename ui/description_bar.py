"""MMC's description bar over the result pane: the node's path in bold, then what the node is, cut with "…" when
the pane is narrow (the whole text in the tooltip)."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class DescriptionBar(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("descriptionBar")
        self.setContentsMargins(6, 3, 6, 3)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the window
        self.setTextFormat(Qt.TextFormat.RichText)
        self.path = ""
        self.description = ""

    def set_description(self, path: str, description: str) -> None:
        self.path, self.description = path, description
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        bold = QFont(self.font())
        bold.setBold(True)
        rest = f" — {self.description}" if self.description else ""
        room = self.contentsRect().width() - QFontMetrics(bold).horizontalAdvance(self.path) - 2
        shown = QFontMetrics(self.font()).elidedText(rest, Qt.TextElideMode.ElideRight, max(room, 0)) if rest else ""
        self.setText(f"<b>{html.escape(self.path)}</b>{html.escape(shown)}")
        self.setToolTip("" if shown == rest else self.path + rest)
