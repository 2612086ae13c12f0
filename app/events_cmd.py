"""``smtpsvc events``: the event log (start/stop, listener failures, lock-outs, Badmail, NDRs, disk full...)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import cast

from app.remote import call_sync, connecting
from engine.admin.event_ids import LEVELS, EventEntry, Level
from engine.admin.event_log import event_log_dir, read_entries
from engine.conf.config import default_config_path
from engine.conf.config_file import load_config
from engine.errors import EngineError
from engine.store.mailroot import Mailroot

REMOTE_LIMIT = 10_000  # entries one events.list brings from another computer (about 2 MB of JSON)
FOLLOW_POLL = 1.0  # seconds between looks for new entries
_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("events", help="show the event log",
                                   description="The event log of the virtual server, oldest first.")
    parser.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    parser.add_argument("--mailroot", metavar="DIR", type=Path, default=argparse.SUPPRESS,
                        help="Mailroot directory (overrides the configuration file)")
    parser.add_argument("--since", metavar="T", type=since_time, default=None,
                        help="from this time on: 2026-12-07, '2026-12-07 14:00', or an age like 30m, 2h, 7d")
    parser.add_argument("--level", choices=LEVELS, default="Information",
                        help="this level and the more severe ones (default: all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing entries as they come")
    parser.set_defaults(func=run)


def since_time(text: str, now: float | None = None) -> float:
    """Seconds since the epoch for an ISO date/time (local time unless it names a zone) or an age (30m, 2h)."""
    found = _RELATIVE.fullmatch(text.strip())
    if found:
        return (time.time() if now is None else now) - int(found.group(1)) * _UNITS[found.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date, a time or an age like 30m, 2h, 7d") from None


def render(entry: EventEntry, as_json: bool) -> str:
    if as_json:
        return json.dumps(entry.to_json(), ensure_ascii=False)
    when = datetime.fromtimestamp(entry.at).strftime("%Y-%m-%d %H:%M:%S")
    return f"{when}  {entry.level:<11}  {entry.event_id:>4}  {entry.source:<13}  {entry.text}"


def _fetcher(args: argparse.Namespace) -> Callable[[float, Level], Iterable[EventEntry]]:
    """Where the entries come from: this computer's event log files, or --connect's engine (events.list)."""
    if connecting(args):
        def remote(since: float, level: Level) -> list[EventEntry]:
            start = None if since == float("-inf") else int(since)
            found = call_sync(args, "events.list", {"since": start, "level": level, "limit": REMOTE_LIMIT})
            if len(found) == REMOTE_LIMIT:  # the op answers the newest entries only: say so rather than hide it
                print(f"smtpsvc events: the newest {REMOTE_LIMIT} entries of {args.connect} (earlier ones: "
                      "--since)", file=sys.stderr)
            return [entry for entry in map(EventEntry.from_json, found) if entry.at >= since]
        return remote
    path: Path = getattr(args, "config", None) or default_config_path()
    config = load_config(path)
    mailroot = getattr(args, "mailroot", None)
    directory = event_log_dir(mailroot if mailroot is not None else Mailroot.from_config(config).root)
    return lambda since, level: read_entries(directory, since, level)


def run(args: argparse.Namespace) -> int:
    try:
        fetch = _fetcher(args)
    except EngineError as error:
        print(f"smtpsvc events: {error}", file=sys.stderr)
        return 2
    level = cast(Level, args.level)
    last: tuple[float, int] = (args.since if args.since is not None else float("-inf"), 0)
    try:
        while True:
            seen_at_last = 0
            for entry in fetch(last[0], level):
                if entry.at == last[0]:
                    seen_at_last += 1
                    if seen_at_last <= last[1]:
                        continue  # printed in an earlier round
                    last = (entry.at, seen_at_last)
                else:
                    seen_at_last = 1
                    last = (entry.at, 1)
                print(render(entry, args.json), flush=True)
            if not args.follow:
                return 0
            time.sleep(FOLLOW_POLL)
    except KeyboardInterrupt:
        return 0
    except (EngineError, EOFError) as error:  # --connect: the engine refused, or there is no password
        print(f"smtpsvc events: {error}", file=sys.stderr)
        return 1
