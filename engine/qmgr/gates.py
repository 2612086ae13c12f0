"""Connection limits whose size is read from the configuration at every entry, so a changed limit applies at once.

Invariant: no one enters while ``inside >= capacity()``. A lowered limit interrupts nobody: those inside stay
until they leave, and no one new enters until the count is below it. Waiters enter in arrival order; a place is
reserved for a waiter when it is woken, so a newcomer cannot take it first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType


class Gate:
    """An async context manager like ``asyncio.Semaphore``, with a capacity read live from ``capacity``."""

    def __init__(self, capacity: Callable[[], int]) -> None:
        self._capacity = capacity
        self.inside = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def idle(self) -> bool:
        return not self.inside and not self._waiters

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def full(self) -> bool:
        """A newcomer would wait now."""
        return bool(self._waiters) or self.inside >= self._capacity()

    async def __aenter__(self) -> None:
        if not self._waiters and self.inside < self._capacity():
            self.inside += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # woken with a place reserved, then cancelled
                self.inside -= 1
                self.resized()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self.leave()

    def leave(self) -> None:
        self.inside -= 1
        self.resized()

    def resized(self) -> None:
        """Let waiters in while there is room (after a place was freed or the limit was raised)."""
        while self._waiters and self.inside < self._capacity():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.inside += 1
                waiter.set_result(None)


class Places:
    """The places one outbound connection holds, one in each of its gates (all connections, its domain).

    Held from the moment they are entered until ``leave``, whoever holds the connection then: the batch that
    opened it, or the connection cache while it is idle (an idle connection is an open connection and counts
    against the limits). ``leave`` is done once, whoever calls it again.
    """

    def __init__(self, gates: tuple[Gate, ...]) -> None:
        self._gates = gates
        self.held = True

    @classmethod
    async def enter(cls, *gates: Gate) -> Places:
        """Enter every gate in order (waiting at each); a cancelled wait leaves the ones already entered."""
        entered: list[Gate] = []
        try:
            for gate in gates:
                await gate.__aenter__()
                entered.append(gate)
        except BaseException:
            for gate in entered:
                gate.leave()
            raise
        return cls(gates)

    def leave(self) -> None:
        if self.held:
            self.held = False
            for gate in self._gates:
                gate.leave()

    def handover(self) -> Places:
        """The same places for another owner (the connection cache): this one no longer leaves them."""
        self.held = False
        return Places(self._gates)
