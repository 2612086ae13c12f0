"""Outbound connections kept open a moment after their batch, for the next batch to the same host (Postfix's scache).

Mail that comes in one message at a time (Pickup, a steady SMTP trickle) would otherwise open one connection per
message. A connection is kept only after a clean batch, for ``IDLE_TIME`` seconds, and reused only by a session
with the same settings (host, port, EHLO name, TLS and AUTH) while the messages it carried stay within the
per-connection limit; the session probes it with RSET first. Idle connections hold no connection slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiosmtplib

IDLE_TIME = 2.0  # seconds (Postfix's smtp_connection_cache_time_limit)
MAX_IDLE = 100  # idle connections kept at most

Key = tuple[object, ...]


@dataclass(eq=False)
class _Idle:
    client: aiosmtplib.SMTP
    sent: int  # messages it carried so far
    timer: asyncio.TimerHandle | None = None


class ConnectionCache:
    def __init__(self, idle_time: float = IDLE_TIME) -> None:
        self.idle_time = idle_time
        self._idle: dict[Key, list[_Idle]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.reused = 0  # sessions that went on an idle connection (for the figures)

    def take(self, key: Key, room: int, limit: int) -> tuple[aiosmtplib.SMTP, int] | None:
        """An idle connection for ``key`` that can carry ``room`` more messages within ``limit``, with its count."""
        for idle in self._idle.get(key, []):
            if idle.sent + room <= limit and idle.client.is_connected:
                self._forget(key, idle)
                self.reused += 1
                return idle.client, idle.sent
        return None

    def put(self, key: Key, client: aiosmtplib.SMTP, sent: int) -> bool:
        """Keep ``client`` for a moment; False when there is no room (the caller closes it)."""
        if sum(len(v) for v in self._idle.values()) >= MAX_IDLE:
            return False
        idle = _Idle(client, sent)
        idle.timer = asyncio.get_running_loop().call_later(self.idle_time, self._expire, key, idle)
        self._idle.setdefault(key, []).append(idle)
        return True

    def _forget(self, key: Key, idle: _Idle) -> None:
        if idle.timer is not None:
            idle.timer.cancel()
        connections = self._idle.get(key, [])
        if idle in connections:
            connections.remove(idle)
        if not connections:
            self._idle.pop(key, None)

    def _expire(self, key: Key, idle: _Idle) -> None:
        self._forget(key, idle)
        task = asyncio.get_running_loop().create_task(_goodbye(idle.client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        idle = [i for connections in self._idle.values() for i in connections]
        for item in idle:
            if item.timer is not None:
                item.timer.cancel()
        self._idle.clear()
        await asyncio.gather(*(_goodbye(item.client) for item in idle), *self._closing, return_exceptions=True)


async def _goodbye(client: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        await asyncio.wait_for(client.quit(), 5.0)
    client.close()
