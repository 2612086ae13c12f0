"""`smtpsvc replicate --to https://PEER:PORT …`: copy this server's non-machine-specific settings to peers.

The source is the configuration file (--config), or the engine named by --connect. Each peer's differences
are shown first; --dry-run stops there. Peers are done one after the other, each with its own result.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from app.remote import Call, connecting, peer_call, remote_call
from engine.admin.control_ops import masked_config, replicable
from engine.admin.replication import differences
from engine.conf.config import default_config_path
from engine.conf.config_file import load_config
from engine.errors import ConfigError, EngineError

PROG = "smtpsvc replicate"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replicate", help="copy the settings that are not machine-specific to other servers",
        description="Content replication: copy domains, relay and connection rules, limits and delivery "
                    "settings — never local paths, addresses, certificates, keys or passwords — to the admin "
                    "servers of other computers. Each peer's differences are shown first.")
    parser.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"the source configuration (default: {str(default_config_path()).replace('%', '%%')};"
                             " with --connect: that engine's)")
    parser.add_argument("--to", metavar="URL", action="append", required=True,
                        help="https://HOST:PORT of a peer's admin server (repeat for several)")
    parser.add_argument("-n", "--dry-run", action="store_true", help="only show what would change")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (ConfigError, EngineError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1
    except (KeyboardInterrupt, EOFError) as error:
        print(f"{PROG}: {error or 'cancelled'}", file=sys.stderr)
        return 1


async def _source(args: argparse.Namespace) -> dict[str, Any]:
    if connecting(args):
        async with remote_call(args) as invoke:
            data: dict[str, Any] = await invoke("config.get", {})
            return data
    path: Path = getattr(args, "config", None) or default_config_path()
    return masked_config(load_config(path))


Connect = Callable[[str], AbstractAsyncContextManager[Call]]


async def replicate(source: dict[str, Any], peers: list[str], connect: Connect, *, dry_run: bool
                    ) -> AsyncIterator[tuple[str, bool]]:
    """Each peer's differences, then (unless ``dry_run``) its result: (line, is it a failure)."""
    settings = replicable(source)
    for url in peers:
        try:
            async with connect(url) as invoke:
                changes = differences(source, await invoke("config.get", {}))
                yield f"{url}: {len(changes) or 'no'} difference{'' if len(changes) == 1 else 's'}", False
                for line in changes:
                    yield f"  {line}", False
                if changes and not dry_run:
                    result = await invoke("config.replicate", {"settings": settings})
                    yield f"{url}: replicated ({len(result['changed'])} setting(s) changed)", False
        except ConfigError as error:
            yield f"{url}: refused: " + "; ".join(f"{key}: {why}" for key, why in error.problems), True
        except EngineError as error:
            yield f"{url}: failed: {error}", True
    if dry_run:
        yield "(dry run: nothing was changed)", False


async def _run(args: argparse.Namespace) -> int:
    source = await _source(args)
    failed = False
    async for line, failure in replicate(source, args.to, lambda url: peer_call(args, url), dry_run=args.dry_run):
        print(line, file=sys.stderr if failure else sys.stdout)
        failed = failed or failure
    return 1 if failed else 0
