"""End-to-end fixtures: `smtpsvc serve` as a real process, started and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import ServeProcess, free_port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path / "Mailroot", free_port())
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()
