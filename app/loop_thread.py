"""A thread with an asyncio loop of its own, and engine events leaving it in batches: what a transport stands on.

Invariants: coroutines are submitted to the thread's loop (``run_coroutine_threadsafe``) and awaited on the
caller's loop (``wrap_future``); events leave the thread at most every ``EVENT_BATCH_S`` seconds (fewer, larger
batches: each one wakes the window, which then competes with the engine for the GIL).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from engine.errors import EngineError
from engine.events import Event

log = logging.getLogger(__name__)

T = TypeVar("T")
EVENT_BATCH_S = 0.2  # a window redrawn 5 times a second under load is live enough; 20 times costs it (GIL)
EventSink = Callable[[list[Event]], None]


class LoopThread:
    """``start_thread`` runs ``setup()`` on the new loop before it serves; ``stop_thread`` ends it."""

    def __init__(self, name: str, new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop) -> None:
        self._name = name
        self._new_loop = new_loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sinks: list[EventSink] = []
        self._pending: list[Event] = []
        self._flush_scheduled = False

    def setup(self) -> None:
        """Called on the new thread, with its loop set, before ``start_thread`` returns (its error is raised)."""

    def start_thread(self) -> None:
        if self._thread is not None:
            return
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self._name, daemon=True)
        self._thread.start()
        ready.result(timeout=30)

    def _run(self, ready: Future[None]) -> None:
        loop = self._new_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self.setup()
        except BaseException as error:
            ready.set_exception(error)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        if self._loop is None or not self.running:
            coroutine.close()
            raise EngineError(f"{self._name} is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on this thread's loop; await its result on the calling loop."""
        return await asyncio.wrap_future(self.submit(coroutine))

    def stop_thread(self, last: Coroutine[Any, Any, None] | None, timeout: float) -> None:
        """Run ``last`` on the loop (its failure is logged), stop the loop and join the thread; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            if last is not None:
                last.close()
            return
        if last is not None:
            try:
                self.submit(last).result(timeout)
            except Exception:
                log.exception("%s: stopping failed", self._name)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    # -- events ---------------------------------------------------------------------------------

    def add_event_sink(self, sink: EventSink) -> None:
        """``sink(batch)`` is called on THIS thread with the events of the last few milliseconds."""
        self._sinks.append(sink)

    def remove_event_sink(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def collect(self, event: Event) -> None:
        """Queue ``event`` for the next batch (call it on this thread)."""
        self._pending.append(event)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_later(EVENT_BATCH_S, self._flush)

    def _flush(self) -> None:
        batch, self._pending, self._flush_scheduled = self._pending, [], False
        for sink in tuple(self._sinks):
            try:
                sink(batch)
            except Exception:
                log.exception("event sink failed")
