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
