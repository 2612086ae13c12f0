"""`smtpsvc --connect https://HOST:PORT`: the commands that act on a live engine, run on another computer's.

The password comes from SMTPSVC_PASSWORD or a prompt; a self-signed certificate is pinned after the user
confirms its fingerprint (engine.admin.http_client has the trust rules).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
PASSWORD_ENV = "SMTPSVC_PASSWORD"


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect", metavar="URL", default=None,
                        help="act on the engine of another computer: https://HOST:PORT of its admin server")
    parser.add_argument("--user", metavar="NAME", default=None,
                        help="operator name for --connect (default: your login name)")
    parser.add_argument("--cafile", metavar="FILE", type=Path, default=None,
                        help="--connect: trust certificates issued by the authorities in FILE (PEM)")


def connecting(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "connect", None))


def call_sync(args: argparse.Namespace, op: str, op_args: dict[str, Any] | None = None) -> Any:
    """One op on the engine named by --connect, for commands without an event loop of their own."""
    async def run() -> Any:
        async with remote_call(args) as invoke:
            return await invoke(op, op_args or {})
    return asyncio.run(run())


def _confirm(host_port: str, fingerprint: str) -> bool:
    print(f"The certificate of {host_port} is not issued by a certificate authority this computer trusts.\n"
          f"Its SHA-256 fingerprint is\n  {fingerprint}\n"
          "Compare it with `smtpsvc cert show` on that server.", file=sys.stderr)
    print("Trust this certificate and remember it (yes/no)? ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("yes", "y")


def _password(user: str, url: str) -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password is not None:
        return password
    if not sys.stdin.isatty():
        raise EOFError(f"no password: set {PASSWORD_ENV} or run on a terminal")
    return getpass.getpass(f"Password of operator {user} at {url}: ")


@contextlib.asynccontextmanager
async def remote_call(args: argparse.Namespace) -> AsyncIterator[Call]:
    """How to run ops on the engine named by --connect."""
    async with peer_call(args, args.connect) as invoke:
        yield invoke


@contextlib.asynccontextmanager
async def peer_call(args: argparse.Namespace, url: str) -> AsyncIterator[Call]:
    """How to run ops on the admin server at ``url``, as the operator of --user (with --cafile's trust)."""
    user = getattr(args, "user", None) or getpass.getuser()
    asked: dict[str, str] = vars(args).setdefault("remote_passwords", {})  # asked once: --watch and --follow
    password = asked[f"{user} {url}"] = asked.get(f"{user} {url}") or _password(user, url)  # call again
    from engine.admin.http_client import AdminClient  # aiohttp and cryptography: only when connecting

    client = AdminClient(url, user, password, cafile=getattr(args, "cafile", None), confirm=_confirm)
    async with client:
        async def invoke(op: str, op_args: dict[str, Any]) -> Any:
            return await client.call(op, op_args)
        yield invoke
