"""`smtpsvc queue`: list and act on the queue — through the running engine's control socket, or on the Mailroot.

When an engine answers on Mailroot/control.sock every operation goes to it (it owns the queue). When none
does, the command opens the Mailroot itself with an offline engine, which takes the same lock a starting
engine takes, so the two can never work on the queue at once. An engine that holds the lock but does not
answer (still starting, stopping, or its socket was removed) is waited for briefly, then refused: acting
on its queue behind its back would lose changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from app.remote import connecting, remote_call
from app.running import running_mailroot
from app.serve import effective_config
from engine.admin.control import ControlUnavailableError, request, socket_path
from engine.admin.control_ops import RequestError, call
from engine.conf.config import Config, default_config_path
from engine.errors import ConfigError, EngineError, MailrootLockedError, NotFoundError
from engine.server import QUEUE_SORT_KEYS, VirtualServer
from engine.store.mailroot import Mailroot

PROG = "smtpsvc queue"
EXIT_USAGE = 2  # bad usage, a message that is not (any more) in the queue
EXIT_FAILED = 1  # no Mailroot, an engine that does not answer, a failed operation
PAGE = 1000  # queue items per request when listing: replies stay small however long the queue
SETTLE_SECONDS = 5.0  # how long an engine holding the lock without answering (starting/stopping) is waited for

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]

_DONE = {"freeze": "frozen", "thaw": "thawed", "delete": "deleted", "bounce": "returned to its sender"}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``queue`` (with its actions) on the main parser's sub-commands."""
    # SUPPRESS: an option given before the action (or to the main parser) is not overwritten by a default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    common.add_argument("--mailroot", metavar="DIR", type=Path, default=argparse.SUPPRESS,
                        help="Mailroot directory (overrides the configuration file)")
    parser = subparsers.add_parser(
        "queue", parents=[common], help="list, retry, freeze, delete or bounce queued messages",
        description="Act on the queue of the running engine, or on the Mailroot when no engine runs "
                    "(like postqueue/postsuper).")
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="queue_action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=[common], help="list the queued messages (like mailq)")
    listing.add_argument("--sort", choices=tuple(QUEUE_SORT_KEYS), default="age", help="order (default: age)")
    listing.add_argument("--reverse", action="store_true", help="reverse the order")
    listing.add_argument("--limit", metavar="N", type=_positive, default=None, help="show at most N messages")
    show = actions.add_parser("show", parents=[common], help="envelope, recipients, schedule and transcript")
    show.add_argument("id", metavar="ID")
    flush = actions.add_parser("flush", parents=[common],
                               help="Retry Now: the given messages, one domain's, or (neither) all of them")
    # Its own dest: the main parser's --domain (the default domain override) is another option.
    flush.add_argument("--domain", dest="flush_domain", metavar="D", default=None, help="the messages for domain D")
    flush.add_argument("ids", metavar="ID", nargs="*")
    for action, text in (("freeze", "hold messages: no delivery until thawed"), ("thaw", "release held messages"),
                         ("delete", "delete messages without notifying anyone"),
                         ("bounce", "return messages to their senders now (NDR)")):
        one = actions.add_parser(action, parents=[common], help=text)
        one.add_argument("ids", metavar="ID", nargs="+")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1")
    return value


def run(args: argparse.Namespace) -> int:
    if args.queue_action == "flush" and args.ids and args.flush_domain:
        return _fail(RequestError("give message ids or --domain, not both"))
    try:
        config = None if connecting(args) else _config(args)
    except ConfigError as error:
        return _fail(error)
    try:
        return asyncio.run(_run(args, config))
    except (EngineError, OSError) as error:
        return _fail(error)
    except (KeyboardInterrupt, EOFError) as error:
        return _fail(EngineError(str(error) or "cancelled"))


