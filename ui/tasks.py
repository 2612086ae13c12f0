"""Coroutines started from Qt slots: kept alive until done, their errors shown through the message bridge."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ui.errors import MessageBridge


class TaskRunner:
    """``spawn(coro, title)`` runs ``coro`` on the window's (qasync) loop; a failure shows ``title`` + reason."""

    def __init__(self, messages: MessageBridge) -> None:
        self._messages = messages
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], title: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, title))
        return task

    def _finished(self, task: asyncio.Task[Any], title: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._messages.error(title, error)

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    async def drain(self) -> None:
        """Wait for every running task (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
