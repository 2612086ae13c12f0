"""The embedded engine's host: a VirtualServer on its own thread and asyncio loop, called from the window's loop.

Invariants: every facade call runs on the engine loop (``run_coroutine_threadsafe``) and is awaited on the
caller's loop (``wrap_future``); the engine never runs on the window's qasync loop (design.md, "Process
model"); engine events leave the engine thread in batches, at most every ``EVENT_BATCH_S`` seconds (fewer, larger
batches: each one wakes the window, which then competes with the engine for the GIL).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from app.cert_cmd import CERT_NAME, KEY_NAME
from engine.admin import mailroot_items
from engine.admin.event_ids import EventEntry, Level
from engine.admin.mailroot_items import DropItem, PickupFile, PickupPreview
from engine.admin.perf import History
from engine.admin.tracking import Query, Track
from engine.bounce.badmail import BadmailItem
from engine.conf.config import Config
from engine.conf.config_file import save_config
from engine.errors import EngineError, NotFoundError
from engine.events import Event
from engine.qmgr.queue import QueueDetail, QueueItem, QueuePage
from engine.server import VirtualServer
from engine.smtpd.pkcs12_import import import_pkcs12
from engine.smtpd.sessions import SessionInfo
from engine.smtpd.tls import PairReport, create_self_signed, free_pair, inspect_pair

log = logging.getLogger(__name__)

T = TypeVar("T")
EVENT_BATCH_S = 0.2  # a window redrawn 5 times a second under load is live enough; 20 times costs it (GIL)
EventSink = Callable[[list[Event]], None]


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
            path = self._config_path
            saver = None if path is None else functools.partial(save_config, path)
            # The engine saves what it applied (engine.errors.ConfigNotSavedError when it cannot).
            self._server = VirtualServer(self._initial, config_path=path, save_config=saver)
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
        """Apply a validated configuration; the engine then saves it to the configuration file (if there is one)."""
        await self.call(lambda server: server.apply_config(config))

    async def list_sessions(self) -> list[SessionInfo]:
        return await self.call(lambda server: server.list_sessions())

    async def inspect_certificate(self, certificate: str, key: str) -> PairReport:
        return await asyncio.to_thread(inspect_pair, certificate, key)

    async def create_certificate(self, fqdn: str, names: tuple[str, ...], days: int) -> tuple[str, str]:
        """A self-signed certificate and key (as `smtpsvc cert new`) beside the configuration file, under names
        that replace nothing; returns their paths, for the Certificate page to use."""
        directory = (self._config_path.expanduser().parent if self._config_path is not None
                     else self.mailroot).resolve()

        def make() -> tuple[str, str]:
            directory.mkdir(parents=True, exist_ok=True)
            cert, key = free_pair(directory, CERT_NAME, KEY_NAME)
            create_self_signed(fqdn, cert, key, days=days, extra_names=names)
            return str(cert), str(key)

        return await asyncio.to_thread(make)

    async def import_certificate(self, pkcs12: str, password: str) -> tuple[str, str]:
        """A PKCS#12 (.pfx, .p12) file's certificate (with its chain) and key as PEM files beside the configuration
        file, under names that replace nothing; returns their paths, for the Certificate page to use."""
        directory = (self._config_path.expanduser().parent if self._config_path is not None
                     else self.mailroot).resolve()

        def convert() -> tuple[str, str]:
            directory.mkdir(parents=True, exist_ok=True)
            cert, key = free_pair(directory, CERT_NAME, KEY_NAME)
            import_pkcs12(Path(pkcs12), password, cert, key)
            return str(cert), str(key)

        return await asyncio.to_thread(convert)

    async def list_pickup(self) -> list[PickupFile]:
        return await self.call(lambda server: server.list_pickup())

    async def session_transcript(self, session_id: str) -> list[str]:
        return await self.call(lambda server: server.session_transcript(session_id))

    async def list_operators(self) -> list[tuple[str, str]]:
        return await self.call(lambda server: server.list_operators())

    async def add_operator(self, name: str, password: str, role: str = "admin") -> None:
        await self.call(lambda server: server.add_operator(name, password, role))

    async def set_operator_password(self, name: str, password: str) -> None:
        await self.call(lambda server: server.set_operator_password(name, password))

    async def delete_operator(self, name: str) -> None:
        await self.call(lambda server: server.delete_operator(name))

    async def list_users(self) -> list[str]:
        return await self.call(lambda server: server.list_users())

    async def add_user(self, name: str, password: str) -> None:
        await self.call(lambda server: server.add_user(name, password))

    async def set_user_password(self, name: str, password: str) -> None:
        await self.call(lambda server: server.set_user_password(name, password))

    async def delete_user(self, name: str) -> None:
        await self.call(lambda server: server.delete_user(name))

    async def terminate_session(self, session_id: str) -> None:
        await self.call(lambda server: server.terminate_session(session_id))

    async def terminate_all_sessions(self) -> int:
        return await self.call(lambda server: server.terminate_all_sessions())

    # -- queue ----------------------------------------------------------------------------------

    async def list_queue(self, offset: int = 0, limit: int = 100, sort: str = "age",
                         descending: bool = False) -> QueuePage:
        return await self.call(lambda server: server.list_queue(offset, limit, sort, descending))

    async def queue_items(self, queue_ids: Sequence[str]) -> list[QueueItem]:
        """The current snapshot of these messages (those no longer queued are left out), in one engine call.

        Composed from ``queue_detail`` until the engine offers it (it also reads each transcript)."""
        ids = list(queue_ids)

        async def run(server: VirtualServer) -> list[QueueItem]:
            found = []
            for queue_id in ids:
                try:
                    found.append((await server.queue_detail(queue_id)).item)
                except NotFoundError:
                    continue
            return found

        return await self.call(run)

    async def queue_subjects(self, queue_ids: Sequence[str]) -> dict[str, str]:
        """The Subject of these queued messages (those no longer queued are left out).

        Composed until the engine offers it: a Queue file is envelope lines then the message, as a Drop file,
        so engine.admin.mailroot_items reads its head (64 KB at most) off the engine loop."""
        ids = list(queue_ids)

        def read(folder: Path) -> dict[str, str]:
            subjects = {}
            for queue_id in ids:
                if not queue_id or "/" in queue_id or "\\" in queue_id or queue_id.startswith("."):
                    continue
                try:
                    subjects[queue_id] = mailroot_items.read_drop_item(folder / f"{queue_id}.eml").subject
                except OSError:
                    continue  # delivered or deleted meanwhile
            return subjects

        return await self.call(lambda server: asyncio.to_thread(read, server.mailroot.queue))

    async def queue_detail(self, queue_id: str) -> QueueDetail:
        return await self.call(lambda server: server.queue_detail(queue_id))

    async def retry_now(self, queue_ids: Sequence[str] | None = None, domain: str | None = None) -> int:
        ids = list(queue_ids) if queue_ids is not None else None
        return await self.call(lambda server: server.retry_now(ids, domain))

    async def release_etrn(self, domain: str) -> int:
        return await self.call(lambda server: server.release_etrn(domain))

    async def freeze(self, queue_id: str) -> None:
        await self.call(lambda server: server.freeze(queue_id))

    async def thaw(self, queue_id: str) -> None:
        await self.call(lambda server: server.thaw(queue_id))

    async def delete_message(self, queue_id: str) -> None:
        await self.call(lambda server: server.delete_message(queue_id))

    async def bounce_now(self, queue_id: str) -> None:
        await self.call(lambda server: server.bounce_now(queue_id))

    async def read_queued(self, queue_id: str) -> bytes:
        return await self.call(lambda server: server.read_queued(queue_id))

    # -- Badmail, Drop, Pickup --------------------------------------------------------------------

    async def list_badmail(self) -> list[BadmailItem]:
        return await self.call(lambda server: server.list_badmail())

    async def badmail_items(self, names: Sequence[str]) -> list[BadmailItem]:
        """These Badmail items (those gone are left out), in one call; composed from engine.admin.mailroot_items
        until the engine offers it."""
        wanted = list(names)

        def read(folder: Path) -> list[BadmailItem]:
            found = []
            for name in wanted:
                try:
                    found.append(mailroot_items.badmail_item(folder, name))
                except (NotFoundError, OSError):
                    continue
            return found

        return await self.call(lambda server: asyncio.to_thread(read, server.mailroot.badmail))

    async def read_badmail(self, name: str) -> bytes:
        return await self.call(lambda server: server.read_badmail(name))

    async def resend_badmail(self, name: str) -> str:
        return await self.call(lambda server: server.resend_badmail(name))

    async def delete_badmail(self, name: str) -> None:
        await self.call(lambda server: server.delete_badmail(name))

    async def list_drop(self) -> list[DropItem]:
        return await self.call(lambda server: server.list_drop())

    async def drop_items(self, names: Sequence[str]) -> list[DropItem]:
        """These Drop items (``DropItem.ref``; those gone are left out), in one call."""
        refs = list(names)
        return await self.call(lambda server: server.drop_items(refs))

    async def read_drop(self, name: str) -> bytes:
        return await self.call(lambda server: server.read_drop(name))

    async def delete_drop(self, name: str) -> None:
        await self.call(lambda server: server.delete_drop(name))

    async def preview_pickup(self, data: bytes) -> PickupPreview:
        return await self.call(lambda server: server.preview_pickup(data))

    async def submit_to_pickup(self, data: bytes, name_hint: str = "") -> str:
        return await self.call(lambda server: server.submit_to_pickup(data, name_hint))

    # -- monitoring -----------------------------------------------------------------------------

    async def list_events(self, since: float | None = None, level: Level = "Information",
                          limit: int = 1000) -> list[EventEntry]:
        return await self.call(lambda server: server.list_events(since, level, limit))

    async def counter_history(self, seconds: float | None = None) -> History:
        async def read(server: VirtualServer) -> History:
            return server.counter_history(seconds)

        return await self.call(read)

    async def track_messages(self, query: Query) -> list[Track]:
        return await self.call(lambda server: server.track_messages(query))
