"""F1 help: the manual shipped with the package (resources/help/manual.html), opened at the topic in front."""

from __future__ import annotations

from importlib import resources

from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

MANUAL = "manual.html"


def manual_html() -> str:
    return resources.files("resources").joinpath("help", MANUAL).read_text(encoding="utf-8")


class HelpWindow(QDialog):
    """One non-modal help window; ``show_topic`` scrolls it to a section (a node or property page name)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("SMTP Service Manager Help")
        self.resize(640, 560)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setHtml(manual_html())
        self.browser.anchorClicked.connect(self._anchor)
        self.browser.setOpenLinks(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.topic = ""

    def _anchor(self, url: QUrl) -> None:
        if url.fragment():
            self.show_topic(url.fragment())

    def show_topic(self, topic: str) -> None:
        self.topic = topic
        self.browser.scrollToAnchor(topic)
        self.show()
        self.raise_()
        self.activateWindow()


_window: HelpWindow | None = None


def show_help(topic: str, parent: QWidget | None = None) -> HelpWindow:
    """Open (or bring forward) the help window at ``topic``."""
    global _window
    if _window is None:
        _window = HelpWindow(parent)
        _window.destroyed.connect(_forget)
    _window.show_topic(topic)
    return _window


def _forget() -> None:
    global _window
    _window = None
