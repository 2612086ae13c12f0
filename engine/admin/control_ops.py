"""The control protocol as tables and pure functions: op name → facade call, argument schema, JSON replies.

Invariants: ``OPS`` is the whole protocol; arguments are checked against the op's schema before the
facade sees them; results are the facade's dataclasses as JSON (``dataclasses.asdict``); every failure
is an error reply naming an ``engine.errors`` type, never a traceback. engine/admin/control.py carries it over a
Unix socket; the command line calls ``call`` directly when no engine runs, so both give the same results.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.bounce.badmail import BadmailItem
from engine.conf.addresses import classify, domain_of
from engine.conf.config import Config
from engine.conf.hostport import join_hostport
from engine.errors import ConfigError, EngineError
from engine.qmgr import schedule
from engine.qmgr.queue import QueueDetail, QueuePage

log = logging.getLogger(__name__)

SCHEDULE_LIMIT = 10  # attempts shown in queue.show's schedule (the delay notice and NDR always follow)


class RequestError(EngineError):
    """A request the control socket refuses: malformed, too long, an unknown op or bad arguments."""


# -- the operations ---------------------------------------------------------------------------------


class ControlTarget(Protocol):
    """The part of the facade (engine.server.VirtualServer) that the ops call."""

    @property
    def state(self) -> str: ...
    @property
    def mailroot_path(self) -> Path: ...
    @property
    def bound_addresses(self) -> list[tuple[str, int]]: ...
    @property
    def recovering(self) -> bool: ...
    def recovery_progress(self) -> tuple[int, int]: ...
    def config(self) -> Config: ...
    def clock(self) -> float: ...
    async def counters_snapshot(self) -> dict[str, float]: ...
    async def list_queue(self, offset: int = 0, limit: int = 100, sort: str = "age",
                         descending: bool = False) -> QueuePage: ...
    async def queue_detail(self, queue_id: str) -> QueueDetail: ...
    async def retry_now(self, queue_ids: list[str] | None = None, domain: str | None = None) -> int: ...
    async def freeze(self, queue_id: str) -> None: ...
    async def thaw(self, queue_id: str) -> None: ...
    async def delete_message(self, queue_id: str) -> None: ...
    async def bounce_now(self, queue_id: str) -> None: ...
    async def list_badmail(self) -> list[BadmailItem]: ...


@dataclass(frozen=True)
class Arg:
    kind: type  # str, int (whole number >= 0), bool, or list (of str)
    required: bool = False
    default: Any = None


Handler = Callable[[ControlTarget, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Op:
    handler: Handler
    args: dict[str, Arg]
    doc: str


async def _state(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    recovered, total = server.recovery_progress()
    return {"state": server.state, "name": server.config().name, "mailroot": str(server.mailroot_path),
            "pid": os.getpid(), "listening": [join_hostport(h, p) for h, p in server.bound_addresses],
            "recovering": server.recovering, "recovery": {"recovered": recovered, "total": total}}


async def _counters(server: ControlTarget, args: dict[str, Any]) -> dict[str, float]:
    return await server.counters_snapshot()


async def _queue_list(server: ControlTarget, args: dict[str, Any]) -> Any:
    return await server.list_queue(args["offset"], args["limit"], args["sort"], args["descending"])


async def _queue_show(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    detail = await server.queue_detail(args["id"])
    result = dataclasses.asdict(detail)
    result["schedule"] = [{"at": at, "event": event} for at, event in _schedule_ahead(server, detail)]
    return result


def _schedule_ahead(server: ControlTarget, detail: QueueDetail) -> list[tuple[float, str]]:
    """The attempts, delay notice and NDR still ahead if every attempt fails (remote recipients only:
    local delivery has no retry schedule); nothing while the message is frozen."""
    item = detail.item
    config = server.config()
    remote = [a for a in item.pending if classify(domain_of(a), config.effective_domains).kind == "remote"]
    if not remote or item.state == "frozen":
        return []
    return schedule.timing(config.server, local=False).plan(
        item.arrived, item.attempts, detail.last_attempt, server.clock(),
        delay_notice_sent=detail.delay_notice_sent, limit=SCHEDULE_LIMIT)


async def _queue_flush(server: ControlTarget, args: dict[str, Any]) -> dict[str, int]:
    return {"count": await server.retry_now(args["ids"], args["domain"])}


async def _queue_freeze(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.freeze(args["id"])


async def _queue_thaw(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.thaw(args["id"])


async def _queue_delete(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.delete_message(args["id"])


async def _queue_bounce(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.bounce_now(args["id"])


async def _badmail_list(server: ControlTarget, args: dict[str, Any]) -> Any:
    return await server.list_badmail()


_ID = {"id": Arg(str, required=True)}

OPS: dict[str, Op] = {
    "state": Op(_state, {}, "state, name, Mailroot, pid, listening addresses, recovering (queue still being read)"),
    "counters": Op(_counters, {}, "the performance counters"),
    "queue.list": Op(_queue_list, {"offset": Arg(int, default=0), "limit": Arg(int, default=100),
                                   "sort": Arg(str, default="age"), "descending": Arg(bool, default=False)},
                     "one page of the queue: {items, total, recovering (true: partial)}"),
    "queue.show": Op(_queue_show, _ID, "one message: item, recipients, transcript, ..., schedule"),
    "queue.flush": Op(_queue_flush, {"ids": Arg(list), "domain": Arg(str)},
                      "Retry Now: these ids, one domain, or (neither) everything: {count}"),
    "queue.freeze": Op(_queue_freeze, _ID, "hold a message"),
    "queue.thaw": Op(_queue_thaw, _ID, "release a held message"),
    "queue.delete": Op(_queue_delete, _ID, "delete a message without notice"),
    "queue.bounce": Op(_queue_bounce, _ID, "return a message to its sender now (NDR)"),
    "badmail.list": Op(_badmail_list, {}, "the Badmail items"),
}


def _valid(spec: Arg, value: Any) -> bool:
    if value is None:
        return not spec.required
    if spec.kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if spec.kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, spec.kind)


_KIND_NAMES = {str: "a string", int: "a whole number >= 0", bool: "true or false", list: "a list of strings"}


def check_args(op: str, given: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``op`` with defaults filled in; RequestError names every problem at once."""
    spec = OPS.get(op)
    if spec is None:
        raise RequestError(f"unknown op {op!r}; known: {', '.join(OPS)}")
    problems = [f"unknown argument {name!r}" for name in given if name not in spec.args]
    problems += [f"{name!r} is required" for name, arg in spec.args.items() if arg.required and name not in given]
    problems += [f"{name!r} must be {_KIND_NAMES[arg.kind]}" for name, arg in spec.args.items()
                 if name in given and not _valid(arg, given[name])]
    if problems:
        raise RequestError(f"{op}: {'; '.join(problems)}")
    return {name: given.get(name, arg.default) for name, arg in spec.args.items()}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def call(server: ControlTarget, op: str, args: dict[str, Any]) -> Any:
    """Run one op against ``server`` (the socket's handler, and the command line when no engine runs)."""
    checked = check_args(op, args)
    return _jsonable(await OPS[op].handler(server, checked))


