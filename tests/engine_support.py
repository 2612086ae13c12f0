"""Test support: a real engine on a loopback port and what tests want to know about it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.events import Event
from engine.server import VirtualServer

LOCAL_DOMAIN = "example.test"


# Remote mail goes to a smart host that refuses connections: it stays queued, deferred, unless a test
# configures real routing (tests/engine/test_delivery.py does, with dnsmasq and remote MTAs).
UNREACHABLE_SMART_HOST = "[127.0.0.1]:1"


def make_config(tmp_path: Path, **server: object) -> Config:
    base = ServerConfig(listen=("127.0.0.1:0",), fqdn="mx.example.test", smart_host=UNREACHABLE_SMART_HOST)
    return Config(
        server=replace(base, **server),  # type: ignore[arg-type]
        domains=(
            DomainConfig(LOCAL_DOMAIN, "default"),
            DomainConfig("alias.test", "alias"),
            DomainConfig("relay.test", "remote", relay_allowed=True),
        ),
        mailroot=str(tmp_path / "Mailroot"),
    )


class Running:
    """A started VirtualServer plus what tests want to know about it."""

    def __init__(self, server: VirtualServer) -> None:
        self.server = server
        self.events: list[Event] = []
        server.subscribe(self.events.append)

    @property
    def port(self) -> int:
        return self.server.bound_addresses[0][1]

    @property
    def mailroot(self) -> Path:
        return self.server.mailroot.root

    def drop_files(self) -> list[Path]:
        return sorted(self.server.mailroot.drop.glob("*.eml"))

    def queue_files(self) -> list[Path]:
        return sorted(self.server.mailroot.queue.glob("*.eml"))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.02)



async def start_server(config: Config, *, recovered: bool = True) -> Running:
    """A started server; ``recovered``: once the queue found at start is read back (it serves before)."""
    running = Running(VirtualServer(config))  # subscribed before the start: what the start says is seen too
    await running.server.start()
    if recovered:
        await running.server.wait_recovered()
    return running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
