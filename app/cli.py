"""The ``smtpsvc`` command line: the manager window by default, ``serve`` headless, and the other commands."""

from __future__ import annotations

import argparse
import sys

from app import (
    cert_cmd,
    config_cmd,
    counters_cmd,
    desktop,
    events_cmd,
    log_cmd,
    queue_cmd,
    remote,
    replicate_cmd,
    serve,
    track_cmd,
    user_cmd,
)

# The commands that act on a live engine, and so on another computer's with --connect. Every other command
# reads or writes this computer's files (or runs here) and refuses --connect rather than ignore it.
REMOTE_COMMANDS = ("config", "queue", "counters", "events", "track", "user", "operator", "replicate")
# Name this computer's files and addresses (the main parser's --domain is left out: it shares its name with
# `queue flush --domain`, a remote command's own option).
LOCAL_OPTIONS = ("config", "mailroot", "listen")


def remote_refusal(args: argparse.Namespace) -> str | None:
    """Why this command line cannot run with --connect; None when it can (or there is no --connect)."""
    if not remote.connecting(args):
        return None
    if args.command is None:
        return ("smtpsvc: --connect needs a command (" + ", ".join(REMOTE_COMMANDS) + "); the window connects "
                "to another computer with File → Connect to Computer…")
    if args.command not in REMOTE_COMMANDS:
        return (f"smtpsvc {args.command}: acts on this computer's files only; run it without --connect "
                f"(on the computer of {args.connect} itself)")
    given = [f"--{name}" for name in LOCAL_OPTIONS if getattr(args, name, None) is not None]
    if given:
        return (f"smtpsvc {args.command}: {' and '.join(given)} name{'s' * (len(given) == 1)} this computer's "
                f"files; with --connect the engine at {args.connect} uses its own")
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtpsvc",
        description="An SMTP server and relay with the IIS Mailroot, and its manager window.",
    )
    serve.add_location_options(parser)
    remote.add_options(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.add_parser(subparsers)
    config_cmd.add_parser(subparsers)
    queue_cmd.add_parser(subparsers)
    cert_cmd.add_parser(subparsers)
    user_cmd.add_parser(subparsers)
    log_cmd.add_parser(subparsers)
    user_cmd.add_parser(subparsers, user_cmd.OPERATORS)
    replicate_cmd.add_parser(subparsers)
    events_cmd.add_parser(subparsers)
    counters_cmd.add_parser(subparsers)
    track_cmd.add_parser(subparsers)
    desktop.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    refusal = remote_refusal(args)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    func = getattr(args, "func", None)
    if func is None:
        problem = desktop.display_problem()
        if problem is not None:  # before importing Qt, whose import fails without its system libraries
            print(problem, file=sys.stderr)
            return 1
        from app.manager import run_manager

        return run_manager(args)
    return int(func(args))


if __name__ == "__main__":
    sys.exit(main())
