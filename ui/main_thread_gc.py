"""Python's cyclic garbage collector run on the GUI thread only.

Automatic collection runs in whichever thread happens to allocate: the engine's thread, a worker of
``asyncio.to_thread``, qasync's executor. A Qt object that lives in the GUI thread, freed by a collection in
another thread, is destroyed outside its own thread: its timers cannot be unregistered there and later fire at
freed memory (a segmentation fault in ``QTimerInfoList::activateTimers``). So automatic collection is turned
off and the GUI thread collects instead, generation by generation, as the interpreter would have
(qutebrowser does the same for the same reason).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

CHECK_MS = 1000


def collect_due() -> int:
    """Collect the oldest generation whose count passed its threshold, as automatic collection would;
    returns the generation collected, or -1 when none was due."""
    counts = gc.get_count()
    thresholds = gc.get_threshold()
    for generation in (2, 1, 0):
        if thresholds[generation] and counts[generation] > thresholds[generation]:
            gc.collect(generation)
            return generation
    return -1


class MainThreadGC(QObject):
    """Owns the GUI thread's collection; create it in the GUI thread, once, for the application's life."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = CHECK_MS) -> None:
        super().__init__(parent)
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(collect_due)
        self._timer.start()

    def stop(self) -> None:
        """Back to automatic collection (the application is ending)."""
        self._timer.stop()
        gc.enable()
