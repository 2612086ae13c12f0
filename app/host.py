"""The embedded engine's host: a VirtualServer on its own thread and asyncio loop, called from the window's loop.

Invariants: every facade call runs on the engine loop (``run_coroutine_threadsafe``) and is awaited on the
caller's loop (``wrap_future``); the engine never runs on the window's qasync loop (design.md, "Process
model"); engine events leave the engine thread in batches, at most every ``EVENT_BATCH_S`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from engine.config import Config
from engine.config_file import save_config
from engine.errors import EngineError
from engine.events import Event
from engine.server import VirtualServer
from engine.sessions import SessionInfo

log = logging.getLogger(__name__)

T = TypeVar("T")
EVENT_BATCH_S = 0.05
EventSink = Callable[[list[Event]], None]


class ConfigNotSavedError(EngineError):
    """The new settings are in effect but the configuration file could not be written."""


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class EngineHost:
    """Owns the engine thread; implements the facade the window uses (``ui.facade.EngineFacade``)."""

    def __init__(self, config: Config, *, config_path: Path | None = None) -> None:
        self._initial = config
        self._config_path = config_path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: VirtualServer | None = None
        self._sinks: list[EventSink] = []
        self._pending: list[Event] = []
        self._flush_scheduled = False

    # -- thread ---------------------------------------------------------------------------------

    def start_thread(self) -> None:
        """Start the engine thread and create the VirtualServer on its loop (the server stays stopped)."""
        if self._thread is not None:
            return
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="smtpsvc-engine", daemon=True)
        self._thread.start()
        ready.result(timeout=30)

    def _run(self, ready: Future[None]) -> None:
        loop = _new_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._server = VirtualServer(self._initial)
            self._server.subscribe(self._collect)
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

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop the engine (committed mail stays committed), stop its loop and join the thread; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            return
        try:
            self.call_blocking(lambda server: server.stop(), timeout)
        except Exception:
            log.exception("stopping the engine failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    # -- calls ----------------------------------------------------------------------------------

    def _submit(self, fn: Callable[[VirtualServer], Awaitable[T]]) -> Future[T]:
        if self._loop is None or self._server is None or not self.running:
            raise EngineError("the engine is not running")
        server = self._server

        async def run() -> T:
            return await fn(server)

        return asyncio.run_coroutine_threadsafe(run(), self._loop)

    async def call(self, fn: Callable[[VirtualServer], Awaitable[T]]) -> T:
        """Run ``fn(server)`` on the engine loop; await its result on the calling loop."""
        return await asyncio.wrap_future(self._submit(fn))

    def call_blocking(self, fn: Callable[[VirtualServer], Awaitable[T]], timeout: float = 60.0) -> T:
        """Like ``call`` for code outside any loop (start-up, shutdown); never call it on the engine thread."""
        return self._submit(fn).result(timeout)

    # -- events ---------------------------------------------------------------------------------

    def add_event_sink(self, sink: EventSink) -> None:
        """``sink(batch)`` is called on the ENGINE thread with the events of the last few milliseconds."""
        self._sinks.append(sink)

    def _collect(self, event: Event) -> None:
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

    # -- the facade (ui.facade.EngineFacade) ------------------------------------------------------

    @property
    def state(self) -> str:
        return self._server.state if self._server is not None else "stopped"

    @property
    def bound_addresses(self) -> list[tuple[str, int]]:
        return self._server.bound_addresses if self._server is not None else []

    @property
    def mailroot(self) -> Path:
        return self._server.mailroot.root if self._server is not None else Path()

    @property
    def config_path(self) -> Path | None:
        return self._config_path

    def config(self) -> Config:
        return self._server.config() if self._server is not None else self._initial

    async def start(self) -> None:
        await self.call(lambda server: server.start())

    async def stop(self) -> None:
        await self.call(lambda server: server.stop())

    async def pause(self) -> None:
        await self.call(lambda server: server.pause())

    async def resume(self) -> None:
        await self.call(lambda server: server.resume())

    async def apply_config(self, config: Config) -> None:
        """Apply a validated configuration, then save it to the configuration file (if there is one)."""
        await self.call(lambda server: server.apply_config(config))
        if self._config_path is None:
            return
        path = self._config_path
        try:
            await asyncio.to_thread(save_config, path, config)
        except OSError as error:
            raise ConfigNotSavedError(f"The new settings are in effect, but they could not be saved to "
                                      f"{path}: {error.strerror or error}") from error

    async def list_sessions(self) -> list[SessionInfo]:
        return await self.call(lambda server: server.list_sessions())

    async def terminate_session(self, session_id: str) -> None:
        await self.call(lambda server: server.terminate_session(session_id))

    async def terminate_all_sessions(self) -> int:
        return await self.call(lambda server: server.terminate_all_sessions())
