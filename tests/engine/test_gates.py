"""engine.qmgr.gates: a connection limit that follows its setting while connections wait."""

from __future__ import annotations

import asyncio

from engine.qmgr.gates import Gate, Places


async def _settle() -> None:
    for _ in range(5):  # let woken tasks run (no clock involved)
        await asyncio.sleep(0)


async def test_raising_and_lowering_the_limit_applies_to_waiting_holders() -> None:
    limit = [2]
    gate = Gate(lambda: limit[0])
    release = asyncio.Event()
    entered: list[int] = []

    async def holder(number: int) -> None:
        async with gate:
            entered.append(number)
            await release.wait()

    tasks = [asyncio.create_task(holder(n)) for n in range(6)]
    await _settle()
    assert entered == [0, 1] and gate.inside == 2 and gate.waiting == 4
    limit[0] = 4
    gate.resized()
    await _settle()
    assert entered == [0, 1, 2, 3] and gate.inside == 4  # in arrival order
    limit[0] = 1  # lowered: nobody is interrupted, nobody new enters
    gate.resized()
    await _settle()
    assert gate.inside == 4 and gate.waiting == 2
    tasks[5].cancel()  # a waiter gives up: its place is not lost or double-counted
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert entered == [0, 1, 2, 3, 4] and gate.idle


async def test_a_woken_waiter_cancelled_before_it_runs_hands_its_place_on() -> None:
    gate = Gate(lambda: 1)
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def first() -> None:
        async with gate:
            inside.set()
            await leave.wait()

    async def waiter(done: list[str], name: str) -> None:
        async with gate:
            done.append(name)

    done: list[str] = []
    holder = asyncio.create_task(first())
    await inside.wait()
    second = asyncio.create_task(waiter(done, "second"))
    third = asyncio.create_task(waiter(done, "third"))
    await _settle()
    leave.set()
    await asyncio.sleep(0)  # the holder leaves and reserves the place for "second"
    second.cancel()
    await asyncio.gather(holder, second, third, return_exceptions=True)
    assert done == ["third"] and gate.idle


async def test_places_are_held_across_gates_until_left_once_by_their_last_owner() -> None:
    everyone, domain = Gate(lambda: 2), Gate(lambda: 1)
    first = await Places.enter(everyone, domain)
    assert (everyone.inside, domain.inside, domain.full, everyone.full) == (1, 1, True, False)
    kept = first.handover()  # the connection goes idle into the cache with its places
    first.leave()  # the batch ends: nothing left, the idle connection still holds them
    assert (everyone.inside, domain.inside) == (1, 1)
    second = asyncio.create_task(Places.enter(everyone, domain))
    await _settle()
    assert not second.done() and everyone.inside == 2  # in the first gate, waiting at the second
    second.cancel()  # a cancelled wait leaves the gates it had entered
    await _settle()
    assert (everyone.inside, domain.inside, domain.waiting) == (1, 1, 0)
    kept.leave()
    kept.leave()  # once only
    assert (everyone.inside, domain.inside) == (0, 0)
