"""A remote computer's engine for the window: the transport that runs facade calls over its admin server.

The network runs on a thread and loop of its own (app/loop_thread.py): each call is looked up in ``ROUTES``
(the VirtualServer method → the admin server's op, its arguments and how its JSON answer becomes the
facade's type) and awaited on the window's loop; engine events arrive over the server-sent event stream and
leave that thread in batches. When the link drops, the host says so (``link``), retries with a growing pause,
and on reconnecting reads the state and the configuration again and tells the window the state it found.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast

from app.engine_proxy import EngineProxy, counter_history
from app.loop_thread import LoopThread
from engine.admin import mailroot_items
from engine.admin.event_ids import EventEntry
from engine.admin.http_auth import AuthError
from engine.admin.http_client import AdminClient, CertificateChanged, TrustError
from engine.admin.perf import History
from engine.admin.pickup_history import PickupRecord
from engine.admin.tracking import Query, Step, Track
from engine.bounce.badmail import BadmailItem
from engine.conf.config import Config
from engine.conf.config_file import config_from_dict, config_to_dict
from engine.conf.hostport import split_hostport
from engine.errors import EngineError, NotFoundError
from engine.events import Event, StateChanged
from engine.log.tail import LogLines, LogTail
from engine.qmgr.queue import QueueDetail, QueueItem, QueuePage, RecipientDetail
from engine.server import VirtualServer
from engine.smtp.dns_check import DnsReport
from engine.smtpd import security
from engine.smtpd.sessions import SessionInfo

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
D = TypeVar("D")
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # pauses between reconnection attempts
Link = Literal["connecting", "connected", "disconnected", "untrusted"]
Args = dict[str, Any]


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


def _whole(value: float | None) -> int | None:
    return int(value) if value is not None else None


def _raw(data: dict[str, Any]) -> bytes:
    return base64.b64decode(data["data"])


def _track(t: dict[str, Any]) -> Track:
    return Track(t["queue_id"], t["received"], t["sender"], tuple(t["recipients"]), t["message_id"], t["subject"],
                 t["size"], t["source"], tuple(Step(**step) for step in t["steps"]))


def _query(query: Query) -> Args:
    return {"sender": query.sender or None, "recipient": query.recipient or None,
            "message_id": query.message_id or None, "queue_id": query.queue_id or None,
            "subject": query.subject or None, "since": _whole(query.since), "limit": query.limit}


@dataclasses.dataclass(frozen=True)
class Route:
    """One facade call as an op: ``args`` makes the op's arguments from the call's (by parameter name),
    ``answer`` the facade's value from the op's result."""

    op: str
    args: Callable[[Args], Args] = lambda a: {}
    answer: Callable[[Any], Any] = lambda result: None


Composed = Callable[["RemoteHost", Args], Coroutine[Any, Any, Any]]  # a call the admin server has no single op for


def _one(key: str, parameter: str) -> Callable[[Args], Args]:
    return lambda a: {key: a[parameter]}


def _same(*names: str) -> Callable[[Args], Args]:
    return lambda a: {name: list(a[name]) if isinstance(a[name], tuple | list) else a[name] for name in names}


async def _queue_items(host: RemoteHost, a: Args) -> list[QueueItem]:
    found = []
    for queue_id in a["queue_ids"]:
        try:
            found.append(_detail(await host.client.call("queue.show", {"id": queue_id})).item)
        except NotFoundError:
            continue
    return found


async def _badmail_items(host: RemoteHost, a: Args) -> list[BadmailItem]:
    wanted = set(a["names"])
    return [item for item in map(lambda i: make(BadmailItem, i), await host.client.call("badmail.list"))
            if item.name in wanted]


async def _drop_items(host: RemoteHost, a: Args) -> list[mailroot_items.DropItem]:
    wanted = set(a["refs"])
    return [item for item in map(lambda i: make(mailroot_items.DropItem, i), await host.client.call("drop.list"))
            if item.ref in wanted]


async def _apply_config(host: RemoteHost, a: Args) -> None:
    await host.client.call("config.apply", {"config": config_to_dict(a["config"])})
    host.snapshot_config(a["config"])


async def _preview_pickup(host: RemoteHost, a: Args) -> mailroot_items.PickupPreview:
    return mailroot_items.preview_pickup(a["data"], host.config().default_domain.name)  # pure: read here


async def _submit_to_pickup(host: RemoteHost, a: Args) -> str:
    """Through the Posting Acceptor (the file is committed at once); the answer is its queue id."""
    hint = a["name_hint"]
    name = hint if hint.lower().endswith((".eml", ".txt")) else f"{hint or 'message'}.eml"
    result = (await host.client.post_messages([(name, a["data"])]))[0]
    if not result.get("accepted"):
        raise EngineError(f"{name}: {result.get('reason')}")
    return str(result["queue_id"])


def _events(entries: list[dict[str, Any]]) -> list[EventEntry]:
    return [EventEntry.from_json(e) for e in entries]


def _log_tail(r: dict[str, Any]) -> LogTail:
    entries = tuple({str(k): str(v) for k, v in entry.items()} for entry in r["entries"])
    return LogTail(str(r["path"]), bool(r["enabled"]), r["fmt"], entries, int(r["unreadable"]))


def _count(result: dict[str, Any]) -> int:
    return int(result["count"])


ROUTES: dict[Callable[..., Any], Route | Composed] = {
    VirtualServer.start: Route("server.start"),
    VirtualServer.stop: Route("server.stop"),
    VirtualServer.pause: Route("server.pause"),
    VirtualServer.resume: Route("server.continue"),
    VirtualServer.apply_config: _apply_config,
    VirtualServer.list_sessions: Route("sessions.list", answer=lambda r: [make(SessionInfo, s) for s in r]),
    VirtualServer.terminate_session: Route("sessions.terminate", _one("id", "session_id")),
    VirtualServer.terminate_all_sessions: Route("sessions.terminate_all", answer=_count),
    VirtualServer.session_transcript: Route("sessions.transcript", _one("id", "session_id"),
                                            lambda r: [str(line) for line in r]),
    VirtualServer.list_users: Route("users.list", answer=lambda r: [str(name) for name in r]),
    VirtualServer.add_user: Route("users.add", _same("name", "password")),
    VirtualServer.set_user_password: Route("users.passwd", _same("name", "password")),
    VirtualServer.delete_user: Route("users.delete", _same("name")),
    VirtualServer.list_operators: Route("operators.list", answer=lambda r: [(o["name"], o["role"]) for o in r]),
    VirtualServer.add_operator: Route("operators.add", _same("name", "password", "role")),
    VirtualServer.set_operator_password: Route("operators.passwd", _same("name", "password")),
    VirtualServer.delete_operator: Route("operators.delete", _same("name")),
    VirtualServer.set_operator_role: Route("operators.role", _same("name", "role")),
    VirtualServer.list_queue: Route("queue.list", _same("offset", "limit", "sort", "descending"), lambda r: QueuePage(
        tuple(make(QueueItem, i) for i in r["items"]), r["total"], bool(r.get("recovering", False)))),
    VirtualServer.queue_page: Route("queue.page", _same("after", "limit"), lambda r: QueuePage(
        tuple(make(QueueItem, i) for i in r["items"]), r["total"], bool(r.get("recovering", False)))),
    VirtualServer.queue_items: _queue_items,
    VirtualServer.queue_subjects: Route("queue.subjects", lambda a: {"ids": list(a["queue_ids"])}, dict),
    VirtualServer.queue_detail: Route("queue.show", _one("id", "queue_id"), _detail),
    VirtualServer.retry_now: Route("queue.flush", lambda a: {"ids": None if a["queue_ids"] is None
                                                             else list(a["queue_ids"]), "domain": a["domain"]},
                                   answer=_count),
    VirtualServer.release_etrn: Route("queue.flush", lambda a: {"domain": a["domain"]}, answer=_count),
    VirtualServer.freeze: Route("queue.freeze", _one("id", "queue_id")),
    VirtualServer.thaw: Route("queue.thaw", _one("id", "queue_id")),
    VirtualServer.delete_message: Route("queue.delete", _one("id", "queue_id")),
    VirtualServer.bounce_now: Route("queue.bounce", _one("id", "queue_id")),
    VirtualServer.read_queued: Route("queue.read", lambda a: {"id": a["queue_id"], "raw": True, "limit": a["limit"]},
                                     _raw),
    VirtualServer.list_badmail: Route("badmail.list", answer=lambda r: [make(BadmailItem, i) for i in r]),
    VirtualServer.badmail_items: _badmail_items,
    VirtualServer.read_badmail: Route("badmail.read", lambda a: {"name": a["name"], "raw": True}, _raw),
    VirtualServer.resend_badmail: Route("badmail.resend", _same("name"), lambda r: str(r["pickup"])),
    VirtualServer.delete_badmail: Route("badmail.delete", _same("name")),
    VirtualServer.list_drop: Route("drop.list", answer=lambda r: [make(mailroot_items.DropItem, i) for i in r]),
    VirtualServer.drop_items: _drop_items,
    VirtualServer.read_drop: Route("drop.read", lambda a: {"name": a["ref"], "raw": True}, _raw),
    VirtualServer.delete_drop: Route("drop.delete", _one("name", "ref")),
    VirtualServer.resend_drop: Route("drop.resend", _one("name", "ref"), lambda r: str(r["pickup"])),
    VirtualServer.preview_pickup: _preview_pickup,
    VirtualServer.submit_to_pickup: _submit_to_pickup,
    VirtualServer.list_pickup: Route("pickup.list", answer=lambda r: [make(mailroot_items.PickupFile, f) for f in r]),
    VirtualServer.list_events: Route("events.list", lambda a: {"since": _whole(a["since"]), "level": a["level"],
                                                               "limit": a["limit"]}, _events),
    counter_history: Route("counters.history", lambda a: {"seconds": _whole(a["seconds"])}, lambda r: History(
        tuple(r["names"]), tuple((s[0], tuple(s[1:])) for s in r["samples"]))),
    VirtualServer.track_messages: Route("track", lambda a: _query(a["query"]), lambda r: [_track(t) for t in r]),
    VirtualServer.pickup_history: Route("pickup.history", _same("limit"),
                                        lambda r: [make(PickupRecord, record) for record in r]),
    VirtualServer.check_dns: Route("dns.check", lambda a: {"name": a["name"], "servers": None if a["dns_servers"]
                                                           is None else list(a["dns_servers"])},
                                   lambda r: make(DnsReport, r)),
    VirtualServer.protocol_log_tail: Route("log.tail", _same("limit"), _log_tail),
    VirtualServer.protocol_log_lines: Route("log.lines", _same("lines", "offset"), lambda r: make(LogLines, r)),
}


class RemoteHost(LoopThread):
    """One remote computer; ``open`` connects (raising the trust or login error), ``shutdown`` disconnects."""

    def __init__(self, client: AdminClient) -> None:
        super().__init__(f"smtpsvc-remote-{client.target.base}")
        self.client = client
        self.url = client.target.base
        self._follower: asyncio.Task[None] | None = None
        self._state = "stopped"
        self._bound: list[tuple[str, int]] = []
        self._mailroot = Path()
        self._config = Config()
        self._session_open = False
        self.link: Link = "connecting"
        self.reason = ""  # why the link is down
        self.changed: CertificateChanged | None = None  # link "untrusted" because the certificate changed
        self.link_changed: Callable[[Link], None] = lambda link: None  # called on the network thread

    # -- connection -------------------------------------------------------------------------------------

    async def open(self, *, retry: bool = False) -> None:
        """Connect and read the state and configuration (call from the window's loop). ``retry``: a computer
        that cannot be reached now is retried in the background instead, one whose pinned certificate changed is
        left "untrusted" (another untrusted certificate or a refused login is still raised)."""
        self.start_thread()
        await self.on_loop(self._open(retry))

    async def _open(self, retry: bool) -> None:
        try:
            await self._connect()
        except CertificateChanged as error:
            if not retry:
                raise
            self.changed = error  # a remembered computer whose certificate changed meanwhile: shown refused,
            self._down(error, "untrusted")  # for Trust New Certificate… (retrying cannot help)
            return
        except (TrustError, AuthError):
            raise
        except EngineError as error:
            if not retry:
                raise
            self._down(error)
        else:
            self._set_link("connected")
        self._follower = asyncio.ensure_future(self._follow())

    async def _session(self) -> None:
        if not self._session_open:
            await self.client.__aenter__()
            self._session_open = True

    async def _connect(self) -> None:
        await self._session()
        await self._refresh()

    def shutdown(self, timeout: float = 30.0) -> None:
        async def close() -> None:
            if self._follower is not None:
                self._follower.cancel()
                await asyncio.gather(self._follower, return_exceptions=True)
            if self._session_open:
                await self.client.__aexit__(None, None, None)

        self.stop_thread(close(), timeout)

    def _set_link(self, link: Link) -> None:
        if link != self.link:
            self.link = link
            self.link_changed(link)

    def _down(self, error: Exception, link: Link = "disconnected") -> None:
        log.info("connection to %s lost: %s", self.url, error)
        self.reason = str(error)
        self._set_link(link)

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
                if self.link != "connected":
                    await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                    failures += 1
                    await self._session()
                async for data in self.client.events(on_open=self._opened):
                    failures = 0
                    event = event_from_json(data)
                    if event is None:
                        continue
                    if isinstance(event, StateChanged):
                        self._state = event.state
                    if type(event).__name__ == "ConfigChanged":
                        self._config = config_from_dict(await self.client.call("config.get"))
                    self.collect(event)
                raise EngineError("the event stream ended")
            except asyncio.CancelledError:
                raise
            except TrustError as error:  # its certificate changed: retrying cannot help (the trust is fixed)
                self.changed = error if isinstance(error, CertificateChanged) else None
                self._down(error, "untrusted")
                return
            except Exception as error:  # the link dropped, or the server restarted: say so, then retry
                self._down(error)

    async def reopen(self) -> None:
        """Connect again with the trust as it is now (Trust New Certificate… pinned the new certificate); the
        trust or login error is raised (the link stays "untrusted"), an unreachable server is retried."""
        await self.on_loop(self._reopen())

    async def _reopen(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None
        if self._session_open:  # its check is the old certificate's: a new session asks trust() again
            self._session_open = False
            await self.client.__aexit__(None, None, None)
        try:
            await self._connect()
        except TrustError as error:
            self.changed = error if isinstance(error, CertificateChanged) else None
            self._down(error, "untrusted")
            raise
        except AuthError:
            raise
        except EngineError as error:
            self.changed = None
            self._down(error)
        else:
            self.changed = None
            self.reason = ""
            self._set_link("connected")
            self.collect(StateChanged(self._state, self._state))
        self._follower = asyncio.ensure_future(self._follow())

    async def _opened(self) -> None:
        """The event stream follows the engine: its state and configuration read now miss nothing; a link that
        was down is up again (the window reads everything it shows again)."""
        await self._refresh()
        if self.link != "connected":
            self.reason = ""
            self._set_link("connected")
            self.collect(StateChanged(self._state, self._state))

    # -- the transport ----------------------------------------------------------------------------------

    async def run(self, method: Callable[Concatenate[VirtualServer, P], Awaitable[T]], /,
                  *args: P.args, **kwargs: P.kwargs) -> T:
        route = ROUTES.get(method)
        if route is None:
            raise EngineError(f"{getattr(method, '__name__', method)} is not available on a remote computer")
        bound = inspect.signature(method).bind(None, *args, **kwargs)
        bound.apply_defaults()
        named = dict(list(bound.arguments.items())[1:])  # without the server
        if isinstance(route, Route):
            result = await self.on_loop(self.client.call(route.op, route.args(named)))
            return cast(T, route.answer(result))
        return cast(T, await self.on_loop(route(self, named)))

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

    def snapshot_config(self, config: Config) -> None:
        self._config = config


def remote_engine(client: AdminClient) -> EngineProxy:
    """The facade of the computer ``client`` reaches (not connected yet: ``engine.transport.open()``)."""
    return EngineProxy(RemoteHost(client))
