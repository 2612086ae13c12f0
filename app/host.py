"""The embedded engine: a VirtualServer on its own thread and asyncio loop (the transport), and the facade the
window uses for it (app/engine_proxy.py plus what only this computer can do).

Invariants: every facade call runs on the engine loop and is awaited on the caller's loop; the engine never
runs on the window's qasync loop (design.md, "Process model"); engine events leave the engine thread in batches
(app/loop_thread.py).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from app.cert_cmd import CERT_NAME, KEY_NAME
from app.engine_proxy import EngineProxy
from app.loop_thread import LoopThread
from engine.conf.config import Config
from engine.conf.config_file import save_config
from engine.errors import EngineError
from engine.server import VirtualServer
from engine.smtpd.tls import PairReport, create_self_signed, free_pair, inspect_pair

P = ParamSpec("P")
T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class EngineHost(LoopThread):
    """Owns the engine thread and its VirtualServer (the transport of ``LocalEngine``)."""

    def __init__(self, config: Config, *, config_path: Path | None = None) -> None:
        super().__init__("smtpsvc-engine", _new_loop)
        self._initial = config
        self.config_path = config_path
        self._server: VirtualServer | None = None

    def setup(self) -> None:
        path = self.config_path
        saver = None if path is None else functools.partial(save_config, path)
        # The engine saves what it applied (engine.errors.ConfigNotSavedError when it cannot).
        self._server = VirtualServer(self._initial, config_path=path, save_config=saver)
        self._server.subscribe(self.collect)

    def shutdown(self, timeout: float = 60.0) -> None:
        """Stop the engine (committed mail stays committed), stop its loop and join the thread; idempotent."""
        server = self._server
        self.stop_thread(server.stop() if server is not None and self.running else None, timeout)

    # -- calls ----------------------------------------------------------------------------------

    async def _with_server(self, fn: Callable[[VirtualServer], Awaitable[T]]) -> T:
        if self._server is None:
            raise EngineError("the engine is not running")
        return await fn(self._server)

    async def call(self, fn: Callable[[VirtualServer], Awaitable[T]]) -> T:
        """Run ``fn(server)`` on the engine loop; await its result on the calling loop."""
        return await self.on_loop(self._with_server(fn))

    def call_blocking(self, fn: Callable[[VirtualServer], Awaitable[T]], timeout: float = 60.0) -> T:
        """Like ``call`` for code outside any loop (start-up, shutdown); never call it on the engine thread."""
        return self.submit(self._with_server(fn)).result(timeout)

    async def run(self, method: Callable[Concatenate[VirtualServer, P], Awaitable[T]], /,
                  *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.call(lambda server: method(server, *args, **kwargs))

    # -- snapshots ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._server.state if self._server is not None else "stopped"

    @property
    def bound_addresses(self) -> list[tuple[str, int]]:
        return self._server.bound_addresses if self._server is not None else []

    @property
    def mailroot(self) -> Path:
        return self._server.mailroot.root if self._server is not None else Path()

    def config(self) -> Config:
        return self._server.config() if self._server is not None else self._initial


class LocalEngine(EngineProxy):
    """This computer's engine: the facade, plus the calls that need this computer (its certificate files)."""

    transport: EngineHost

    def __init__(self, transport: EngineHost) -> None:
        super().__init__(transport)

    @property
    def config_path(self) -> Path | None:
        return self.transport.config_path

    async def inspect_certificate(self, certificate: str, key: str) -> PairReport:
        return await asyncio.to_thread(inspect_pair, certificate, key)

    def _pair_directory(self) -> Path:
        """Where new certificate files go: beside the configuration file (else in the Mailroot)."""
        path = self.config_path
        return (path.expanduser().parent if path is not None else self.mailroot).resolve()

    async def create_certificate(self, fqdn: str, names: tuple[str, ...], days: int) -> tuple[str, str]:
        """A self-signed certificate and key (as `smtpsvc cert new`) beside the configuration file, under names
        that replace nothing; returns their paths, for the Certificate page to use."""
        directory = self._pair_directory()

        def make() -> tuple[str, str]:
            directory.mkdir(parents=True, exist_ok=True)
            cert, key = free_pair(directory, CERT_NAME, KEY_NAME)
            create_self_signed(fqdn, cert, key, days=days, extra_names=names)
            return str(cert), str(key)

        return await asyncio.to_thread(make)

    async def import_certificate(self, pkcs12: str, password: str) -> tuple[str, str]:
        """A PKCS#12 (.pfx, .p12) file's certificate (with its chain) and key as PEM files beside the configuration
        file, under names that replace nothing; returns their paths, for the Certificate page to use."""
        directory = self._pair_directory()

        def convert() -> tuple[str, str]:
            directory.mkdir(parents=True, exist_ok=True)
            cert, key = free_pair(directory, CERT_NAME, KEY_NAME)
            from engine.smtpd.pkcs12_import import import_pkcs12  # cryptography (14 MB): only when importing one

            import_pkcs12(Path(pkcs12), password, cert, key)
            return str(cert), str(key)

        return await asyncio.to_thread(convert)
