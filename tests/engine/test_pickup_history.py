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
