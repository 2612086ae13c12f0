"""``smtpsvc serve``: the engine headless, logging to stderr, stopped cleanly by SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from app import running
from app.locations import add_location_options
from engine.admin.operators import OPERATORS_NAME
from engine.conf.config import Config, DomainConfig, default_config_path
from engine.conf.config_file import load_config, save_config, validate_config
from engine.conf.hostport import join_hostport
from engine.errors import ConfigError, EngineError
from engine.server import VirtualServer

if TYPE_CHECKING:
    from engine.admin.http_server import AdminServer, Setup

log = logging.getLogger("smtpsvc")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="run the SMTP engine headless")
    add_location_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.set_defaults(func=run)


def effective_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """The configuration file's content with the command-line overrides applied (validated)."""
    path: Path = args.config or default_config_path()
    config = load_config(path)
    if args.mailroot is not None:
        config = replace(config, mailroot=str(args.mailroot))
    if args.listen:
        config = replace(config, server=replace(config.server, listen=tuple(args.listen)))
    if args.domain:
        name = args.domain.lower()
        others = tuple(d for d in config.domains if d.type != "default" and d.name.lower() != name)
        old = config.default_domain if any(d.type == "default" for d in config.domains) else None
        default = DomainConfig(name=name, type="default", drop_dir=old.drop_dir if old else "")
        config = replace(config, domains=(default, *others))
    validate_config(config)
    return config, path


def config_failure(args: argparse.Namespace, error: EngineError) -> str:
    """What `smtpsvc` and `smtpsvc serve` say when the configuration cannot be used: which file, each problem."""
    path: Path = args.config or default_config_path()
    if isinstance(error, ConfigError):
        lines = [f"  {key}: {why}" for key, why in error.problems]
        return "\n".join([f"the configuration cannot be used ({path}):", *lines,
                          "Correct the file (or use `smtpsvc config set KEY VALUE`) and start again."])
    return f"the configuration cannot be used ({path}): {error}"


def config_saver(path: Path, args: argparse.Namespace) -> Callable[[Config], None]:
    """Saves a configuration changed while serving (remotely) to ``path``, keeping the file's own mailroot,
    listen addresses and default domain where the command line overrode them."""

    def save(config: Config) -> None:
        stored = load_config(path)
        if args.mailroot is not None and config.mailroot == str(args.mailroot):
            config = replace(config, mailroot=stored.mailroot)
        if args.listen and config.server.listen == tuple(args.listen):
            config = replace(config, server=replace(config.server, listen=stored.server.listen))
        if args.domain and config.default_domain.name == args.domain.lower():
            others = tuple(d for d in config.domains if d.type != "default")
            defaults = tuple(d for d in stored.domains if d.type == "default")
            config = replace(config, domains=(*defaults, *others))
        save_config(path, config)

    return save


def start_admin(server: VirtualServer, config_path: Path) -> AdminServer:
    """The admin server of ``server`` (not started): the API, the HTML manager and the Posting Acceptor; its
    operators file defaults to the one `smtpsvc operator add` makes beside the configuration file."""
    from engine.admin.http_server import AdminServer  # aiohttp: imported only where an admin server is made

    return AdminServer(server, operators_default=config_path.expanduser().resolve().parent / OPERATORS_NAME,
                       setups=admin_setups())


def admin_setups() -> tuple[Setup, ...]:
    """What the admin server serves beside its API: the HTML manager and the Posting Acceptor."""
    from engine.admin import http_pages, http_post  # Jinja2 and aiohttp

    return (http_pages.setup, http_post.setup)


