"""``smtpsvc log path|tail``: where today's protocol log is, and its last lines (``-f``: as they come); with
--connect, another computer's (the log.lines op)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from app.remote import call_sync, connecting
from engine.conf.config import default_config_path
from engine.conf.config_file import load_config
from engine.errors import EngineError
from engine.log.settings import LogSettings, current_log_file, log_settings

FOLLOW_POLL = 0.5  # seconds between looks at a followed file (and at a new day's file)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    parser = subparsers.add_parser("log", parents=[common], help="the protocol log: today's file, its last lines",
                                   description="The protocol log (IIS 'Enable logging').")
    actions = parser.add_subparsers(dest="log_action", metavar="ACTION", required=True)
    actions.add_parser("path", parents=[common], help="print the path of the file written now")
    tail = actions.add_parser("tail", parents=[common], help="print the last lines of the file written now")
    tail.add_argument("-n", "--lines", type=int, default=10, metavar="N", help="how many lines (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing lines as they are written")
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> LogSettings:
    path: Path = getattr(args, "config", None) or default_config_path()
    return log_settings(load_config(path), path)


def run(args: argparse.Namespace) -> int:
    if connecting(args):
        try:
            return _remote(args)
        except KeyboardInterrupt:
            return 0
        except (EngineError, EOFError) as error:  # the engine refused (its bounds), or there is no password
            print(f"smtpsvc log: {error}", file=sys.stderr)
            return 1
    try:
        settings = _settings(args)
    except EngineError as error:
        print(f"smtpsvc log: {error}", file=sys.stderr)
        return 2
    if not settings.enabled:
        print("smtpsvc log: logging is off (log_enabled = false)", file=sys.stderr)
    path = current_log_file(settings, time.time())
    if args.log_action == "path":
        print(path)
        return 0
    if not path.exists() and not args.follow:
        print(f"smtpsvc log: no protocol log yet: {path}", file=sys.stderr)
        return 1
    try:
        return _tail(settings, path, max(args.lines, 0), args.follow)
    except KeyboardInterrupt:
        return 0


def _tail(settings: LogSettings, path: Path, lines: int, follow: bool) -> int:
    offset = 0
    if path.exists():
        with path.open("rb") as file:
            last = deque(file, maxlen=lines) if lines else deque()
            offset = file.tell()
        sys.stdout.write(b"".join(last).decode("utf-8", "replace"))
        sys.stdout.flush()
    while follow:
        time.sleep(FOLLOW_POLL)
        now_path = current_log_file(settings, time.time())
        if now_path != path:  # rollover: go on with the new file from its start
            path, offset = now_path, 0
        if not path.exists():
            continue
        with path.open("rb") as file:
            file.seek(offset)
            chunk = file.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        offset += len(complete)
        if complete:
            sys.stdout.write(complete.decode("utf-8", "replace"))
            sys.stdout.flush()
    return 0


def _remote(args: argparse.Namespace) -> int:
    """The same output from --connect's engine: its file's last lines, then (-f) those written since."""
    def read(**op_args: Any) -> dict[str, Any]:
        answer: dict[str, Any] = call_sync(args, "log.lines", op_args)
        return answer

    first = read(lines=0 if args.log_action == "path" else max(args.lines, 0))
    if not first["enabled"]:
        print("smtpsvc log: logging is off (log_enabled = false)", file=sys.stderr)
    if args.log_action == "path":
        print(first["path"])
        return 0
    if not first["exists"] and not args.follow:
        print(f"smtpsvc log: no protocol log yet: {first['path']} (at {args.connect})", file=sys.stderr)
        return 1
    answer = first
    while True:
        for line in answer["lines"]:
            print(line, flush=True)
        if not args.follow:
            return 0
        path, offset = answer["path"], answer["offset"]
        time.sleep(FOLLOW_POLL)
        answer = read(offset=offset)
        if answer["path"] != path:  # rollover there: go on with the new file from its start
            answer = read(offset=0)
