"""A remote computer's engine for the window: the facade (ui.facade.EngineFacade) over an admin server's op table.

Like app/host.py's EngineHost, the network runs on a thread and loop of its own: every call is submitted there
and awaited on the window's loop; engine events arrive over the server-sent event stream and leave that
thread in batches. When the link drops, the host says so (``link``), retries with a growing pause, and on
reconnecting reads the state and the configuration again and tells the window the state it found.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal, TypeVar

from engine.admin import mailroot_items
from engine.admin.event_ids import EventEntry, Level
from engine.admin.http_client import AdminClient
from engine.admin.mailroot_items import DropItem, PickupPreview
from engine.admin.perf import History
from engine.admin.tracking import Query, Step, Track
from engine.bounce.badmail import BadmailItem
from engine.conf.config import Config
from engine.conf.config_file import config_from_dict, config_to_dict
from engine.conf.hostport import split_hostport
from engine.errors import EngineError, NotFoundError
from engine.events import Event, StateChanged
from engine.qmgr.queue import QueueDetail, QueueItem, QueuePage, RecipientDetail
from engine.smtpd import security
from engine.smtpd.sessions import SessionInfo

log = logging.getLogger(__name__)

T = TypeVar("T")
D = TypeVar("D")
EVENT_BATCH_S = 0.2
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # pauses between reconnection attempts
Link = Literal["connecting", "connected", "disconnected"]
EventSink = Callable[[list[Event]], None]


def _event_types() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    pending: list[type[Event]] = [Event]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending += cls.__subclasses__()
    return found


_ = security  # its events (AuthFailed...) must be known to _event_types


def event_from_json(data: dict[str, Any]) -> Event | None:
    """The engine event a server-sent event stands for; None for a type or fields this side does not know."""
    cls = _event_types().get(str(data.get("type")))
    if cls is None:
        return None
    try:
        return cls(**{f.name: _plain(data[f.name]) for f in dataclasses.fields(cls) if f.name in data})
    except TypeError:
        return None


def _plain(value: Any) -> Any:
    return tuple(_plain(v) for v in value) if isinstance(value, list) else value


def make(cls: type[D], data: dict[str, Any]) -> D:
    """A facade dataclass from its JSON (lists back to tuples, unknown keys ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: _plain(v) for k, v in data.items() if k in names})


def _detail(data: dict[str, Any]) -> QueueDetail:
    return QueueDetail(item=make(QueueItem, data["item"]),
                       recipients=tuple(make(RecipientDetail, r) for r in data["recipients"]),
                       transcript=data["transcript"], last_attempt=data["last_attempt"],
                       delay_notice_sent=data["delay_notice_sent"])


