"""The control protocol as tables and pure functions: op name → facade call, argument schema, JSON replies.

Invariants: ``OPS`` is the whole protocol; arguments are checked against the op's schema before the
facade sees them; results are the facade's dataclasses as JSON (``dataclasses.asdict``); every failure
is an error reply naming an ``engine.errors`` type, never a traceback. engine/admin/control.py carries it over a
Unix socket; the command line calls ``call`` directly when no engine runs, so both give the same results.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from engine.admin.event_ids import LEVELS, EventEntry, Level
from engine.admin.mailroot_items import DropItem, PickupFile
from engine.admin.perf import History
from engine.admin.pickup_history import PickupRecord
from engine.admin.tracking import Query, Track
from engine.bounce.badmail import BadmailItem
from engine.conf import config as domain_ops
from engine.conf.addresses import classify, domain_of
from engine.conf.config import DOMAIN_SECRETS, Config, DomainConfig
from engine.conf.config_file import config_from_dict, config_to_dict, parse_value, resolve_key, with_option
from engine.conf.hostport import join_hostport
from engine.conf.options import OPTIONS, OPTIONS_BY_NAME
from engine.errors import ConfigError, EngineError
from engine.log.tail import LogLines, LogTail
from engine.qmgr import schedule
from engine.qmgr.queue import QueueDetail, QueuePage
from engine.smtp.dns_check import DnsReport
from engine.smtpd.sessions import SessionInfo

log = logging.getLogger(__name__)

LOG_LINES_MAX = 10_000  # entries or lines log.tail and log.lines answer with at most (within the file's last MiB)
PICKUP_LIST_MAX = 10_000  # files pickup.list answers with (the oldest): a stopped Pickup can hold very many
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
    def config_path(self) -> Path | None: ...
    @property
    def bound_addresses(self) -> list[tuple[str, int]]: ...
    @property
    def recovering(self) -> bool: ...
    def recovery_progress(self) -> tuple[int, int]: ...
    def config(self) -> Config: ...
    def clock(self) -> float: ...
    async def counters_snapshot(self) -> dict[str, float]: ...
    def counter_history(self, seconds: float | None = None) -> History: ...
    async def track_messages(self, query: Query) -> list[Track]: ...
    async def pickup_history(self, limit: int = 500) -> list[PickupRecord]: ...
    async def check_dns(self, name: str, dns_servers: tuple[str, ...] | None = None) -> DnsReport: ...
    async def list_queue(self, offset: int = 0, limit: int = 100, sort: str = "age",
                         descending: bool = False) -> QueuePage: ...
    async def queue_page(self, after: str = "", limit: int = 5000) -> QueuePage: ...
    async def queue_detail(self, queue_id: str) -> QueueDetail: ...
    async def queue_subjects(self, queue_ids: Sequence[str]) -> dict[str, str]: ...
    async def retry_now(self, queue_ids: list[str] | None = None, domain: str | None = None) -> int: ...
    async def freeze(self, queue_id: str) -> None: ...
    async def thaw(self, queue_id: str) -> None: ...
    async def delete_message(self, queue_id: str) -> None: ...
    async def bounce_now(self, queue_id: str) -> None: ...
    async def list_badmail(self) -> list[BadmailItem]: ...
    async def delete_badmail(self, name: str) -> None: ...
    async def resend_badmail(self, name: str) -> str: ...
    async def resend_drop(self, ref: str) -> str: ...
    async def list_drop(self) -> list[DropItem]: ...
    async def read_drop(self, name: str) -> bytes: ...
    async def read_badmail(self, name: str) -> bytes: ...
    async def read_queued(self, queue_id: str, limit: int = 0) -> bytes: ...
    async def delete_drop(self, name: str) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def apply_config(self, config: Config) -> None: ...
    async def list_sessions(self) -> list[SessionInfo]: ...
    async def list_users(self) -> list[str]: ...
    async def add_user(self, name: str, password: str) -> None: ...
    async def set_user_password(self, name: str, password: str) -> None: ...
    async def delete_user(self, name: str) -> None: ...
    async def list_operators(self) -> list[tuple[str, str]]: ...
    async def add_operator(self, name: str, password: str, role: str = "admin") -> None: ...
    async def set_operator_password(self, name: str, password: str) -> None: ...
    async def delete_operator(self, name: str) -> None: ...
    async def set_operator_role(self, name: str, role: str) -> None: ...
    async def terminate_session(self, session_id: str) -> None: ...
    async def terminate_all_sessions(self) -> int: ...
    async def session_transcript(self, session_id: str) -> list[str]: ...
    async def list_pickup(self) -> list[PickupFile]: ...
    async def protocol_log_tail(self, limit: int = 1000) -> LogTail: ...
    async def protocol_log_lines(self, lines: int = 10, offset: int | None = None) -> LogLines: ...
    async def list_events(self, since: float | None = None, level: Level = "Information",
                          limit: int = 1000) -> list[EventEntry]: ...


@dataclass(frozen=True)
class Arg:
    kind: type  # str, int (whole number >= 0), bool, list (of str) or dict (a JSON object)
    required: bool = False
    default: Any = None
    most: int | None = None  # an int's largest value: a bound on what one request may ask the engine to read


Handler = Callable[[ControlTarget, dict[str, Any]], Awaitable[Any]]
Access = Literal["read", "change"]  # a viewer operator may run "read" ops only


@dataclass(frozen=True)
class Op:
    handler: Handler
    args: dict[str, Arg]
    doc: str
    access: Access = "change"


async def _state(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    recovered, total = server.recovery_progress()
    config_file = server.config_path
    return {"state": server.state, "name": server.config().name, "mailroot": str(server.mailroot_path),
            "config_file": str(config_file.expanduser().resolve()) if config_file is not None else None,
            "pid": os.getpid(), "listening": [join_hostport(h, p) for h, p in server.bound_addresses],
            "recovering": server.recovering, "recovery": {"recovered": recovered, "total": total}}


async def _counters(server: ControlTarget, args: dict[str, Any]) -> dict[str, float]:
    return await server.counters_snapshot()


async def _queue_list(server: ControlTarget, args: dict[str, Any]) -> Any:
    return await server.list_queue(args["offset"], args["limit"], args["sort"], args["descending"])


async def _queue_page(server: ControlTarget, args: dict[str, Any]) -> Any:
    return await server.queue_page(args["after"], args["limit"])


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
    remote = [a for a in item.pending if classify(domain_of(a), config.effective_domains).kind == "remote"
              and domain_of(a).lower() not in item.etrn_held]  # held for ETRN: no attempt, no expiry until then
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


async def _badmail_delete(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.delete_badmail(args["name"])


async def _badmail_resend(server: ControlTarget, args: dict[str, Any]) -> dict[str, str]:
    return {"pickup": await server.resend_badmail(args["name"])}


async def _drop_list(server: ControlTarget, args: dict[str, Any]) -> Any:
    return await server.list_drop()


async def _drop_delete(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.delete_drop(args["name"])


async def _drop_resend(server: ControlTarget, args: dict[str, Any]) -> dict[str, str]:
    return {"pickup": await server.resend_drop(args["name"])}


async def _server_start(server: ControlTarget, args: dict[str, Any]) -> dict[str, str]:
    await server.start()
    return {"state": server.state}


async def _server_stop(server: ControlTarget, args: dict[str, Any]) -> dict[str, str]:
    # Stopping closes the control socket that may carry this very request: stop once the reply is out.
    asyncio.get_running_loop().call_soon(lambda: _background(server.stop()))
    return {"state": "stopping"}


_BACKGROUND: set[asyncio.Task[None]] = set()


def _background(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _BACKGROUND.add(task)  # keep a reference until it is done (the loop holds tasks only weakly)
    task.add_done_callback(_BACKGROUND.discard)


async def _server_pause(server: ControlTarget, args: dict[str, Any]) -> dict[str, str]:
    await server.pause()
    return {"state": server.state}


async def _server_continue(server: ControlTarget, args: dict[str, Any]) -> dict[str, str]:
    await server.resume()
    return {"state": server.state}


def masked_config(config: Config) -> dict[str, Any]:
    """The configuration as plain data (the TOML layout) with secrets masked: what config.get answers."""
    data = config_to_dict(config)
    server = data["server"]
    assert isinstance(server, dict)
    for option in OPTIONS:
        if option.secret and server.get(option.name):
            server[option.name] = SECRET_MASK
    domains = data["domain"]
    assert isinstance(domains, list)
    for domain in domains:
        for key in DOMAIN_SECRETS:
            if domain.get(key):
                domain[key] = SECRET_MASK
    return data


SECRET_MASK = "********"


async def _config_get(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    return masked_config(server.config())


async def _config_set(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    """One setting as text (`smtpsvc config set KEY VALUE`), parsed and validated as the command line does."""
    key = resolve_key(args["key"])
    value = args["value"] if key in ("name", "mailroot") else parse_value(OPTIONS_BY_NAME[key], args["value"])
    await server.apply_config(with_option(server.config(), key, value))
    return {"key": key}


async def _config_set_many(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    """Several settings as text at once (a property page): every bad value named, nothing applied unless all fit."""
    config = server.config()
    problems: list[tuple[str, str]] = []
    values = {}
    for key, text in args["values"].items():
        if not isinstance(text, str):
            problems.append((key, "must be given as text"))
            continue
        try:
            name = resolve_key(key)
            values[name] = text if name in ("name", "mailroot") else parse_value(OPTIONS_BY_NAME[name], text)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    data = config_to_dict(config)
    server_data = data["server"]
    assert isinstance(server_data, dict)
    for name, value in values.items():
        if name in ("name", "mailroot"):
            data[name] = value
        else:
            server_data[name] = list(value) if isinstance(value, tuple) else value
    new = config_from_dict(data)
    changed = _changed(config, new)
    await server.apply_config(new)
    return {"changed": changed}


MAX_SHOWN = 1024 * 1024  # a message shown in a browser: the first MiB is plenty


def _shown(data: bytes, raw: bool) -> dict[str, Any]:
    """A file for a browser (its first MiB as text) or, ``raw``, for a program (all of it, base64)."""
    if raw:
        return {"data": base64.b64encode(data).decode("ascii"), "size": len(data)}
    return {"text": data[:MAX_SHOWN].decode("utf-8", "replace"), "size": len(data)}


async def _drop_read(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    return _shown(await server.read_drop(args["name"]), args["raw"])


async def _badmail_read(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    return _shown(await server.read_badmail(args["name"]), args["raw"])


async def _queue_read(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    return _shown(await server.read_queued(args["id"], args["limit"]), args["raw"])


async def _queue_subjects(server: ControlTarget, args: dict[str, Any]) -> dict[str, str]:
    return await server.queue_subjects(args["ids"])


async def _config_apply(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    """A whole configuration in the file's layout (a remote property sheet's Apply); a secret still showing
    config.get's mask keeps its current value."""
    data = args["config"]
    current = server.config()
    incoming = data.get("server")
    if isinstance(incoming, dict):
        for option in OPTIONS:
            if option.secret and incoming.get(option.name) == SECRET_MASK:
                incoming[option.name] = getattr(current.server, option.name)
    known = {d.name.lower(): d for d in current.domains}
    for domain in data.get("domain", []) if isinstance(data.get("domain"), list) else []:
        for key in DOMAIN_SECRETS if isinstance(domain, dict) else ():
            if domain.get(key) == SECRET_MASK:
                same = known.get(str(domain.get("name", "")).lower())
                domain[key] = getattr(same, key) if same is not None else ""
    new = config_from_dict(data)
    changed = _changed(current, new)
    await server.apply_config(new)
    return {"changed": changed}


