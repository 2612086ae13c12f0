"""The window on an engine that is still reading a large queue back after its start: the Queue pane ends up
listing the whole queue (the first listing was partial; the end of recovery brings the rest)."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from queue_support import write_queued
from test_manager import Run, running  # noqa: F401 (the fixture)

from ui.scope import Node

COUNT = 20_000


@pytest.fixture
def queued(tmp_path: Path) -> int:
    """Written before the manager's engine starts (this fixture comes first in the test's arguments)."""
    write_queued(tmp_path / "Mailroot" / "Queue", COUNT, now=time.time())
    return COUNT


def test_the_queue_pane_lists_the_whole_queue_once_it_is_recovered(queued: int, running: Run) -> None:  # noqa: F811
    window = running.window
    window.select_node(Node.QUEUE)
    model = window.queue_model
    running.until(lambda: model.total == queued and not window.queue_feed.loading, 180)
    assert len({item.queue_id for item in model.items()}) == queued


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Nothing in the GC's permanent generation before the manager starts (an earlier test may have frozen)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_gc_is_frozen_once_the_queue_is_whole_not_at_start(unfrozen: None, queued: int,
                                                               running: Run) -> None:  # noqa: F811
    # Freezing at start would leave the queue recovered afterwards (and its rows) to the collector's walks.
    assert gc.get_freeze_count() == 0  # the engine started; its recovery's end has not reached the window yet
    window = running.window
    window.select_node(Node.QUEUE)
    model = window.queue_model
    running.until(lambda: model.total == queued and not window.queue_feed.loading, 180)
    running.until(lambda: gc.get_freeze_count() > queued, 30)  # the rows (and the engine's entries) frozen