class AdminWhenListening:
    """The admin server of `smtpsvc serve`, made only once ``admin_listen`` is set (at start or later): its
    imports (aiohttp, Jinja2) cost a quarter of a second that an engine without it does not pay."""

    def __init__(self, server: VirtualServer, config_path: Path) -> None:
        self._server = server
        self._path = config_path
        self.admin: AdminServer | None = None
        self._unfollow: Callable[[], None] | None = None
        self._made_for: Config | None = None  # the change that made the admin server (it may still go back)

    async def start(self) -> None:
        """Listen now when ``admin_listen`` is set (EngineError when it cannot); else wait for it to be set."""
        if self._server.config().server.admin_listen:
            await self._make(self._server.config())
        else:
            self._unfollow = self._server.before_config(self._take)

    async def _take(self, old: Config, new: Config) -> None:
        """Before the engine takes ``admin_listen`` set: listen, or refuse the change (BindError). Should a later
        step refuse the change (the SMTP listeners), the engine goes back (``take(new, old)``): so does this."""
        if self.admin is None and new.server.admin_listen:
            await self._make(new)
            self._made_for = new
        elif self.admin is not None and old is self._made_for:
            admin, self.admin, self._made_for = self.admin, None, None
            await admin.stop()
            self._unfollow = self._server.before_config(self._take)  # wait for the next admin_listen again

    async def _make(self, config: Config) -> None:
        admin = start_admin(self._server, self._path)
        try:
            await admin.start(config)  # from now on the admin server applies its own settings' changes
        except EngineError:
            await admin.stop()
            raise
        self.admin = admin
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None

    async def stop(self) -> None:
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        if self.admin is not None:
            await self.admin.stop()


GC_HOLD = 10.0  # seconds of recovery at most without the cyclic GC (the index: 1-2 s for 100,000 messages)
# A young collection per 10,000 new container objects instead of 700: a drain of 10,000 messages runs 500
# sessions whose allocations otherwise set off a collection every few messages (1.6 s of a 14 s drain).
GC_THRESHOLD = (10_000, 10, 10)


async def _freeze_when_recovered(server: VirtualServer) -> None:
    """Collect once and freeze when the queue is recovered; the GC (disabled by the caller) runs again then, or
    after GC_HOLD seconds of a longer recovery (cyclic garbage of the sessions served meanwhile must not pile up)."""
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_recovered(), GC_HOLD)
        if not server.recovering:
            gc.collect()  # once: what is garbage now must not be frozen with the queue
            gc.freeze()
    finally:
        gc.enable()
    if server.recovering:
        await server.wait_recovered()
        gc.collect()
        gc.freeze()


async def _serve(config: Config, path: Path, args: argparse.Namespace) -> int:
    server = VirtualServer(config, config_path=path, save_config=config_saver(path, args))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    admin = AdminWhenListening(server, path)
    # The recovered queue is long-lived: keep the cyclic GC from walking it again and again (0.5 s stalls
    # with 100,000 queued messages). The queue is read back in the background: the GC waits until it is (each
    # collection meanwhile would walk the growing queue: 0.15 s of CPU for 100,000), then collects once and
    # freezes what is left.
    gc.disable()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        await server.start()
        await admin.start()  # admin_listen and its certificate apply live
    except EngineError as error:
        gc.enable()
        log.error("%s", error)
        await server.stop()
        return 1
    freezer = loop.create_task(_freeze_when_recovered(server))
    running.write_note(path, server.mailroot.root)  # how `smtpsvc config set --config` finds this engine
    addresses = ", ".join(join_hostport(h, p) for h, p in server.bound_addresses)
    log.info("smtpsvc: %s started; listening on %s; Mailroot %s", config.name, addresses, server.mailroot.root)
    await stop.wait()
    log.info("smtpsvc: stopping")
    freezer.cancel()
    await admin.stop()
    await server.stop()
    running.remove_note(path)
    log.info("smtpsvc: stopped")
    return 0


_SYSLOG_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """Under systemd (JOURNAL_STREAM set) stderr goes to the journal: a ``<N>`` syslog priority prefix sets
    each line's priority, and the journal adds the time. Event-log entries carry their event ID ``[NNNN]``."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITIES.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def _log_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[_log_handler()])
    try:
        config, path = effective_config(args)
    except EngineError as error:
        print(f"smtpsvc: {config_failure(args, error)}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(config, path, args))
    return uvloop.run(_serve(config, path, args))
