"""``smtpsvc counters``: the performance counters of the running engine (``--watch``: every second)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from app.remote import call_sync, connecting
from engine.admin.control import ControlUnavailableError, request_sync, socket_path
from engine.admin.perf import RATES
from engine.conf.config import default_config_path
from engine.conf.config_file import load_config
from engine.errors import EngineError
from engine.store.mailroot import Mailroot

WATCH_INTERVAL = 1.0
_CLEAR = "\x1b[H\x1b[2J"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("counters", help="show the performance counters of the running engine",
                                   description="The counters of the IIS \"SMTP Server\" object, from the running "
                                               "engine's control socket.")
    parser.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    parser.add_argument("--mailroot", metavar="DIR", type=Path, default=argparse.SUPPRESS,
                        help="Mailroot directory (overrides the configuration file)")
    parser.add_argument("--watch", action="store_true", help="show them again every second until interrupted")
    parser.add_argument("--json", action="store_true", help="one JSON object (name: value) per reading")
    parser.set_defaults(func=run)


def render(values: dict[str, float]) -> str:
    width = max((len(name) for name in values), default=0)
    lines = []
    for name in sorted(values, key=lambda n: (n in RATES, n)):
        value = values[name]
        shown = f"{value:,.2f}" if name in RATES or not float(value).is_integer() else f"{int(value):,}"
        lines.append(f"{name:<{width}}  {shown:>15}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path: Path = getattr(args, "config", None) or default_config_path()
    try:
        local = not connecting(args)
        mailroot = Path() if not local else \
            getattr(args, "mailroot", None) or Mailroot.from_config(load_config(path)).root
    except EngineError as error:
        print(f"smtpsvc counters: {error}", file=sys.stderr)
        return 2

    def read() -> dict[str, float]:
        if not local:  # another computer's engine, over its admin server
            values: dict[str, float] = call_sync(args, "counters")
            return values
        return dict(request_sync(socket_path(mailroot), "counters", timeout=10))

    clear = args.watch and not args.json and sys.stdout.isatty()
    try:
        while True:
            values = read()
            text = json.dumps(values) if args.json else render(values)
            print(_CLEAR + text if clear else text, flush=True)
            if not args.watch:
                return 0
            time.sleep(WATCH_INTERVAL)
            if not args.json and not clear:
                print(flush=True)
    except ControlUnavailableError as error:
        print(f"smtpsvc counters: no engine runs for {mailroot}: {error}", file=sys.stderr)
        return 1
    except EngineError as error:
        print(f"smtpsvc counters: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except EOFError as error:  # --connect without a password
        print(f"smtpsvc counters: {error}", file=sys.stderr)
        return 1
