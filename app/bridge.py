"""The one place engine and Qt meet: engine event batches from the engine thread become a Qt signal."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from engine.events import Event


class EngineBridge(QObject):
    """Create it on the GUI thread; ``deliver`` may be called from any thread (the signal is queued)."""

    events = Signal(list)  # list[engine.events.Event], in publishing order

    def deliver(self, batch: list[Event]) -> None:
        if batch:
            self.events.emit(list(batch))