def replicable(data: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``data`` (config.get's layout) that replication copies: every option not marked
    ``local`` and not secret, and the domains without their local Drop directory."""
    server = data.get("server", {})
    settings = {o.name: server[o.name] for o in OPTIONS if not o.local and not o.secret and o.name in server}
    domains = [{k: v for k, v in d.items() if k != "drop_dir" and k not in DOMAIN_SECRETS}
               for d in data.get("domain", [])]
    return {"server": settings, "domain": domains}


async def _config_replicate(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    """Take another server's replicable settings; local paths, certificates, keys and secrets stay as they are."""
    incoming = args["settings"]
    if set(incoming) - {"server", "domain"} or not isinstance(incoming.get("server", {}), dict) \
            or not isinstance(incoming.get("domain", []), list):
        raise ConfigError([("settings", 'must be {"server": {...}, "domain": [...]}')])
    local = sorted(k for k in incoming.get("server", {}) if k in OPTIONS_BY_NAME
                   and (OPTIONS_BY_NAME[k].local or OPTIONS_BY_NAME[k].secret))
    if local:
        raise ConfigError([(f"server.{k}", "is specific to each computer and is never replicated") for k in local])
    current = server.config()
    data = config_to_dict(current)
    server_data = data["server"]
    assert isinstance(server_data, dict)
    server_data.update(incoming.get("server", {}))
    drops = {d.name.lower(): d.drop_dir for d in current.domains}
    passwords = {d.name.lower(): d.outbound_password for d in current.domains}
    domains = []
    for domain in incoming.get("domain", []):
        if isinstance(domain, dict):
            domain = {k: v for k, v in domain.items() if k != "drop_dir" and k not in DOMAIN_SECRETS}
            if domain.get("type") in ("default", "alias") and drops.get(str(domain.get("name", "")).lower()):
                domain["drop_dir"] = drops[str(domain["name"]).lower()]
            if domain.get("outbound_auth") == "basic" and passwords.get(str(domain.get("name", "")).lower()):
                domain["outbound_password"] = passwords[str(domain["name"]).lower()]  # secrets stay local
        domains.append(domain)
    data["domain"] = domains
    new = config_from_dict(data)
    changed = _changed(current, new)
    await server.apply_config(new)
    return {"changed": changed}


def _changed(old: Config, new: Config) -> list[str]:
    keys = [o.name for o in OPTIONS if getattr(old.server, o.name) != getattr(new.server, o.name)]
    return keys + (["domains"] if old.domains != new.domains else [])


async def _domain_list(server: ControlTarget, args: dict[str, Any]) -> list[dict[str, Any]]:
    config = server.config()
    return [{**dataclasses.asdict(d), "implicit": d not in config.domains,
             **{key: SECRET_MASK for key in DOMAIN_SECRETS if getattr(d, key)}}  # never a password on the wire
            for d in config.effective_domains]


async def _domain_add(server: ControlTarget, args: dict[str, Any]) -> None:
    if args["type"] not in ("alias", "remote"):
        raise ConfigError([("type", f"{args['type']!r} is not alias or remote")])
    domain = DomainConfig(name=args["name"], type=args["type"], relay_allowed=args["relay"],
                          route="smarthost" if args["smart_host"] else "dns", smart_host=args["smart_host"],
                          tls_required=args["tls_required"], use_helo=args["use_helo"], etrn_queue=args["etrn"],
                          drop_dir=args["drop_dir"])
    await server.apply_config(domain_ops.add_domain(server.config(), domain))


_DOMAIN_SETTINGS = ("drop_dir", "tls_required", "outbound_auth", "outbound_user", "outbound_password")


async def _domain_set(server: ControlTarget, args: dict[str, Any]) -> None:
    """`smtpsvc config domain set NAME ...`: the settings given change, the others stay as they are."""
    given = {key: args[key] for key in _DOMAIN_SETTINGS if args[key] is not None}
    if not given:
        raise RequestError(f"domain.set: nothing to change: give one of {', '.join(_DOMAIN_SETTINGS)}")
    current = server.config()
    domain = domain_ops.with_domain_settings(domain_ops.find_domain(current, args["name"]), **given)
    await server.apply_config(domain_ops.update_domain(current, domain))


async def _domain_update(server: ControlTarget, args: dict[str, Any]) -> None:
    """A remote domain's properties (the manager's domain sheet): relay, smart host, TLS, HELO, ETRN."""
    current = server.config()
    domain = domain_ops.find_domain(current, args["name"])
    if domain.type != "remote":
        raise ConfigError([("type", f"{domain.name} is a local domain: only its Drop directory can be set")])
    smart_host = args["smart_host"].strip()
    domain = dataclasses.replace(domain, relay_allowed=args["relay"], route="smarthost" if smart_host else "dns",
                                 smart_host=smart_host, tls_required=args["tls_required"],
                                 use_helo=args["use_helo"], etrn_queue=args["etrn"])
    await server.apply_config(domain_ops.update_domain(current, domain))


async def _domain_delete(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.apply_config(domain_ops.delete_domain(server.config(), args["name"]))


async def _domain_set_default(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.apply_config(domain_ops.set_default_domain(server.config(), args["name"]))


async def _sessions_list(server: ControlTarget, args: dict[str, Any]) -> Any:
    return await server.list_sessions()


async def _sessions_terminate(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.terminate_session(args["id"])


async def _sessions_terminate_all(server: ControlTarget, args: dict[str, Any]) -> dict[str, int]:
    return {"count": await server.terminate_all_sessions()}


async def _sessions_transcript(server: ControlTarget, args: dict[str, Any]) -> list[str]:
    return await server.session_transcript(args["id"])  # bounded by the engine, AUTH secrets masked


async def _pickup_list(server: ControlTarget, args: dict[str, Any]) -> list[PickupFile]:
    return (await server.list_pickup())[:PICKUP_LIST_MAX]

async def _counters_history(server: ControlTarget, args: dict[str, Any]) -> dict[str, Any]:
    history = server.counter_history(args["seconds"])
    return {"names": list(history.names), "samples": [[at, *values] for at, values in history.samples]}


async def _pickup_history(server: ControlTarget, args: dict[str, Any]) -> list[PickupRecord]:
    return await server.pickup_history(min(args["limit"], 10_000))


async def _log_tail(server: ControlTarget, args: dict[str, Any]) -> LogTail:
    return await server.protocol_log_tail(args["limit"])


async def _log_lines(server: ControlTarget, args: dict[str, Any]) -> LogLines:
    return await server.protocol_log_lines(args["lines"], args["offset"])


async def _dns_check(server: ControlTarget, args: dict[str, Any]) -> DnsReport:
    servers = args["servers"]
    return await server.check_dns(args["name"], tuple(servers) if servers is not None else None)


async def _track(server: ControlTarget, args: dict[str, Any]) -> list[Track]:
    since = args["since"]
    return await server.track_messages(Query(
        sender=args["sender"] or "", recipient=args["recipient"] or "", message_id=args["message_id"] or "",
        queue_id=args["queue_id"] or "", subject=args["subject"] or "",
        since=float(since) if since is not None else None, limit=min(args["limit"], 10_000)))


async def _events_list(server: ControlTarget, args: dict[str, Any]) -> list[dict[str, Any]]:
    level = args["level"]
    if level not in LEVELS:
        raise RequestError(f"events.list: level must be one of {', '.join(LEVELS)}")
    since = args["since"]
    entries = await server.list_events(float(since) if since is not None else None, level, args["limit"])
    return [entry.to_json() for entry in entries]


async def _operators_list(server: ControlTarget, args: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": name, "role": role} for name, role in await server.list_operators()]


async def _operators_add(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.add_operator(args["name"], args["password"], args["role"])


async def _operators_passwd(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.set_operator_password(args["name"], args["password"])


async def _operators_role(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.set_operator_role(args["name"], args["role"])  # refused when it leaves no admin


async def _operators_delete(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.delete_operator(args["name"])  # refused for the last admin


async def _users_list(server: ControlTarget, args: dict[str, Any]) -> list[str]:
    return await server.list_users()


async def _users_add(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.add_user(args["name"], args["password"])


async def _users_passwd(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.set_user_password(args["name"], args["password"])


async def _users_delete(server: ControlTarget, args: dict[str, Any]) -> None:
    await server.delete_user(args["name"])


_ID = {"id": Arg(str, required=True)}
_NAME = {"name": Arg(str, required=True)}

OPS: dict[str, Op] = {
    "state": Op(_state, {}, "state, name, Mailroot, pid, listening addresses, recovering (queue still being read)",
                "read"),
    "counters": Op(_counters, {}, "the performance counters", "read"),
    "queue.list": Op(_queue_list, {"offset": Arg(int, default=0), "limit": Arg(int, default=100),
                                   "sort": Arg(str, default="age"), "descending": Arg(bool, default=False)},
                     "one page of the queue: {items, total, recovering (true: partial)}", "read"),
    "queue.show": Op(_queue_show, _ID, "one message: item, recipients, transcript, ..., schedule", "read"),
    "queue.flush": Op(_queue_flush, {"ids": Arg(list), "domain": Arg(str)},
                      "Retry Now: these ids, one domain, or (neither) everything: {count}"),
    "queue.freeze": Op(_queue_freeze, _ID, "hold a message"),
    "queue.thaw": Op(_queue_thaw, _ID, "release a held message"),
    "queue.delete": Op(_queue_delete, _ID, "delete a message without notice"),
    "queue.bounce": Op(_queue_bounce, _ID, "return a message to its sender now (NDR)"),
    "badmail.list": Op(_badmail_list, {}, "the Badmail items", "read"),
    "badmail.delete": Op(_badmail_delete, _NAME, "delete a Badmail item (its .BAD, .BDR and .BDP)"),
    "badmail.resend": Op(_badmail_resend, _NAME, "put a Badmail item back into Pickup: {pickup}"),
    "drop.list": Op(_drop_list, {}, "the Drop files", "read"),
    "drop.read": Op(_drop_read, {**_NAME, "raw": Arg(bool, default=False)},
                    "a Drop file: {text (its first MiB), size}, or raw: {data (base64), size}", "read"),
    "badmail.read": Op(_badmail_read, {**_NAME, "raw": Arg(bool, default=False)},
                       "a Badmail message: {text (its first MiB), size}, or raw: {data (base64), size}", "read"),
    "queue.read": Op(_queue_read, {**_ID, "raw": Arg(bool, default=False), "limit": Arg(int, default=0)},
                     "a queued message without its envelope (its first limit bytes when limit > 0): {text, size}, "
                     "or raw: {data (base64), size}", "read"),
    "queue.subjects": Op(_queue_subjects, {"ids": Arg(list, required=True)},
                         "the Subject of these queued messages: {id: subject}", "read"),
    "queue.page": Op(_queue_page, {"after": Arg(str, default=""), "limit": Arg(int, default=5000)},
                     "the messages whose id sorts after `after`, in id order: {items, total, recovering}", "read"),
    "drop.delete": Op(_drop_delete, _NAME, "delete a Drop file"),
    "drop.resend": Op(_drop_resend, _NAME, "put a copy of a Drop file back into Pickup (delivered again): {pickup}"),
    "server.start": Op(_server_start, {}, "start the virtual server: {state}"),
    "server.stop": Op(_server_stop, {}, "stop the virtual server (committed mail stays): {state}"),
    "server.pause": Op(_server_pause, {}, "pause: refuse new connections, keep delivering: {state}"),
    "server.continue": Op(_server_continue, {}, "continue after a pause: {state}"),
    "config.get": Op(_config_get, {}, "the configuration in the file's layout, secrets masked", "read"),
    "config.set": Op(_config_set, {"key": Arg(str, required=True), "value": Arg(str, required=True)},
                     "set one setting from text, as `smtpsvc config set` does: {key}"),
    "config.set_many": Op(_config_set_many, {"values": Arg(dict, required=True)},
                          "set several settings from text at once (all or none): {changed}"),
    "config.apply": Op(_config_apply, {"config": Arg(dict, required=True)},
                       "take a whole configuration (config.get's layout; masked secrets unchanged): {changed}"),
    "config.replicate": Op(_config_replicate, {"settings": Arg(dict, required=True)},
                           "take another server's replicable settings {server, domain}: {changed}"),
    "domain.list": Op(_domain_list, {}, "the domains, the implicit default included", "read"),
    "domain.add": Op(_domain_add, {"name": Arg(str, required=True), "type": Arg(str, required=True),
                                   "relay": Arg(bool, default=False), "smart_host": Arg(str, default=""),
                                   "tls_required": Arg(bool, default=False), "use_helo": Arg(bool, default=False),
                                   "etrn": Arg(bool, default=False), "drop_dir": Arg(str, default="")},
                     "add a local alias or a remote domain"),
    "domain.set": Op(_domain_set, {"name": Arg(str, required=True), "drop_dir": Arg(str),
                                   "tls_required": Arg(bool), "outbound_auth": Arg(str), "outbound_user": Arg(str),
                                   "outbound_password": Arg(str)},
                     "change the settings given of a domain, as `smtpsvc config domain set`: a local domain's "
                     "Drop directory ('' = the default domain's); a remote domain's TLS required and Outbound "
                     "Security (outbound_auth server, anonymous or basic, with outbound_user and _password)"),
    "domain.update": Op(_domain_update, {"name": Arg(str, required=True), "relay": Arg(bool, required=True),
                                         "smart_host": Arg(str, required=True),
                                         "tls_required": Arg(bool, required=True),
                                         "use_helo": Arg(bool, required=True), "etrn": Arg(bool, required=True)},
                        "a remote domain's relay, smart host (empty = DNS), TLS required, HELO and ETRN settings"),
    "domain.delete": Op(_domain_delete, _NAME, "delete a domain (not the default)"),
    "domain.set_default": Op(_domain_set_default, _NAME, "make a local alias the default domain"),
    "operators.list": Op(_operators_list, {}, "the Operators: [{name, role}]", "read"),
    "operators.add": Op(_operators_add, {"name": Arg(str, required=True), "password": Arg(str, required=True),
                                         "role": Arg(str, default="admin")},
                        "add an operator (role admin, viewer or poster)"),
    "operators.passwd": Op(_operators_passwd, {"name": Arg(str, required=True), "password": Arg(str, required=True)},
                           "change an operator's password"),
    "operators.role": Op(_operators_role, {"name": Arg(str, required=True), "role": Arg(str, required=True)},
                         "give an operator another role (admin, viewer or poster; never leaving no admin)"),
    "operators.delete": Op(_operators_delete, _NAME, "delete an operator (not the last admin)"),
    "users.list": Op(_users_list, {}, "the accounts of AUTH (the users file): [name]", "read"),
    "users.add": Op(_users_add, {"name": Arg(str, required=True), "password": Arg(str, required=True)},
                    "add an account of AUTH to the configured users file"),
    "users.passwd": Op(_users_passwd, {"name": Arg(str, required=True), "password": Arg(str, required=True)},
                       "change the password of an account of AUTH"),
    "users.delete": Op(_users_delete, _NAME, "delete an account of AUTH"),
    "sessions.list": Op(_sessions_list, {}, "the current SMTP sessions", "read"),
    "sessions.terminate": Op(_sessions_terminate, _ID, "end one session"),
    "sessions.transcript": Op(_sessions_transcript, _ID,
                              "a live session's latest dialogue lines (bounded, AUTH secrets masked)", "read"),
    "sessions.terminate_all": Op(_sessions_terminate_all, {}, "end every session: {count}"),
    "counters.history": Op(_counters_history, {"seconds": Arg(int)},
                           "the samples of the last `seconds` (default: all ten minutes): {names, samples: "
                           "[[time, value...]...]}", "read"),
    "track": Op(_track, {"sender": Arg(str), "recipient": Arg(str), "message_id": Arg(str), "queue_id": Arg(str),
                         "subject": Arg(str), "since": Arg(int), "limit": Arg(int, default=100)},
                "message tracking: the matching messages, newest first, with their timelines", "read"),
    "pickup.list": Op(_pickup_list, {}, "the files in the Pickup directory now, oldest first: [{name, size, at}]",
                      "read"),
    "pickup.history": Op(_pickup_history, {"limit": Arg(int, default=500)},
                         "what became of the files put into Pickup (tracking and Badmail), newest first", "read"),
    "dns.check": Op(_dns_check, {"name": Arg(str, required=True), "servers": Arg(list)},
                    "Check DNS: a name's addresses and MX hosts, asked of `servers` (default: the configured ones)",
                    "read"),
    "log.tail": Op(_log_tail, {"limit": Arg(int, default=1000, most=LOG_LINES_MAX)},
                   "the newest `limit` entries of the protocol log file written now, parsed: {path, enabled, fmt, "
                   "entries: [{field: value}] (oldest first), unreadable}", "read"),
    "log.lines": Op(_log_lines, {"lines": Arg(int, default=10, most=LOG_LINES_MAX), "offset": Arg(int)},
                    "the last `lines` lines of the protocol log file written now or, from `offset`, the lines written "
                    "since (a MiB at most): {path, enabled, exists, lines, offset (where to go on)}", "read"),
    "events.list": Op(_events_list, {"since": Arg(int), "level": Arg(str, default="Information"),
                                     "limit": Arg(int, default=1000)},
                      "event-log entries from `since` (seconds since the epoch) at `level` or worse, oldest first",
                      "read"),
}


def _valid(spec: Arg, value: Any) -> bool:
    if value is None:
        return not spec.required
    if spec.kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if spec.kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, spec.kind)


_KIND_NAMES = {str: "a string", int: "a whole number >= 0", bool: "true or false", list: "a list of strings",
               dict: "an object"}


def check_args(op: str, given: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``op`` with defaults filled in; RequestError names every problem at once."""
    spec = OPS.get(op)
    if spec is None:
        raise RequestError(f"unknown op {op!r}; known: {', '.join(OPS)}")
    problems = [f"unknown argument {name!r}" for name in given if name not in spec.args]
    problems += [f"{name!r} is required" for name, arg in spec.args.items() if arg.required and name not in given]
    problems += [f"{name!r} must be {_KIND_NAMES[arg.kind]}" for name, arg in spec.args.items()
                 if name in given and not _valid(arg, given[name])]
    problems += [f"{name!r} must be at most {arg.most}" for name, arg in spec.args.items()
                 if arg.most is not None and _valid(arg, given.get(name)) and (given.get(name) or 0) > arg.most]
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
