"""The GUI thread collects Python's cyclic garbage; no other thread ever does."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

from PySide6.QtCore import QObject
from pytestqt.qtbot import QtBot

from ui.main_thread_gc import MainThreadGC, collect_due


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_automatic_collection_is_off_and_the_gui_thread_collects(qtbot: QtBot) -> None:
    owner = QObject()
    MainThreadGC(owner, interval_ms=10)
    assert not gc.isenabled()
    freed = threading.Event()
    collected_in: list[str] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            collected_in.append(threading.current_thread().name)

    def make_garbage() -> None:  # in a worker thread, as the engine's thread allocates
        marker = _Cycle()
        weakref.finalize(marker, freed.set)
        del marker
        for _ in range(5 * gc.get_threshold()[0]):
            _Cycle()

    gc.callbacks.append(note)
    try:
        worker = threading.Thread(target=make_garbage, name="worker")
        worker.start()
        worker.join()
        assert not freed.is_set()  # the worker allocated past every threshold, and nothing was collected there
        qtbot.waitUntil(freed.is_set, timeout=5000)
    finally:
        gc.callbacks.remove(note)
    assert collected_in and set(collected_in) == {threading.current_thread().name}


def test_collect_due_follows_the_thresholds() -> None:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        assert collect_due() == -1  # nothing allocated since
        for _ in range(gc.get_threshold()[0] + 10):
            _Cycle()
        assert collect_due() == 0
    finally:
        if was_enabled:
            gc.enable()
