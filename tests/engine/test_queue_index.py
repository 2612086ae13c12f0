"""The Queue's index: a restart reads one file, and the message files stay the truth (edited by hand, damaged
index, another boot, messages gone); compaction keeps each message's last line only."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from queue_support import queue_id, write_queued

from engine.conf.addresses import domain_of
from engine.conf.config import Config
from engine.qmgr import queue_index
from engine.qmgr.queue import QueueItem
from engine.server import VirtualServer
from engine.store.envelope import RecipientState, StateRecord

NOW = time.time()


def _bits(domain: str, attempts: int, enhanced: str) -> int:
    return 1  # what any pending recipient counts as


async def _recover(config: Config, caplog: pytest.LogCaptureFixture) -> tuple[dict[str, QueueItem], int]:
    """Every queued message after an offline start (the whole queue read back), and how many came from the index."""
    caplog.clear()
    server = VirtualServer(config)
    with caplog.at_level(logging.INFO, logger="engine.qmgr.queue"):
        await server.start(offline=True)
        try:
            page = await server.list_queue(0, 1 << 30)
        finally:
            await server.stop()
    assert not page.recovering
    found = [re.search(r"(\d+) from the index", r.getMessage()) for r in caplog.records]
    [indexed] = [int(m.group(1)) for m in found if m]
    return {item.queue_id: item for item in page.items}, indexed


def _queue(config: Config) -> Path:
    return Path(config.mailroot) / "Queue"


async def test_a_restart_reads_the_index_and_finds_the_same_queue(config_factory, caplog) -> None:
    config = config_factory()
    write_queued(_queue(config), 200, now=NOW, frozen_every=7)
    first, indexed = await _recover(config, caplog)
    assert indexed == 0 and len(first) == 200  # no index yet: read from the files, and indexed
    assert (_queue(config) / queue_index.NAME).exists()
    second, indexed = await _recover(config, caplog)
    assert indexed == 200
    assert second == first
    assert sum(item.state == "frozen" for item in second.values()) == len(range(0, 200, 7))


async def test_a_temporary_file_a_crash_left_in_the_queue_goes_at_start_one_being_written_stays(
        config_factory, caplog) -> None:
    """Queue is swept from recovery's own listing (not before listening): only files older than the start."""
    config = config_factory()
    write_queued(_queue(config), 5, now=NOW)
    left, writing = _queue(config) / ".Q1.env.0123456789ab.tmp", _queue(config) / ".Q2.eml.ba9876543210.tmp"
    for path in (left, writing):
        path.write_bytes(b"partial")
    os.utime(left, (NOW - 3600, NOW - 3600))
    os.utime(writing, (NOW + 3600, NOW + 3600))  # (as if the running engine wrote it after its start)
    items, _ = await _recover(config, caplog)
    assert len(items) == 5
    assert not left.exists() and writing.exists()


async def test_a_change_made_by_the_engine_is_in_the_index(config_factory, caplog) -> None:
    config = config_factory()
    write_queued(_queue(config), 50, now=NOW)
    await _recover(config, caplog)
    server = VirtualServer(config)
    await server.start(offline=True)
    try:
        await server.freeze(queue_id(3))  # rewrites its state record: a new line in the index
    finally:
        await server.stop()
    items, indexed = await _recover(config, caplog)
    assert indexed == 50 and items[queue_id(3)].state == "frozen"


async def test_a_state_record_replaced_by_hand_wins_over_the_index(config_factory, caplog) -> None:
    config = config_factory()
    queue = _queue(config)
    write_queued(queue, 50, now=NOW)
    await _recover(config, caplog)
    path = queue / f"{queue_id(7)}.env"
    record = StateRecord.from_bytes(path.read_bytes())
    record.frozen, record.attempts = True, 5
    temp = path.with_name("edited.tmp")
    temp.write_bytes(record.to_bytes())
    temp.replace(path)  # as any atomic writer does: a new file
    items, indexed = await _recover(config, caplog)
    assert indexed == 49
    assert items[queue_id(7)].state == "frozen" and items[queue_id(7)].attempts == 5