# -- replies ----------------------------------------------------------------------------------------


def error_reply(error: EngineError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, ConfigError):
        body["problems"] = [list(p) for p in error.problems]
    return {"ok": False, "error": body}


def _error_types() -> dict[str, type[EngineError]]:
    found: dict[str, type[EngineError]] = {}
    pending: list[type[EngineError]] = [EngineError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending += cls.__subclasses__()
    return found


def error_from_reply(body: Any) -> EngineError:
    """The exception a reply's ``error`` stands for: only engine.errors types, anything else as EngineError."""
    if not isinstance(body, dict):
        return EngineError(f"malformed error reply from the engine: {body!r}")
    message = str(body.get("message", "unknown error"))
    cls = _error_types().get(str(body.get("type")), EngineError)
    if cls is ConfigError:
        problems = body.get("problems")
        if isinstance(problems, list) and all(isinstance(p, list) and len(p) == 2 for p in problems):
            return ConfigError([(str(k), str(v)) for k, v in problems])
        return ConfigError([("configuration", message)])
    try:
        return cls(message)
    except TypeError:  # a subclass with its own constructor: keep the message, lose the type
        return EngineError(message)


def encode(reply: dict[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode("utf-8") + b"\n"


async def answer(server: ControlTarget, line: bytes) -> bytes:
    """The encoded reply to one request line (without its newline)."""
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # RecursionError: [[[[... nested deep
        return encode(error_reply(RequestError(f"not a JSON request: {error}")))
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        return encode(error_reply(RequestError('a request is an object {"op": NAME, "args": {...}}')))
    extra = sorted(set(request) - {"op", "args"})
    args = request.get("args", {})
    if extra or not isinstance(args, dict):
        return encode(error_reply(RequestError(f"unexpected keys {extra}" if extra else '"args" must be an object')))
    try:
        return encode({"ok": True, "result": await call(server, request["op"], args)})
    except EngineError as error:
        return encode(error_reply(error))
    except Exception as error:  # a bug or an OS error below the facade: say so, keep serving
        log.exception("control op %s failed", request["op"])
        return encode({"ok": False, "error": {"type": "InternalError", "message": f"{type(error).__name__}: {error}"}})
