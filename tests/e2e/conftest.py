"""End-to-end fixtures: `smtpsvc serve` as a real process, started and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_support import AdminServe
from serve_support import ServeProcess, free_port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path / "Mailroot", free_port())
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.kill()


@pytest.fixture
def admin_serve(tmp_path: Path) -> Iterator[AdminServe]:
    """`smtpsvc serve` with its admin server up (a certificate, the operators of admin_support)."""
    with AdminServe(tmp_path / "a") as process:
        yield process