class RemoteHost:
    """One remote computer; ``open`` connects (raising the trust or login error), ``shutdown`` disconnects."""

    def __init__(self, client: AdminClient) -> None:
        self.client = client
        self.url = client.target.base
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sinks: list[EventSink] = []
        self._pending: list[Event] = []
        self._flush_scheduled = False
        self._follower: asyncio.Task[None] | None = None
        self._state = "stopped"
        self._bound: list[tuple[str, int]] = []
        self._mailroot = Path()
        self._config = Config()
        self.link: Link = "connecting"
        self.link_changed: Callable[[Link], None] = lambda link: None  # called on the network thread

    # -- thread and connection ----------------------------------------------------------------------------

    def start_thread(self) -> None:
        if self._thread is not None:
            return
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=f"smtpsvc-remote-{self.url}",
                                        daemon=True)
        self._thread.start()
        ready.result(timeout=30)

    def _run(self, ready: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        if self._loop is None:
            coroutine.close()
            raise EngineError(f"not connected to {self.url}")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def open(self) -> None:
        """Connect and read the state and configuration (call from the window's loop)."""
        self.start_thread()
        await asyncio.wrap_future(self._submit(self._open()))

    async def _open(self) -> None:
        await self.client.__aenter__()
        await self._refresh()
        self._set_link("connected")
        self._follower = asyncio.ensure_future(self._follow())

    def shutdown(self, timeout: float = 30.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            return

        async def close() -> None:
            if self._follower is not None:
                self._follower.cancel()
                await asyncio.gather(self._follower, return_exceptions=True)
            await self.client.__aexit__(None, None, None)

        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout)
        except Exception:
            log.exception("closing the connection to %s failed", self.url)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def _set_link(self, link: Link) -> None:
        if link != self.link:
            self.link = link
            self.link_changed(link)

    async def _refresh(self) -> None:
        state = await self.client.call("state")
        self._state = str(state["state"])
        self._mailroot = Path(str(state["mailroot"]))
        self._bound = [split_hostport(address) for address in state["listening"]]
        self._config = config_from_dict(await self.client.call("config.get"))

    async def _follow(self) -> None:
        """Engine events, for as long as the window is open; a dropped link is retried."""
        failures = 0
        while True:
            try:
                async for data in self.client.events():
                    failures = 0
                    event = event_from_json(data)
                    if event is None:
                        continue
                    if isinstance(event, StateChanged):
                        self._state = event.state
                    if type(event).__name__ == "ConfigChanged":
                        self._config = config_from_dict(await self.client.call("config.get"))
                    self._collect(event)
                raise EngineError("the event stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the link dropped, or the server restarted: say so, then retry
                log.info("connection to %s lost: %s", self.url, error)
                self._set_link("disconnected")
                await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1
                try:
                    await self._refresh()
                except Exception as again:
                    log.info("reconnecting to %s failed: %s", self.url, again)
                    continue
                self._set_link("connected")
                self._collect(StateChanged(self._state, self._state))

    # -- events ---------------------------------------------------------------------------------------

    def add_event_sink(self, sink: EventSink) -> None:
        """``sink(batch)`` is called on the network thread with the events of the last few milliseconds."""
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

    # -- the facade -------------------------------------------------------------------------------------

    async def _call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        return await asyncio.wrap_future(self._submit(self.client.call(op, args or {})))

    @property
    def state(self) -> str:
        return self._state

    @property
    def bound_addresses(self) -> list[tuple[str, int]]:
        return list(self._bound)

    @property
    def mailroot(self) -> Path:
        return self._mailroot  # a path on the other computer

    def config(self) -> Config:
        return self._config

    async def start(self) -> None:
        await self._call("server.start")

    async def stop(self) -> None:
        await self._call("server.stop")

    async def pause(self) -> None:
        await self._call("server.pause")

    async def resume(self) -> None:
        await self._call("server.continue")

    async def apply_config(self, config: Config) -> None:
        await self._call("config.apply", {"config": config_to_dict(config)})
        self._config = config

    async def list_sessions(self) -> list[SessionInfo]:
        return [make(SessionInfo, s) for s in await self._call("sessions.list")]

    async def list_users(self) -> list[str]:
        return [str(name) for name in await self._call("users.list")]

    async def add_user(self, name: str, password: str) -> None:
        await self._call("users.add", {"name": name, "password": password})

    async def set_user_password(self, name: str, password: str) -> None:
        await self._call("users.passwd", {"name": name, "password": password})

    async def delete_user(self, name: str) -> None:
        await self._call("users.delete", {"name": name})

    async def list_operators(self) -> list[tuple[str, str]]:
        return [(o["name"], o["role"]) for o in await self._call("operators.list")]

    async def add_operator(self, name: str, password: str, role: str = "admin") -> None:
        await self._call("operators.add", {"name": name, "password": password, "role": role})

    async def set_operator_password(self, name: str, password: str) -> None:
        await self._call("operators.passwd", {"name": name, "password": password})

    async def delete_operator(self, name: str) -> None:
        await self._call("operators.delete", {"name": name})

    async def terminate_session(self, session_id: str) -> None:
        await self._call("sessions.terminate", {"id": session_id})

    async def terminate_all_sessions(self) -> int:
        return int((await self._call("sessions.terminate_all"))["count"])

    async def list_queue(self, offset: int = 0, limit: int = 100, sort: str = "age",
                         descending: bool = False) -> QueuePage:
        page = await self._call("queue.list", {"offset": offset, "limit": limit, "sort": sort,
                                               "descending": descending})
        return QueuePage(tuple(make(QueueItem, i) for i in page["items"]), page["total"],
                         bool(page.get("recovering", False)))

    async def queue_items(self, queue_ids: Sequence[str]) -> list[QueueItem]:
        found = []
        for queue_id in queue_ids:
            try:
                found.append((await self.queue_detail(queue_id)).item)
            except NotFoundError:
                continue
        return found

    async def queue_subjects(self, queue_ids: Sequence[str]) -> dict[str, str]:
        return dict(await self._call("queue.subjects", {"ids": list(queue_ids)}))

    async def queue_detail(self, queue_id: str) -> QueueDetail:
        return _detail(await self._call("queue.show", {"id": queue_id}))

    async def retry_now(self, queue_ids: Sequence[str] | None = None, domain: str | None = None) -> int:
        ids = list(queue_ids) if queue_ids is not None else None
        return int((await self._call("queue.flush", {"ids": ids, "domain": domain}))["count"])

    async def release_etrn(self, domain: str) -> int:
        return await self.retry_now(domain=domain)

    async def freeze(self, queue_id: str) -> None:
        await self._call("queue.freeze", {"id": queue_id})

    async def thaw(self, queue_id: str) -> None:
        await self._call("queue.thaw", {"id": queue_id})

    async def delete_message(self, queue_id: str) -> None:
        await self._call("queue.delete", {"id": queue_id})

    async def bounce_now(self, queue_id: str) -> None:
        await self._call("queue.bounce", {"id": queue_id})

    async def read_queued(self, queue_id: str) -> bytes:
        return base64.b64decode((await self._call("queue.read", {"id": queue_id, "raw": True}))["data"])

    async def list_badmail(self) -> list[BadmailItem]:
        return [make(BadmailItem, i) for i in await self._call("badmail.list")]

    async def badmail_items(self, names: Sequence[str]) -> list[BadmailItem]:
        wanted = set(names)
        return [item for item in await self.list_badmail() if item.name in wanted]

    async def read_badmail(self, name: str) -> bytes:
        return base64.b64decode((await self._call("badmail.read", {"name": name, "raw": True}))["data"])

    async def resend_badmail(self, name: str) -> str:
        return str((await self._call("badmail.resend", {"name": name}))["pickup"])

    async def delete_badmail(self, name: str) -> None:
        await self._call("badmail.delete", {"name": name})

    async def list_drop(self) -> list[DropItem]:
        return [make(DropItem, i) for i in await self._call("drop.list")]

    async def drop_items(self, names: Sequence[str]) -> list[DropItem]:
        wanted = set(names)
        return [item for item in await self.list_drop() if item.name in wanted]

    async def read_drop(self, name: str) -> bytes:
        return base64.b64decode((await self._call("drop.read", {"name": name, "raw": True}))["data"])

    async def delete_drop(self, name: str) -> None:
        await self._call("drop.delete", {"name": name})

    async def preview_pickup(self, data: bytes) -> PickupPreview:
        return mailroot_items.preview_pickup(data, self._config.default_domain.name)  # pure: read here

    async def submit_to_pickup(self, data: bytes, name_hint: str = "") -> str:
        """Through the Posting Acceptor (the file is committed at once); the answer is its queue id."""
        name = name_hint if name_hint.lower().endswith((".eml", ".txt")) else f"{name_hint or 'message'}.eml"
        results = await asyncio.wrap_future(self._submit(self.client.post_messages([(name, data)])))
        result = results[0]
        if not result.get("accepted"):
            raise EngineError(f"{name}: {result.get('reason')}")
        return str(result["queue_id"])

    async def list_events(self, since: float | None = None, level: Level = "Information",
                          limit: int = 1000) -> list[EventEntry]:
        entries = await self._call("events.list", {"since": int(since) if since is not None else None,
                                                   "level": level, "limit": limit})
        return [EventEntry.from_json(e) for e in entries if since is None or e["at"] >= since]

    async def counter_history(self, seconds: float | None = None) -> History:
        history = await self._call("counters.history", {"seconds": int(seconds) if seconds is not None else None})
        return History(tuple(history["names"]), tuple((s[0], tuple(s[1:])) for s in history["samples"]))

    async def track_messages(self, query: Query) -> list[Track]:
        found = await self._call("track", {"sender": query.sender or None, "recipient": query.recipient or None,
                                           "message_id": query.message_id or None,
                                           "queue_id": query.queue_id or None, "subject": query.subject or None,
                                           "since": int(query.since) if query.since is not None else None,
                                           "limit": query.limit})
        return [Track(t["queue_id"], t["received"], t["sender"], tuple(t["recipients"]), t["message_id"],
                      t["subject"], t["size"], t["source"], tuple(Step(**step) for step in t["steps"]))
                for t in found]
