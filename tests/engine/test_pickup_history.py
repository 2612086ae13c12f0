"""The Pickup history: what became of every file put into Pickup, by any tool, across restarts (real engine)."""

from __future__ import annotations

from pathlib import Path

from engine_support import LOCAL_DOMAIN, Running, make_config, start_server

from engine.admin.pickup_history import outcome_of
from engine.admin.tracking import Step, Track
from engine.events import MessageBadmailed, MessageQueued


def put(pickup: Path, name: str, data: bytes) -> None:
    """As another tool does: written beside, then renamed in."""
    temp = pickup.parent / f"{name}.part"
    temp.write_bytes(data)
    temp.rename(pickup / name)


async def test_history_outlives_a_restart_with_each_outcome(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    run = await start_server(config)
    try:
        pickup = run.server.mailroot.pickup
        put(pickup, "local.eml", f"From: a@{LOCAL_DOMAIN}\r\nTo: b@{LOCAL_DOMAIN}\r\nSubject: local one\r\n\r\nhi\r\n"
            .encode())
        put(pickup, "remote.eml", f"From: a@{LOCAL_DOMAIN}\r\nTo: c@relay.test\r\nSubject: remote one\r\n\r\nhi\r\n"
            .encode())
        put(pickup, "broken.txt", b"no header and no recipient\r\n")
        await run.wait_for(lambda: sum(isinstance(e, MessageQueued) for e in run.events) == 2
                           and any(isinstance(e, MessageBadmailed) for e in run.events))
        remote = next(e.queue_id for e in run.events
                      if isinstance(e, MessageQueued) and e.recipients == ("c@relay.test",))
        await run.wait_for(lambda: len(run.drop_files()) == 1)
        records = await run.server.pickup_history()
        by_subject = {r.subject: r for r in records}
        assert by_subject["local one"].outcome == "delivered" and by_subject["local one"].file == "local.eml"
        assert by_subject["remote one"].outcome == "queued" and by_subject["remote one"].queue_id == remote
        [refused] = [r for r in records if r.outcome == "refused"]
        assert refused.file == "broken.txt" and refused.badmail and refused.detail and not refused.queue_id
        assert [r.at for r in records] == sorted((r.at for r in records), reverse=True)
        await run.server.delete_message(remote)
    finally:
        await run.server.stop()
    assert {r.subject: r.outcome for r in await run.server.pickup_history()}["remote one"] == "deleted"  # stopped
    again = Running(type(run.server)(config))
    await again.server.start()
    try:
        records = await again.server.pickup_history()
        assert sorted(r.outcome for r in records) == ["deleted", "delivered", "refused"]
        assert len(await again.server.pickup_history(limit=2)) == 2
    finally:
        await again.server.stop()


def test_outcome_rules() -> None:
    def track(*steps: Step, recipients: tuple[str, ...] = ("a@x", "b@y")) -> Track:
        return Track("Q1", 1.0, "s@x", recipients, "", "", 10, "pickup", (Step(1.0, "received"), *steps))

    assert outcome_of(track(Step(1.0, "taken from Pickup", "x.eml"))) == ("queued", "", "")
    assert outcome_of(track(Step(2.0, "delivered to Drop", "a@x"))) == ("queued", "delivered to Drop: a@x", "")
    assert outcome_of(track(Step(2.0, "delivered to Drop", "a@x, B@y")))[0] == "delivered"
    assert outcome_of(track(Step(2.0, "delivery attempt", "451 later"), Step(3.0, "left the queue", "returned"))) \
        == ("returned", "returned", "")
    assert outcome_of(track(Step(2.0, "moved to Badmail", "B1: hop count exceeded"))) \
        == ("refused", "hop count exceeded", "B1")


def looping(recipient: str) -> bytes:
    """A message Pickup refuses with its envelope known (a mail loop: too many Received headers)."""
    return b"".join(b"Received: from hop%d.test by x.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % n for n in range(40)) \
        + f"From: a@{LOCAL_DOMAIN}\r\nTo: {recipient}\r\nSubject: loop\r\n\r\nhi\r\n".encode()


async def test_each_badmail_item_is_read_once_until_it_changes(tmp_path: Path) -> None:
    """The history is asked for again and again: an unchanged Badmail item (its .BDP's inode, size and time) is
    not read again; a new one is read, a changed one read again, a deleted one forgotten."""
    import os

    run = await start_server(make_config(tmp_path))
    try:
        pickup, badmail = run.server.mailroot.pickup, run.server.mailroot.badmail
        put(pickup, "first.eml", looping("someone@relay.test"))
        await run.wait_for(lambda: sum(isinstance(e, MessageBadmailed) for e in run.events) == 1)
        [first] = await run.server.pickup_history()
        assert first.recipients == ("someone@relay.test",)
        bdp = badmail / f"{first.badmail}.BDP"
        before = bdp.stat()
        with bdp.open("r+b") as handle:  # changed in place, its size and time kept: the item is not read again
            data = handle.read()
            handle.seek(0)
            handle.write(data.replace(b"someone@", b"sameone@"))
        os.utime(bdp, ns=(before.st_atime_ns, before.st_mtime_ns))
        put(pickup, "second.eml", looping("other@relay.test"))
        await run.wait_for(lambda: sum(isinstance(e, MessageBadmailed) for e in run.events) == 2)
        records = await run.server.pickup_history()
        assert sorted(r.recipients for r in records) == [("other@relay.test",), ("someone@relay.test",)]
        os.utime(bdp, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))  # now it changed: read again
        records = await run.server.pickup_history()
        assert sorted(r.recipients for r in records) == [("other@relay.test",), ("sameone@relay.test",)]
        await run.server.delete_badmail(first.badmail)
        [left] = await run.server.pickup_history()
        assert left.recipients == ("other@relay.test",)
    finally:
        await run.server.stop()
