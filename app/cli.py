"""The ``smtpsvc`` command line: the manager window by default, ``serve`` headless, and the other commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import NoReturn

from app import remote
from app.locations import add_location_options

# Every command: (name, the module that implements it, its one-line help). Only the module of the command
# that runs is imported (each pulls in much of the engine, some aiohttp, cryptography or Qt): `smtpsvc serve`
# must answer SMTP within a second of its start. The help lines are the modules' own (a test compares them).
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("serve", "app.serve", "run the SMTP engine headless"),
    ("config", "app.config_cmd", "show or change the configuration"),
    ("queue", "app.queue_cmd", "list, retry, freeze, delete or bounce queued messages"),
    ("cert", "app.cert_cmd", "make or show the TLS certificate"),
    ("user", "app.user_cmd", "manage the accounts of AUTH"),
    ("log", "app.log_cmd", "the protocol log: today's file, its last lines"),
    ("operator", "app.user_cmd", "manage the Operators (remote administrators)"),
    ("replicate", "app.replicate_cmd", "copy the settings that are not machine-specific to other servers"),
    ("events", "app.events_cmd", "show the event log"),
    ("counters", "app.counters_cmd", "show the performance counters of the running engine"),
    ("track", "app.track_cmd", "message tracking: find messages and what became of them"),
    ("desktop-entry", "app.desktop", "put the manager into the desktop's applications menu (Linux)"),
)
# The commands that act on a live engine, and so on another computer's with --connect. Every other command
# reads or writes this computer's files (or runs here) and refuses --connect rather than ignore it.
REMOTE_COMMANDS = ("config", "queue", "counters", "events", "track", "user", "operator", "replicate", "log")
# Name this computer's files and addresses (`queue flush --domain` has a dest of its own).
LOCAL_OPTIONS = ("config", "mailroot", "listen", "domain")


def remote_refusal(args: argparse.Namespace) -> str | None:
    """Why this command line cannot run with --connect; None when it can (or there is no --connect)."""
    if not remote.connecting(args):
        return None
    if args.command is None:
        return None  # the manager window, with that computer added beside this one
    if args.command not in REMOTE_COMMANDS:
        return (f"smtpsvc {args.command}: acts on this computer's files only; run it without --connect "
                f"(on the computer of {args.connect} itself)")
    given = [f"--{name}" for name in LOCAL_OPTIONS if getattr(args, name, None) is not None]
    if given:
        return (f"smtpsvc {args.command}: {' and '.join(given)} name{'s' * (len(given) == 1)} this computer's "
                f"files; with --connect the engine at {args.connect} uses its own")
    return None


class _Unparsable(Exception):
    pass


class _Probe(argparse.ArgumentParser):
    """Finds the command only: says nothing and never exits (the real parser reports errors afterwards)."""

    def error(self, message: str) -> NoReturn:
        raise _Unparsable(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _Unparsable(message or "")


def _main_parser(kind: type[argparse.ArgumentParser] = argparse.ArgumentParser,
                 ) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    parser = kind(
        prog="smtpsvc",
        description="An SMTP server and relay with the IIS Mailroot, and its manager window.",
        add_help=kind is not _Probe,
    )
    add_location_options(parser)
    remote.add_options(parser)
    return parser, parser.add_subparsers(dest="command", metavar="COMMAND")


def command_module(name: str) -> ModuleType:
    module = next(module for command, module, _ in COMMANDS if command == name)
    return importlib.import_module(module)


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> None:
    """Import the module of command ``name`` and let it register its parser."""
    module = command_module(name)
    if name == "operator":
        module.add_parser(subparsers, module.OPERATORS)
    else:
        module.add_parser(subparsers)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command listed; only ``command``'s (every one's when None) fully built."""
    parser, subparsers = _main_parser()
    for name, _, summary in COMMANDS:
        if command is None or name == command:
            add_command(subparsers, name)
        else:
            subparsers.add_parser(name, help=summary)
    return parser


def chosen_command(argv: list[str] | None) -> str | None:
    """The command named on this command line (None: the window), found without importing any command."""
    parser, subparsers = _main_parser(_Probe)
    parser.add_argument("-h", "--help", action="store_true")
    for name, _, _ in COMMANDS:
        stub = subparsers.add_parser(name, add_help=False)
        stub.add_argument("rest", nargs=argparse.REMAINDER)
    try:
        found, _ = parser.parse_known_args(argv)
    except _Unparsable:
        return None
    return getattr(found, "command", None)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(chosen_command(argv) or "")
    args = parser.parse_args(argv)
    refusal = remote_refusal(args)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    func = getattr(args, "func", None)
    if func is None:
        from app import desktop

        problem = desktop.display_problem()
        if problem is not None:  # before importing Qt, whose import fails without its system libraries
            print(problem, file=sys.stderr)
            return 1
        from app.manager import run_manager

        return run_manager(args)
    return int(func(args))


if __name__ == "__main__":
    sys.exit(main())
