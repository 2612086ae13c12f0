"""Badmail limits: the oldest items go first when Badmail is over its size or age limit; counted, an event."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from engine_support import Running, make_config, start_server

from engine.bounce.badmail_prune import Item, to_remove
from engine.events import BadmailPruned

MB = 1024 * 1024


@pytest.mark.parametrize(("max_bytes", "max_age", "removed"), [
    (0, 0, []),  # both off: IIS keeps everything
    (100, 0, []),  # exactly at the limit
    (99, 0, ["a"]),  # one byte over: the oldest goes
    (50, 0, ["a", "b"]),
    (0, 25.0, ["a"]),  # older than 25 s
    (40, 15.0, ["a", "b", "c"]),  # age first (a, b), then size (c)
])
def test_to_remove_takes_the_oldest_first(max_bytes: int, max_age: float, removed: list[str]) -> None:
    items = [Item("c", 90.0, 30), Item("a", 70.0, 20), Item("d", 95.0, 20), Item("b", 80.0, 30)]
    assert [item.name for item in to_remove(items, max_bytes, max_age, 100.0)] == removed


def bad_pickup_file(size: int) -> bytes:
    """A Pickup file without any header: it goes to Badmail whole, as the .BAD."""
    return b"not a message\r\n" + b"x" * (size - 15)


async def badmail_items(run: Running, count: int) -> list[str]:
    folder = run.mailroot / "Badmail"
    await run.wait_for(lambda: run.server.counters.badmailed_messages_bad_pickup_file == count)  # complete
    return sorted(path.stem for path in folder.glob("*.BAD"))


async def test_size_limit_removes_the_oldest_items_counts_them_and_says_so(tmp_path: Path) -> None:
    run = await start_server(make_config(tmp_path, badmail_max_size_mb=1))
    try:
        pickup = run.mailroot / "Pickup"
        for number in range(2):
            (pickup / f"junk{number}.txt").write_bytes(bad_pickup_file(400 * 1024))
            first, *second = await badmail_items(run, number + 1)
        (pickup / "junk2.txt").write_bytes(bad_pickup_file(400 * 1024))  # over 1 MB now
        await run.wait_for(lambda: run.server.counters.badmail_items_removed == 1)
        kept = sorted(path.stem for path in (run.mailroot / "Badmail").glob("*.BAD"))
        assert len(kept) == 2 and first not in kept and kept[0] == second[0]
        [event] = [e for e in run.events if isinstance(e, BadmailPruned)]
        assert event.names == (first,) and event.freed > 400 * 1024
        assert not list((run.mailroot / "Badmail").glob(f"{event.names[0]}.*"))  # all three files
        assert (await run.server.counters_snapshot())["Badmail Items Removed"] == 1
    finally:
        await run.server.stop()


async def test_age_limit_applies_when_switched_on_and_nothing_goes_while_it_is_off(tmp_path: Path) -> None:
    run = await start_server(make_config(tmp_path))
    try:
        pickup = run.mailroot / "Pickup"
        for number in range(3):
            (pickup / f"junk{number}.txt").write_bytes(bad_pickup_file(100))
        names = await badmail_items(run, 3)
        old = time.time() - 3 * 86400
        for path in (run.mailroot / "Badmail").glob(f"{names[0]}.*"):
            os.utime(path, (old, old))
        assert run.server.counters.badmail_items_removed == 0  # off by default
        config = run.server.config()
        await run.server.apply_config(replace(config, server=replace(config.server, badmail_max_age_days=2)))
        await run.wait_for(lambda: run.server.counters.badmail_items_removed == 1)
        assert sorted(p.stem for p in (run.mailroot / "Badmail").glob("*.BAD")) == names[1:]
    finally:
        await run.server.stop()
