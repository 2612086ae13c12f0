"""``smtpsvc track``: where did a message go? Searches the tracking index (no engine needed)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path

from app.events_cmd import since_time
from app.remote import call_sync, connecting
from engine.admin.tracking import Query, Step, Track, iter_tracks, tracking_path
from engine.conf.config import default_config_path
from engine.conf.config_file import load_config
from engine.errors import EngineError
from engine.store.mailroot import Mailroot


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("track", help="message tracking: find messages and what became of them",
                                   description="Find messages by sender, recipient, Message-ID, queue ID and time; "
                                               "each with its timeline, newest first.")
    parser.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    parser.add_argument("--mailroot", metavar="DIR", type=Path, default=argparse.SUPPRESS,
                        help="Mailroot directory (overrides the configuration file)")
    parser.add_argument("--sender", metavar="A", default="", help="the envelope sender (an address, or @domain)")
    parser.add_argument("--recipient", metavar="B", default="", help="a recipient (an address, or @domain)")
    parser.add_argument("--message-id", metavar="M", default="", help="the Message-ID header, with or without <>")
    parser.add_argument("--queue-id", metavar="Q", default="", help="the queue ID (in the 250 reply and Received)")
    parser.add_argument("--subject", metavar="WORDS", default="", help="every one of these words in the Subject")
    parser.add_argument("--since", metavar="T", type=since_time, default=None,
                        help="received from this time on: 2026-12-07, '2026-12-07 14:00', or an age like 2h")
    parser.add_argument("--limit", metavar="N", type=int, default=100, help="at most N messages (default 100)")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    parser.set_defaults(func=run)


def _time(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def render(track: Track) -> str:
    subject = f'  "{track.subject}"' if track.subject else ""
    message_id = f"  <{track.message_id}>" if track.message_id else ""
    lines = [f"{track.queue_id}  {_time(track.received)}  from {track.sender or '<>'} to "
             f"{', '.join(track.recipients)}{subject}{message_id}"]
    width = max((len(step.what) for step in track.steps), default=0)
    lines += [f"    {_time(step.at)}  {step.what:<{width}}  {step.detail}".rstrip() for step in track.steps]
    return "\n".join(lines)


def _remote_tracks(args: argparse.Namespace, query: Query) -> list[Track]:
    """--connect: the track op of another computer's engine."""
    found = call_sync(args, "track", {"sender": query.sender or None, "recipient": query.recipient or None,
                                      "message_id": query.message_id or None, "queue_id": query.queue_id or None,
                                      "subject": query.subject or None,
                                      "since": int(query.since) if query.since is not None else None,
                                      "limit": query.limit})
    return [Track(**{**t, "recipients": tuple(t["recipients"]), "steps": tuple(Step(**s) for s in t["steps"])})
            for t in found]


def run(args: argparse.Namespace) -> int:
    query = Query(sender=args.sender, recipient=args.recipient, message_id=args.message_id,
                  queue_id=args.queue_id, subject=args.subject, since=args.since, limit=max(1, min(args.limit, 10_000)))
    if connecting(args):
        try:
            found = _remote_tracks(args, query)
        except (EngineError, EOFError) as error:
            print(f"smtpsvc track: {error}", file=sys.stderr)
            return 1
    else:
        path: Path = getattr(args, "config", None) or default_config_path()
        try:
            mailroot = getattr(args, "mailroot", None) or Mailroot.from_config(load_config(path)).root
        except EngineError as error:
            print(f"smtpsvc track: {error}", file=sys.stderr)
            return 2
        found = list(iter_tracks(tracking_path(mailroot), query))
    for track in found:
        print(json.dumps(dataclasses.asdict(track)) if args.json else render(track))
    if not found:
        print("smtpsvc track: no message matches", file=sys.stderr)
        return 1
    return 0
