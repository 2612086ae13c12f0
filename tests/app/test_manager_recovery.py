"""The window on an engine that is still reading a large queue back after its start: the Queue pane ends up
listing the whole queue (the first listing was partial; the end of recovery brings the rest)."""

from __future__ import annotations

import time
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
