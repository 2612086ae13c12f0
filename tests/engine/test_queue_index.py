"""The Queue's index: a restart reads one file, and the message files stay the truth (edited by hand, damaged
index, another boot, messages gone); compaction keeps each message's last line only."""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from queue_support import queue_id, write_queued

from engine.conf.config import Config
from engine.qmgr import queue_index
from engine.qmgr.queue import QueueItem
from engine.server import VirtualServer
from engine.store.envelope import RecipientState, StateRecord

NOW = time.time()


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
    found = index.load({"A": 11, "B": 11, "C": 11, "D": 11}, {})
    assert {name: queue_index.decode_record(known.fields).attempts for name, known in found.items()} == {
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
        found = index.load({"Q1": 7}, {})
        index.close()
    (known,) = found.values()
    assert (list(found), queue_index.decode_record(known.fields), known.size, known.offset) == (["Q1"], record, 10, 2)
    pending = [r.address.rpartition("@")[2].lower().removesuffix(".") for r in record.recipients
               if r.status == "pending"]
    assert (known.next_attempt, known.pending_domains) == (record.next_attempt, tuple(pending))


@pytest.mark.expect_errors  # the FIFO is reported (an ErrorEvent) and quarantined
async def test_a_fifo_in_the_queue_does_not_hold_recovery(config_factory, caplog) -> None:
    config = config_factory()
    queue = _queue(config)
    write_queued(queue, 5, now=NOW)
    os.mkfifo(queue / "FIFO1.eml")  # nobody will ever write to it: opening it for reading would wait forever
    items, _ = await _recover(config, caplog)
    assert sorted(items) == [queue_id(n) for n in range(5)]
    assert stat.S_ISFIFO((queue / "corrupt" / "FIFO1.eml").lstat().st_mode)  # quarantined, not deleted
