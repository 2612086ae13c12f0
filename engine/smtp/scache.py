"""Outbound connections kept open a moment after their batch, for the next batch to the same host (Postfix's scache).

Mail that comes in one message at a time (Pickup, a steady SMTP trickle) would otherwise open one connection per
message. A connection is kept only after a clean batch, for ``IDLE_TIME`` seconds, and reused only by a session
with the same settings (host, port, EHLO name, TLS and AUTH) while the messages it carried stay within the
per-connection limit; the session probes it with RSET first.

An idle connection is an open connection: it keeps the connection-limit places (``Held``) of the batch that
opened it, so idle ones never take the limits past their settings. A batch that takes it has places of its own
and leaves the idle one's; a batch that finds its destination at the limit takes over an idle connection of
that destination with its places (``adopt``), or has one closed (``evict``) to make room.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from engine.smtp.client import Connection

IDLE_TIME = 2.0  # seconds (Postfix's smtp_connection_cache_time_limit)
MAX_IDLE = 100  # idle connections kept at most

Key = tuple[object, ...]


class Held(Protocol):
    """Connection-limit places (engine.qmgr.gates.Places): left once, when the connection closes or changes hands."""

    def leave(self) -> None: ...

    def handover(self) -> Held:
        """The same places, held by another owner from now on (this one no longer leaves them)."""
        ...


@dataclass(eq=False)
class Idle:
    client: Connection
    sent: int  # messages it carried so far
    key: Key = ()
    destination: str = ""  # the domain its places were taken for
    places: Held | None = None
    timer: asyncio.TimerHandle | None = None
    in_use: bool = False  # taken over by a session (adopt): no longer the adopter's to close


class ConnectionCache:
    def __init__(self, idle_time: float = IDLE_TIME) -> None:
        self.idle_time = idle_time
        self._idle: dict[Key, list[Idle]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.reused = 0  # sessions that went on an idle connection (for the figures)

    def take(self, key: Key, room: int, limit: int) -> tuple[Connection, int] | None:
        """An idle connection for ``key`` that can carry ``room`` more messages within ``limit``, with its count."""
        for idle in self._idle.get(key, []):
            if idle.sent + room <= limit and idle.client.is_connected:
                self._forget(key, idle)
                self.reused += 1
                if idle.places is not None:
                    idle.places.leave()  # the taker holds places of its own
                return idle.client, idle.sent
        return None

    def put(self, key: Key, client: Connection, sent: int, places: Held | None = None,
            destination: str = "") -> bool:
        """Keep ``client`` for a moment, holding ``places``; False when there is no room (the caller closes it
        and leaves its places)."""
        if sum(len(v) for v in self._idle.values()) >= MAX_IDLE:
            return False
        idle = Idle(client, sent, key, destination, places)
        idle.timer = asyncio.get_running_loop().call_later(self.idle_time, self._expire, key, idle)
        self._idle.setdefault(key, []).append(idle)
        return True

    def _oldest(self, destination: str | None) -> Idle | None:
        idle = [i for connections in self._idle.values() for i in connections
                if destination is None or i.destination == destination]
        return min(idle, key=lambda i: i.timer.when() if i.timer is not None else 0.0, default=None)

    def adopt(self, destination: str, room: int, limit: int) -> Idle | None:
        """An idle connection of ``destination`` with room for ``room`` more messages, taken out of the cache with
        its places: the caller holds them now (and uses the connection, or closes it)."""
        for connections in list(self._idle.values()):
            for idle in connections:
                if idle.destination == destination and idle.sent + room <= limit and idle.client.is_connected:
                    self._forget(idle.key, idle)
                    self.reused += 1
                    return idle
        return None

    def evict(self, destination: str | None = None) -> bool:
        """Close the oldest idle connection (of ``destination``, or any), leaving its places; False: none idle."""
        idle = self._oldest(destination)
        if idle is None:
            return False
        self._expire(idle.key, idle)
        return True

    def _forget(self, key: Key, idle: Idle) -> None:
        if idle.timer is not None:
            idle.timer.cancel()
        connections = self._idle.get(key, [])
        if idle in connections:
            connections.remove(idle)
        if not connections:
            self._idle.pop(key, None)

    def _expire(self, key: Key, idle: Idle) -> None:
        self._forget(key, idle)
        if idle.places is not None:
            idle.places.leave()  # closing: its places are free at once
        self.dismiss(idle.client)

    def dismiss(self, client: Connection) -> None:
        """Close a connection that is no longer wanted, politely (QUIT) and in the background."""
        task = asyncio.get_running_loop().create_task(_goodbye(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        idle = [i for connections in self._idle.values() for i in connections]
        for item in idle:
            if item.timer is not None:
                item.timer.cancel()
            if item.places is not None:
                item.places.leave()
        self._idle.clear()
        await asyncio.gather(*(_goodbye(item.client) for item in idle), *self._closing, return_exceptions=True)


async def _goodbye(client: Connection) -> None:
    if client.is_connected:
        await client.quit(timeout=5.0)  # closes it, answered or not
    client.close()