def _config(args: argparse.Namespace) -> Config:
    """The configuration as `smtpsvc serve` would see it, so both find the same Mailroot."""
    path = getattr(args, "config", None) or default_config_path()
    # Without --mailroot: the engine serving this file, wherever it runs (`serve --mailroot`), else the file's.
    mailroot = getattr(args, "mailroot", None) or running_mailroot(path)
    location = argparse.Namespace(config=getattr(args, "config", None), mailroot=mailroot,
                                  listen=getattr(args, "listen", None), domain=getattr(args, "domain", None))
    return effective_config(location)[0]


def _fail(error: Exception) -> int:
    """One line (a broken configuration: one per problem) on stderr; the exit code for this kind of error."""
    if isinstance(error, ConfigError):
        text = "\n  ".join(f"{key}: {why}" for key, why in error.problems)
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    else:
        text = str(error)
    print(f"{PROG}: {_clean(text)}", file=sys.stderr)
    return EXIT_USAGE if isinstance(error, NotFoundError | RequestError | ConfigError) else EXIT_FAILED


async def _run(args: argparse.Namespace, config: Config | None) -> int:
    async with _connection(args, config) as (invoke, live):
        action = args.queue_action
        if action == "list":
            await _list(invoke, args.sort, args.reverse, args.limit)
        elif action == "show":
            _print_detail(await invoke("queue.show", {"id": args.id}))
        elif action == "flush":
            count = (await invoke("queue.flush", {"ids": args.ids or None, "domain": args.flush_domain}))["count"]
            when = "now" if live else "when the engine starts (no engine is running)"
            print(f"{count} message{_s(count)} due for delivery {when}")
        else:
            return await _each(invoke, action, args.ids)
    return 0


@contextlib.asynccontextmanager
async def _connection(args: argparse.Namespace, config: Config | None) -> AsyncIterator[tuple[Call, bool]]:
    """--connect: the admin server of another computer; else this computer's engine or Mailroot."""
    if config is None:
        async with remote_call(args) as invoke:
            yield invoke, True
        return
    async with _engine(config) as found:
        yield found


@contextlib.asynccontextmanager
async def _engine(config: Config) -> AsyncIterator[tuple[Call, bool]]:
    """How to run ops, and whether a live engine runs them: its control socket, or an offline engine."""
    mailroot = Mailroot.from_config(config).root
    path = socket_path(mailroot)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_SECONDS
    while True:
        try:
            await request(path, "state")
        except ControlUnavailableError:
            pass
        else:
            yield _remote(path), True
            return
        if not mailroot.is_dir():
            raise EngineError(f"there is no Mailroot at {mailroot}")
        server = VirtualServer(config)
        try:
            await server.start(offline=True)
        except MailrootLockedError as error:
            if loop.time() >= deadline:
                raise EngineError(f"{error}, but it does not answer on {path}; "
                                  "if it is starting or stopping, try again") from None
            await asyncio.sleep(0.1)
            continue
        try:
            yield _local(server), False
        finally:
            await server.stop()
        return


def _remote(path: Path) -> Call:
    async def invoke(op: str, args: dict[str, Any]) -> Any:
        return await request(path, op, **args)
    return invoke


def _local(server: VirtualServer) -> Call:
    async def invoke(op: str, args: dict[str, Any]) -> Any:
        return await call(server, op, args)
    return invoke


async def _each(invoke: Call, action: str, ids: list[str]) -> int:
    """freeze / thaw / delete / bounce each message; a failure does not stop the others."""
    code = 0
    for queue_id in ids:
        try:
            await invoke(f"queue.{action}", {"id": queue_id})
        except EngineError as error:
            code = max(code, _fail(error))
        else:
            print(f"{queue_id}: {_DONE[action]}")
    return code


# -- output ---------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Printable whatever the envelope held (undecodable bytes arrive as lone surrogates)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


async def _list(invoke: Call, sort: str, reverse: bool, limit: int | None) -> None:
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    total = 0
    recovering = False
    while limit is None or len(items) < limit:
        size = PAGE if limit is None else min(PAGE, limit - len(items))
        page = await invoke("queue.list", {"offset": len(items), "limit": size, "sort": sort, "descending": reverse})
        total = page["total"]
        recovering = recovering or bool(page.get("recovering", False))
        fresh = [i for i in page["items"] if i["queue_id"] not in seen]  # the queue moves between pages
        seen.update(i["queue_id"] for i in fresh)
        items += fresh
        if len(page["items"]) < size or not fresh:
            break
    _print_list(items, total, recovering)