async def test_a_damaged_index_loses_nothing(config_factory, caplog) -> None:
    config = config_factory()
    queue = _queue(config)
    write_queued(queue, 100, now=NOW, frozen_every=3)
    expected, _ = await _recover(config, caplog)
    index = queue / queue_index.NAME
    data = bytearray(index.read_bytes())
    for at in range(len(data) // 3, len(data), len(data) // 7):
        data[at] ^= 0x55  # flipped bits in a few lines
    index.write_bytes(bytes(data[: len(data) - 40]))  # and a torn last line
    items, indexed = await _recover(config, caplog)
    assert 80 <= indexed < 100
    assert items == expected
    _, indexed = await _recover(config, caplog)
    assert indexed == 100  # the damaged ones were indexed again


async def test_an_index_from_another_boot_is_rebuilt_from_the_files(config_factory, caplog) -> None:
    config = config_factory()
    queue = _queue(config)
    write_queued(queue, 30, now=NOW)
    expected, _ = await _recover(config, caplog)
    index = queue / queue_index.NAME
    head, rest = index.read_bytes().split(b"\n", 1)
    magic, _boot, layout = head.rsplit(b" ", 2)
    index.write_bytes(b"%s %s %s\n%s" % (magic, b"another-boot", layout, rest))
    items, indexed = await _recover(config, caplog)
    assert indexed == 0 and items == expected
    assert index.read_bytes().split(b"\n", 1)[0] == queue_index.header().rstrip(b"\n")


async def test_a_message_gone_from_the_queue_is_not_brought_back_by_the_index(config_factory, caplog) -> None:
    config = config_factory()
    queue = _queue(config)
    write_queued(queue, 20, now=NOW)
    await _recover(config, caplog)
    (queue / f"{queue_id(4)}.eml").unlink()
    items, indexed = await _recover(config, caplog)
    assert queue_id(4) not in items and indexed == 19 and len(items) == 19
    assert not (queue / f"{queue_id(4)}.env").exists()  # its orphan record went too


def load(index: queue_index.QueueIndex, messages: dict[str, int],
         records: dict[str, int]) -> dict[str, tuple[bytes, int, int]]:
    """Both passes: id → (the record's fields, size, offset) of each message the index knows as on disk."""
    plan = index.plan(messages, records, sorted(messages))
    taken = index.take(plan, lambda queue_id, fields, size, offset, _: (queue_id, fields, size, offset), _bits)
    assert sorted(plan.missing + [made[0] for made in taken.entries]) == sorted(messages)
    return {queue_id: (fields, size, offset) for queue_id, fields, size, offset in taken.entries}


def test_compaction_keeps_the_last_line_of_each_live_message(tmp_path: Path) -> None:
    index = queue_index.QueueIndex(tmp_path)
    assert not index.open()  # nothing to load: started afresh

    def line(name: str, attempts: int) -> bytes:
        record = StateRecord(name, "s@example.test", [], NOW, attempts=attempts)
        return queue_index.line(name, 11, 0, 100, 10, queue_index.encode_record(record))

    index.append([line("A", 1), line("B", 1), line("A", 2), line("C", 1), line("A", 3)])
    assert index.lines == 5
    end = index.size()
    index.append([line("D", 1)])  # a message added after the compaction's look at the queue
    index.compact({"A", "C"}, end)
    assert index.lines == 3
    index.append([line("C", 2)])
    found = load(index, {"A": 11, "B": 11, "C": 11, "D": 11}, {})
    assert {name: queue_index.decode_record(fields).attempts for name, (fields, _, _) in found.items()} == {
        "A": 3, "C": 2, "D": 1}
    index.close()


ODD_TEXT = st.text(st.characters(blacklist_categories=()), max_size=30)  # controls, separators, lone surrogates


@example(sender="", error='"', address="", when=0.0, frozen=False, attempts=0)  # a quote: written as JSON
@given(sender=ODD_TEXT, error=ODD_TEXT, address=ODD_TEXT, when=st.floats(allow_nan=False, allow_infinity=False),
       frozen=st.booleans(), attempts=st.integers(0, 10**6))
@settings(max_examples=300, deadline=None)
def test_any_record_reads_back_from_its_line_as_it_was(sender: str, error: str, address: str, when: float,
                                                       frozen: bool, attempts: int) -> None:
    record = StateRecord("Q1", sender, [RecipientState(address, last_error=error, attempts=attempts),
                                        RecipientState("b@example.test", "failed", "550 5.1.1 " + error)],
                         when, frozen=frozen, last_error=error, attempts=attempts, extra={error: sender})
    text = queue_index.encode_record(record)
    with tempfile.TemporaryDirectory() as folder:
        index = queue_index.QueueIndex(Path(folder))
        index.open()
        index.append([queue_index.line("Q1", 7, 0, 10, 2, text)])
        plan = index.plan({"Q1": 7}, {}, ["Q1"])
        asked: list[tuple[str, int, str]] = []
        taken = index.take(plan, lambda *made: made, lambda *pending: asked.append(pending) or 6)
        index.close()
    assert plan.missing == [] and taken.failed == []
    ((queue_id, fields, size, offset, bits),) = taken.entries
    assert (queue_id, queue_index.decode_record(fields), size, offset) == ("Q1", record, 10, 2)
    assert taken.wakes == [(record.next_attempt, "Q1")]
    assert asked == [(domain_of(address), attempts, "")] and bits == 6  # the pending one (the other has failed)


@pytest.mark.expect_errors  # the FIFO is reported (an ErrorEvent) and quarantined
async def test_a_fifo_in_the_queue_does_not_hold_recovery(config_factory, caplog) -> None:
    config = config_factory()
    queue = _queue(config)
    write_queued(queue, 5, now=NOW)
    os.mkfifo(queue / "FIFO1.eml")  # nobody will ever write to it: opening it for reading would wait forever
    items, _ = await _recover(config, caplog)
    assert sorted(items) == [queue_id(n) for n in range(5)]
    assert stat.S_ISFIFO((queue / "corrupt" / "FIFO1.eml").lstat().st_mode)  # quarantined, not deleted


# -- the record codec of cold entries: every reader agrees with the record, bad lines cost nothing ---------

CODEC_CASES = {
    "plain": StateRecord("Q1", "a@example.test", [RecipientState("b@example.test")], NOW),
    "deferred, error shared": StateRecord(
        "Q2", "a@example.test", [RecipientState("b@example.test", last_error="451 4.7.1 later", attempts=3,
                                                enhanced="4.7.1", remote="mx.example.test")],
        NOW, attempts=3, next_attempt=NOW + 900, last_error="451 4.7.1 later", last_attempt=NOW - 60),
    "mixed recipients": StateRecord(
        "Q3", "", [RecipientState("x@one.example", "delivered"), RecipientState("y@TWO.example."),
                   RecipientState("z@three.example", "failed", "550 5.1.1 no", reported=True)],
        NOW, source="pickup", frozen=True, ret="FULL", envid="e1", extra={"k": "v"}),
    "odd strings": StateRecord("Q4", '"quoted', [RecipientState("tab\there@example.test", last_error="\x00\x1f")],
                               NOW, last_error="\ud800 lone", source="smtp"),
    "no recipients": StateRecord("Q5", "a@example.test", [], 0.0),
}


@pytest.mark.parametrize("name", sorted(CODEC_CASES))
def test_every_reader_of_an_encoded_record_agrees_with_it(name: str) -> None:
    record = CODEC_CASES[name]
    fields = queue_index.line(record.queue_id, 1, 0, 10, 2, queue_index.encode_record(record)).split(b"\x1f", 4)[4]
    fields = fields.removesuffix(b"\n")  # what the queue keeps of a line: the record's fields
    assert queue_index.decode_record(fields) == record
    for item in dataclasses.fields(StateRecord):
        if item.name != "recipients":
            assert queue_index.record_field(fields, item.name) == getattr(record, item.name), item.name
    assert queue_index.recipient_rows(fields) == [(r.address, r.status, r.attempts, r.enhanced)
                                                  for r in record.recipients]
    seen = queue_index.summary(fields)
    assert seen == queue_index.Summary(
        record.sender, tuple(r.address for r in record.recipients),
        tuple(r.address for r in record.recipients if r.status == "pending"), record.arrived, record.attempts,
        record.next_attempt, record.frozen, record.last_error, record.source)


def _index_of(tmp_path: Path, names: list[str]) -> queue_index.QueueIndex:
    index = queue_index.QueueIndex(tmp_path)
    index.open()
    index.append([queue_index.line(name, 11, 0, 100, 10, queue_index.encode_record(
        StateRecord(name, "s@example.test", [RecipientState(f"r@{name.lower()}.example")], NOW))) for name in names])
    index.close()
    return index


def _flip(data: bytes) -> bytes:
    return data.replace(b"r@b.example", b"r@B.example")  # one byte of B's line


def _truncate(data: bytes) -> bytes:
    return data[:-7]  # the last line (C's) torn by a crash


def _glue(data: bytes) -> bytes:
    first_end = data.index(b"\n", data.index(b"\n") + 1)  # (after the header) the end of A's line
    return data[:first_end - 5] + data[first_end + 1:]  # A's line torn, B's appended right after it


def _other_layout(data: bytes) -> bytes:
    payload = b"11\x1f0\x1f100\x1f10\x1fC\x1ftoo few fields"
    return data + b"%08x %s\n" % (zlib.crc32(payload), payload)  # C's newest line, checksummed


def _garbage(data: bytes) -> bytes:
    return data + b"not a line at all\n\x00\x01\n"


BAD_LINES: dict[str, tuple[Callable[[bytes], bytes], list[str]]] = {  # the spoiling → read from the files
    "a flipped byte": (_flip, ["B"]),
    "a truncated tail": (_truncate, ["C"]),
    "a torn line glued to the next": (_glue, ["A", "B"]),
    "checksummed but not of this layout": (_other_layout, ["C"]),
    "garbage": (_garbage, []),
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_a_bad_line_costs_only_its_own_message(tmp_path: Path, name: str) -> None:
    spoil, from_files = BAD_LINES[name]
    index = _index_of(tmp_path, ["A", "B", "C"])
    index.path.write_bytes(spoil(index.path.read_bytes()))
    assert index.open()  # the header is intact: the index is used, line by line
    plan = index.plan({"A": 11, "B": 11, "C": 11}, {}, ["A", "B", "C"])
    taken = index.take(plan, lambda queue_id, *_: queue_id, _bits)
    index.close()
    assert sorted(plan.missing + taken.failed) == from_files
    assert sorted(taken.entries) == sorted({"A", "B", "C"} - set(from_files))


async def test_the_counters_of_a_cold_queue_are_those_of_its_records(config_factory, caplog) -> None:
    config = config_factory()
    queue = _queue(config)
    write_queued(queue, 30, now=NOW)  # remote, deferred with 4.7.1
    write_queued(queue, 20, now=NOW, start=30, domain=config.default_domain.name)  # local: to Drop at once
    await _recover(config, caplog)  # (indexed)
    server = VirtualServer(config)
    await server.start(offline=True)
    try:
        await server.wait_recovered()
        store = server._queue  # the store's own counting, cold then decoded
        assert store is not None
        cold = store.counts()
        assert (cold.local, cold.local_retry, cold.remote, cold.remote_retry, cold.undeliverable) == (20, 20, 30, 30, 0)
        await server.delete_message(queue_id(0))  # a cold one gone (out of the tally)
        assert store.counts().remote == 29
        for entry in list(store.entries.values())[::2]:
            assert entry.record.queue_id == entry.queue_id  # decoded (and kept) from now on: half of them
        assert store.counts() == replace(cold, remote=29, remote_retry=29)
        await server.delete_message(queue_id(2))  # a decoded one gone
        for entry in store.entries.values():
            assert entry.record.queue_id == entry.queue_id
        assert store.counts() == replace(cold, remote=28, remote_retry=28)
    finally:
        await server.stop()
