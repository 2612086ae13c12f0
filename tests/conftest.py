"""Shared fixtures: a real engine on a loopback port, real clients, temporary Mailroots."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from engine_support import Running, make_config

from engine.conf.config import Config
from engine.server import VirtualServer

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., Config]:
    return lambda **server: make_config(tmp_path, **server)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    running = Running(VirtualServer(make_config(tmp_path)))
    await running.server.start()
    try:
        yield running
    finally:
        await running.server.stop()