PARTIAL = "-- Partial list: the engine is still reading the queue back after its start."


def _print_list(items: list[dict[str, Any]], total: int, recovering: bool = False) -> None:
    """Like Postfix's mailq: id (* being delivered, ! frozen), size, arrival, sender; then the last error
    and the recipients still to deliver; a total line (and a first and last line saying so when partial)."""
    if recovering:
        print(PARTIAL)
    if not items:
        print("Mail queue is empty" + (" so far" if recovering else ""))
        return
    width = max(len("-Queue ID-"), *(len(i["queue_id"]) + 1 for i in items))
    indent = " " * (width + 31)
    print(f"{'-Queue ID-':<{width}} {'--Size--':>8} {'----Arrival Time----':<20} -Sender/Recipient-------")
    for item in items:
        mark = {"active": "*", "frozen": "!"}.get(item["state"], "")
        arrived = time.strftime("%a %b %d %H:%M:%S", time.localtime(item["arrived"]))
        print(_clean(f"{item['queue_id'] + mark:<{width}} {item['size']:>8} {arrived:<20} {item['sender'] or '<>'}"))
        if item["last_error"]:
            print(_clean(f"{indent}({' '.join(item['last_error'].split())})"))
        for address in item["pending"]:
            print(_clean(f"{indent}{address}"))
        print()
    kbytes = (sum(i["size"] for i in items) + 1023) // 1024
    shown = f"{len(items)} of {total} Requests" if len(items) < total else f"{total} Request{_s(total)}"
    print(f"-- {kbytes} Kbytes in {shown}{' so far' if recovering else ''}.")


def _print_detail(detail: dict[str, Any]) -> None:
    item = detail["item"]
    now = time.time()
    next_at = item["next_attempt"]
    last = f", last {_when(detail['last_attempt'])}" if detail["last_attempt"] else ""
    rows = [
        ("Queue ID", item["queue_id"]),
        ("State", item["state"]),
        ("Sender", item["sender"] or "<>"),
        ("Arrived", _when(item["arrived"])),
        ("Size", f"{item['size']} bytes"),
        ("Source", item["source"]),
        ("Attempts", f"{item['attempts']}{last}"),
        ("Next attempt", "held (frozen)" if item["state"] == "frozen" else "—" if not item["pending"]
         else "now" if next_at <= now else _when(next_at)),
        ("Delay notice", "sent" if detail["delay_notice_sent"] else "not sent"),
        ("Last error", " ".join(item["last_error"].split()) or "—"),
    ]
    lines = [f"{label + ':':<14}{value}" for label, value in rows]
    lines += ["", "Recipients:"]
    width = max((len(r["address"]) for r in detail["recipients"]), default=0)
    for rcpt in detail["recipients"]:
        error = " ".join(rcpt["last_error"].split())
        enhanced = "" if rcpt["enhanced"] in error else rcpt["enhanced"]  # most errors already quote it
        outcome = " ".join(p for p in (enhanced, f"[{rcpt['remote']}]" if rcpt["remote"] else "", error) if p)
        lines.append(f"  {rcpt['address']:<{width}}  {rcpt['status']:<9}  {rcpt['attempts']} attempt"
                     f"{_s(rcpt['attempts'])}  {outcome}".rstrip())
    if detail["schedule"]:
        lines += ["", "Schedule ahead, if every attempt fails:"]
        lines += [f"  {_when(step['at'])}  {step['event']}" for step in detail["schedule"]]
    lines += ["", "Transcript:"]
    transcript = detail["transcript"].rstrip("\n")
    lines += [f"  {line}" for line in transcript.splitlines()] if transcript else ["  (no attempt yet)"]
    print(_clean("\n".join(lines)))
