"""Test support for the control socket: an engine with deferred remote mail that answers on its socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from engine_support import Running, start_server

from engine.admin.control import ControlServer, socket_path
from engine.admin.control_ops import answer
from engine.conf.config import Config
from engine.server import VirtualServer

SENDER = "s@example.test"


def message(number: int) -> bytes:
    """A message whose size grows with ``number`` (so sorting by size has something to sort)."""
    return f"Subject: message {number}\r\n\r\n{'x' * 100 * number}\r\n".encode()


@dataclass
class Engine:
    run: Running
    path: Path  # its control socket
    ids: list[str]  # queued messages, oldest first: r0@relay.test, r1@..., each one bigger than the last

    @property
    def server(self) -> VirtualServer:
        return self.run.server


async def serve_control(server: VirtualServer) -> ControlServer | None:
    """Start the control socket, unless the engine already serves it itself (VirtualServer.start does it)."""
    path = socket_path(server.mailroot_path)
    if path.exists():
        return None
    control = ControlServer(partial(answer, server), path)
    await control.start()
    return control


async def queue_deferred(server: VirtualServer, count: int, sender: str = SENDER) -> list[str]:
    """Queue ``count`` messages for the unreachable smart host and wait until each attempt has failed."""
    ids = []
    for number in range(count):
        ids.append(await server.submit(sender, (f"r{number}@relay.test",), message(number), "smtp"))
        await asyncio.sleep(0.002)  # distinct arrival times: sorting by age is then well defined
    await wait_deferred(server, set(ids))
    return ids


async def wait_deferred(server: VirtualServer, ids: set[str], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        items = {i.queue_id: i for i in (await server.list_queue(limit=10_000)).items}
        if all(q in items and items[q].attempts >= 1 and items[q].state != "active" for q in ids):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not deferred in time: {items}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def engine_with_queue(config: Config, count: int = 3) -> AsyncIterator[Engine]:
    run = await start_server(config)
    control = None
    try:
        control = await serve_control(run.server)
        ids = await queue_deferred(run.server, count)
        yield Engine(run, socket_path(run.mailroot), ids)
    finally:
        if control is not None:
            await control.stop()
        await run.server.stop()


def stale_socket(path: Path) -> None:
    """What a killed engine leaves behind: a socket file nobody listens on."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
