"""The durable queue: recovery at start, corrupt files, leftovers, local delivery from Queue, the state record."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
from pathlib import Path

import pytest
from engine_support import start_server
from hypothesis import given
from hypothesis import strategies as st

from engine.conf.config import Config
from engine.events import ErrorEvent
from engine.store.envelope import EnvelopeError, RecipientState, StateRecord, envelope_lines, split_envelope


def _send(port: int, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("a@example.test", rcpts, b"Subject: q\r\n\r\nqueued body\r\n")


async def test_remote_recipients_survive_restart_and_local_part_is_not_redelivered(config_factory) -> None:
    config = config_factory()
    run = await start_server(config)
    await asyncio.to_thread(_send, run.port, ["b@example.test", "r1@relay.test", "r2@relay.test"])
    await run.wait_for(lambda: len(run.drop_files()) == 1)
    queue_id = run.drop_files()[0].stem
    await run.wait_for(lambda: (run.mailroot / "Queue" / f"{queue_id}.env").exists())
    await run.server.stop()

    again = await start_server(config)
    try:
        page = await again.server.list_queue()
        [item] = page.items
        assert item.queue_id == queue_id
        assert item.pending == ("r1@relay.test", "r2@relay.test")
        assert item.recipients == ("b@example.test", "r1@relay.test", "r2@relay.test")
        await asyncio.sleep(0.2)
        assert len(again.drop_files()) == 1  # the local copy was final: not dropped twice
        counters = await again.server.counters_snapshot()
        assert counters["Remote Queue Length"] == 1 and counters["Local Queue Length"] == 0
    finally:
        await again.server.stop()


async def made_queue(config: Config) -> Path:
    """The Queue directory of a Mailroot made by one start and stop: files put there are read at the next start."""
    run = await start_server(config)
    await run.server.stop()
    return run.mailroot / "Queue"


async def test_queue_file_without_state_record_is_delivered_after_restart(config_factory) -> None:
    config = config_factory()
    queue = await made_queue(config)
    (queue / "ABC123.eml").write_bytes(envelope_lines("a@example.test", ["b@example.test", "c@alias.test"])
                                       + b"Subject: recovered\r\n\r\nbody\r\n")
    again = await start_server(config)
    try:
        await again.wait_for(lambda: len(again.drop_files()) == 1)
        [drop] = again.drop_files()
        assert drop.name == "ABC123.eml"
        assert split_envelope(drop.read_bytes())[:2] == ("a@example.test", ("b@example.test", "c@alias.test"))
        await again.wait_for(lambda: not (queue / "ABC123.eml").exists())
    finally:
        await again.server.stop()


@pytest.mark.expect_errors
async def test_corrupt_queue_files_are_quarantined_with_an_event(config_factory) -> None:
    config = config_factory()
    run = await start_server(config)
    await run.server.stop()
    queue = run.mailroot / "Queue"
    (queue / "BROKEN1.eml").write_bytes(b"\x00\x01 not a queue file at all")
    (queue / "GOOD1.eml").write_bytes(envelope_lines("a@example.test", ["r@relay.test"]) + b"Subject: x\r\n\r\ny\r\n")
    (queue / "GOOD1.env").write_bytes(b"{ this is not json")
    (queue / "ORPHAN.env").write_bytes(b"{}")
    sorttemp = run.mailroot / "SortTemp"
    (sorttemp / "spool-HALF.eml").write_bytes(b"x-sender: a@example.test\r\nhalf written")

    from engine.server import VirtualServer

    server = VirtualServer(config)
    events: list[object] = []
    server.subscribe(events.append)
    await server.start()
    await server.wait_recovered()
    try:
        corrupt = queue / "corrupt"
        assert (corrupt / "BROKEN1.eml").exists() and (corrupt / "GOOD1.env").exists()
        assert not (queue / "ORPHAN.env").exists()
        assert not (sorttemp / "spool-HALF.eml").exists()
        page = await server.list_queue()
        assert [item.queue_id for item in page.items] == ["GOOD1"]  # rebuilt from its envelope lines
        errors = [e for e in events if isinstance(e, ErrorEvent)]
        assert {e.source for e in errors} == {"queue"} and len(errors) == 2
        assert server.state == "started"
    finally:
        await server.stop()


@given(
    sender=st.emails() | st.just(""),
    recipients=st.lists(st.emails(), min_size=1, max_size=5),
    body=st.binary(max_size=200),
)
def test_envelope_lines_round_trip(sender: str, recipients: list[str], body: bytes) -> None:
    data = envelope_lines(sender, recipients) + b"Subject: s\r\n\r\n" + body
    parsed_sender, parsed, offset = split_envelope(data)
    assert (parsed_sender, list(parsed)) == (sender, recipients)
    assert data[offset:] == b"Subject: s\r\n\r\n" + body


@given(
    queue_id=st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=30),
    sender=st.emails(),
    recipients=st.lists(st.tuples(st.emails(), st.sampled_from(["pending", "delivered", "failed"]),
                                  st.text(max_size=50), st.integers(0, 100)), min_size=1, max_size=5),
    arrived=st.floats(0, 4e9),
    attempts=st.integers(0, 1000),
    frozen=st.booleans(),
    extra=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)
def test_state_record_round_trip(queue_id: str, sender: str, recipients: list[tuple[str, str, str, int]],
                                 arrived: float, attempts: int, frozen: bool, extra: dict[str, str]) -> None:
    record = StateRecord(queue_id, sender, [RecipientState(*r) for r in recipients], arrived,
                         attempts=attempts, frozen=frozen, extra=extra)
    assert StateRecord.from_bytes(record.to_bytes()) == record


@given(st.binary(max_size=300))
def test_state_record_rejects_garbage_with_one_error_type(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        StateRecord.from_bytes(data)


def test_state_record_refuses_unknown_version() -> None:
    record = StateRecord("X", "a@b.c", [RecipientState("d@e.f")], 1.0)
    data = record.to_bytes().replace(b'"version":1', b'"version":99')
    try:
        StateRecord.from_bytes(data)
    except EnvelopeError as error:
        assert "version" in str(error)
    else:
        raise AssertionError("version 99 accepted")


async def test_drop_directory_moved_to_another_place(tmp_path: Path, config_factory) -> None:
    from dataclasses import replace

    from engine.conf.config import DomainConfig

    base = config_factory()
    elsewhere = tmp_path / "elsewhere" / "Drop"
    elsewhere.mkdir(parents=True)
    domains = (DomainConfig("example.test", "default", drop_dir=str(elsewhere)), *base.domains[1:])
    run = await start_server(replace(base, domains=domains))
    try:
        await asyncio.to_thread(_send, run.port, ["b@example.test"])
        assert len(list(elsewhere.glob("*.eml"))) == 1
        assert list((run.mailroot / "Drop").glob("*.eml")) == []
    finally:
        await run.server.stop()


async def test_offline_administration_of_the_queue(config_factory) -> None:
    from engine.errors import MailrootLockedError
    from engine.server import VirtualServer

    config = config_factory()
    run = await start_server(config)
    await asyncio.to_thread(_send, run.port, ["r@relay.test"])
    await run.wait_for(lambda: all(e.record.attempts for e in run.server._queue.entries.values()))  # type: ignore[union-attr]
    await run.server.stop()
    queue_dir = Path(config.mailroot) / "Queue"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in queue_dir.iterdir())
    stopped = await run.server.list_queue()  # stopped, not even offline: a read-only scan (like mailq)
    [seen] = stopped.items
    assert stopped.offline and stopped.total == 1 and seen.attempts >= 1 and seen.pending == ("r@relay.test",)
    page = await run.server.queue_page()  # the same scan, by id
    assert page.offline and page.total == 1 and page.items == stopped.items
    assert (await run.server.queue_page(seen.queue_id)).items == ()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in queue_dir.iterdir()) == before  # nothing changed

    offline = VirtualServer(config)
    await offline.start(offline=True)
    try:
        assert offline.state == "stopped" and offline.bound_addresses == []
        [item] = (await offline.list_queue()).items
        assert item.queue_id == seen.queue_id
        await offline.freeze(item.queue_id)
        with pytest.raises(MailrootLockedError):
            await VirtualServer(config).start()
    finally:
        await offline.stop()
    again = await start_server(config)
    try:
        [item] = (await again.server.list_queue()).items
        assert item.state == "frozen"  # the offline change was saved
    finally:
        await again.server.stop()


async def test_concurrent_state_saves_of_one_message_leave_the_newest_on_disk(config_factory) -> None:
    """Saves run on several commit threads; one message's saves must still land in the order they were made
    (a local delivery's 'delivered' was overwritten by a remote attempt's older state that finished later)."""
    config = config_factory()
    run = await start_server(config)
    try:
        await asyncio.to_thread(_send, run.port, ["r@relay.test"])
        store = run.server._queue  # type: ignore[union-attr]
        await run.wait_for(lambda: all(e.record.attempts and not e.active for e in store.entries.values()))
        [entry] = store.entries.values()  # its first attempt failed; the next is minutes away
        saves = []
        for n in range(41):
            entry.record.last_error = f"state {n}"
            saves.append(asyncio.ensure_future(store.save_state(entry)))
            await asyncio.sleep(0)  # the save takes the state of this moment (and hands it to a commit thread)
        await asyncio.gather(*saves)
        on_disk = StateRecord.from_bytes((run.mailroot / "Queue" / f"{entry.queue_id}.env").read_bytes())
        assert on_disk.last_error == "state 40"
    finally:
        await run.server.stop()


@pytest.mark.expect_errors
async def test_unwritable_drop_queues_then_notifies_on_the_local_schedule(tmp_path: Path, config_factory) -> None:
    from dataclasses import replace

    from engine_support import Running

    from engine.conf.config import DomainConfig
    from engine.server import VirtualServer
    from engine.store.envelope import split_envelope

    blocked = tmp_path / "Drop elsewhere"
    blocked.mkdir()
    base = config_factory()
    config = replace(base, domains=(DomainConfig("example.test", "default", drop_dir=str(blocked)),
                                    *base.domains[1:]))
    now = [1_800_000_000.0]
    server = VirtualServer(config, clock=lambda: now[0])
    await server.start()
    run = Running(server)
    try:
        assert server._queue is not None
        server._queue.local_retry = 0.05
        blocked.rmdir()
        blocked.write_text("a file where the Drop directory should be")
        await asyncio.to_thread(_send, run.port, ["b@example.test"])  # accepted (250), then queued
        await run.wait_for(lambda: any("Drop directory" in e.record.last_error
                                       for e in server._queue.entries.values()))  # type: ignore[union-attr]
        now[0] += 12 * 3600 + 60  # past the local delay-notification time, Drop still unwritable
        await run.wait_for(lambda: any(e.record.delay_notice_sent
                                       for e in server._queue.entries.values()))  # type: ignore[union-attr]
        blocked.unlink()
        blocked.mkdir()  # Drop is back: the message and the delay notice (queued too) are delivered
        await run.wait_for(lambda: len(list(blocked.glob("*.eml"))) == 2 and not server._queue.entries)  # type: ignore[union-attr]
        envelopes = sorted(split_envelope(p.read_bytes())[:2] for p in blocked.glob("*.eml"))
        assert envelopes == [("", ("a@example.test",)), ("a@example.test", ("b@example.test",))]
        notice = next(p for p in blocked.glob("*.eml") if split_envelope(p.read_bytes())[0] == "")
        assert b"Delivery Status Notification (Delay)" in notice.read_bytes()
    finally:
        await server.stop()


def test_state_record_refuses_an_unknown_recipient_status() -> None:
    data = StateRecord("X", "a@b.c", [RecipientState("d@e.f")], 1.0).to_bytes()
    with pytest.raises(EnvelopeError, match="unknown recipient status 'active'"):
        StateRecord.from_bytes(data.replace(b'"status":"pending"', b'"status":"active"'))


async def test_bounce_now_also_reports_a_failure_not_yet_told(config_factory) -> None:
    """Bounce Now goes through fate.settle: a recipient that failed but whose NDR was never sent (the attempt's
    end was interrupted) is in the same NDR, not lost with the message."""
    config = config_factory()
    queue = await made_queue(config)
    (queue / "BOUNCE1.eml").write_bytes(envelope_lines("a@example.test", ["far@relay.test", "gone@relay.test"])
                                        + b"Subject: stuck\r\n\r\nbody\r\n")
    record = StateRecord("BOUNCE1", "a@example.test",
                         [RecipientState("far@relay.test", attempts=1, last_error="451 4.4.1 later"),
                          RecipientState("gone@relay.test", "failed", "550 5.1.1 no such user", 1, "5.1.1")],
                         1_000.0, attempts=1, next_attempt=4e9)
    (queue / "BOUNCE1.env").write_bytes(record.to_bytes())
    again = await start_server(config)
    try:
        await again.server.bounce_now("BOUNCE1")
        await again.wait_for(lambda: len(again.drop_files()) == 1)
        [ndr] = again.drop_files()
        content = ndr.read_bytes()
        assert b"Final-Recipient: rfc822; far@relay.test" in content
        assert b"Final-Recipient: rfc822; gone@relay.test" in content
        assert not (queue / "BOUNCE1.eml").exists()
    finally:
        await again.server.stop()


@pytest.mark.expect_errors  # the Drop directory and the state record are made unwritable on purpose
async def test_local_delivery_goes_on_when_handling_its_failure_fails(tmp_path: Path, config_factory) -> None:
    """The local worker survives a failing ``on_local_failure`` (here: the state record cannot be written): the
    message stays queued, its retry comes, and later messages are still delivered."""
    import shutil
    from dataclasses import replace

    from engine.conf.config import DomainConfig

    blocked = tmp_path / "Drop elsewhere"
    base = config_factory()
    config = replace(base, domains=(DomainConfig("example.test", "default", drop_dir=str(blocked)),
                                    *base.domains[1:]))
    run = await start_server(config)
    store = run.server._queue
    assert store is not None
    try:
        store.local_retry = 3600.0  # one failure first
        blocked.rmdir()
        blocked.write_text("a file where the Drop directory should be")
        await asyncio.to_thread(_send, run.port, ["b@example.test"])
        await run.wait_for(lambda: len(store.entries) == 1)
        [entry] = store.entries.values()
        state = entry.path.with_suffix(".env")
        await run.wait_for(lambda: entry.record.recipients[0].attempts == 1 and state.exists())
        state.unlink()
        state.mkdir()  # the next failure's state record cannot be written: on_local_failure raises
        (state / "in the way").write_text("")
        store.local_retry = 0.05
        store.wake_local(entry.queue_id)
        await run.wait_for(lambda: entry.record.recipients[0].attempts >= 3)  # failed, handled badly, retried
        assert any(isinstance(e, ErrorEvent) and "handling a failed local delivery failed" in e.message
                   for e in run.events)
        shutil.rmtree(state)
        blocked.unlink()
        blocked.mkdir()
        await run.wait_for(lambda: not store.entries and len(list(blocked.glob("*.eml"))) == 1)
        await asyncio.to_thread(_send, run.port, ["c@example.test"])  # the worker still runs
        await run.wait_for(lambda: len(list(blocked.glob("*.eml"))) == 2)
    finally:
        await run.server.stop()
