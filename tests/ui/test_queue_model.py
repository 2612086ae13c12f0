"""The Queue model: qtmodeltester, 100,000 synthetic messages (pages, sort, filter), events without resets, and the
snapshot invariant (no resurrection, no stale overwrite, removes only what the snapshot could see)."""

from __future__ import annotations

import random
from dataclasses import replace

from PySide6.QtCore import QPersistentModelIndex, Qt
from pytestqt.modeltest import ModelTester
from test_models import Signals

from engine.events import MessageDropped, MessageQueued, MessageRemoved, QueueChanged
from engine.qmgr.queue import QueueItem
from ui.models.queue import COLUMN, QueueFilter, QueueModel, countdown
from ui.models.table import KEY_ROLE
from ui.units import moment, span

NOW = 1_800_000_000.0


def item(number: int, *, state: str = "queued", attempts: int = 0, domain: str | None = None,
         arrived: float | None = None, error: str = "", pending: tuple[str, ...] | None = None) -> QueueItem:
    rcpts = (f"user{number}@{domain or f'dom{number % 37}.example'}",)
    return QueueItem(f"Q{number:08d}", f"sender{number % 101}@example.test", rcpts,
                     rcpts if pending is None else pending, 1000 + number % 5000,
                     NOW - number * 7.0 if arrived is None else arrived, attempts,
                     NOW + (number % 600) if attempts else 0.0, state, error, "smtp")


def loaded(items: list[QueueItem]) -> QueueModel:
    model = QueueModel(clock=lambda: NOW)
    generation = model.snapshot_started()
    model.apply_snapshot(generation, items, complete=True)
    return model


def ids(model: QueueModel) -> list[str]:
    return [model.data(model.index(row, 0), KEY_ROLE) for row in range(model.rowCount())]


def test_modeltester_and_columns(qtmodeltester: ModelTester) -> None:
    model = loaded([item(1), item(2, attempts=3, error="451 4.4.1 Connection refused"), item(3, state="frozen"),
                    item(4, state="active", attempts=1)])
    qtmodeltester.check(model)
    assert model.rowCount() == 4
    row = model.row_of("Q00000002")
    assert model.data(model.index(row, COLUMN["State"])) == "Deferred"
    assert model.data(model.index(row, COLUMN["Last Error"])) == "451 4.4.1 Connection refused"
    assert model.data(model.index(row, COLUMN["Attempts"])) == "3"
    assert model.data(model.index(model.row_of("Q00000003"), COLUMN["Next Retry"])) == "Held (frozen)"
    assert model.data(model.index(model.row_of("Q00000001"), COLUMN["Next Retry"])) == "Due"
    assert model.data(model.index(model.row_of("Q00000004"), COLUMN["State"])) == "Active"
    assert model.data(model.index(0, COLUMN["Target Domains"])) == "dom4.example"  # oldest first: Q4
    assert ids(model) == ["Q00000004", "Q00000003", "Q00000002", "Q00000001"]


def test_countdown_and_span() -> None:
    deferred = item(5, attempts=1)
    assert countdown(deferred, deferred.next_attempt - 125) == "in 2 min"  # not "2:05", which reads as a time
    assert countdown(deferred, deferred.next_attempt - 3725) == "in 1 h 02 min"
    assert countdown(deferred, deferred.next_attempt - 200_000) == "in 2 d 7 h"
    assert span(59) == "59 s" and span(3599) == "59 min" and span(3660) == "1 h 01 min"


def test_tooltips_give_the_moment_and_the_exact_size() -> None:
    held = replace(item(3), etrn_held=("dom3.example",))
    model = loaded([item(2, attempts=1), held])
    row = model.row_of("Q00000002")

    def tip(column: str, at: int = row) -> str:
        return str(model.data(model.index(at, COLUMN[column]), Qt.ItemDataRole.ToolTipRole))

    assert model.data(model.index(row, COLUMN["Next Retry"])) == "in 2 s"
    assert tip("Next Retry") == f"Next attempt {moment(NOW + 2)}"  # the countdown's absolute time
    assert tip("Age") == f"Arrived {moment(NOW - 14)}"
    assert (model.data(model.index(row, COLUMN["Size"])), tip("Size")) == ("1002 bytes", "1,002 bytes")
    assert model.data(model.index(model.row_of("Q00000003"), COLUMN["Next Retry"])) == \
        "Waiting for ETRN from dom3.example"
    assert "does not expire" in tip("Next Retry", model.row_of("Q00000003"))


def test_hundred_thousand_messages_first_page_then_the_rest_sort_and_filter(qtmodeltester: ModelTester) -> None:
    every = [item(n, attempts=n % 4, state="frozen" if n % 50 == 0 else "queued") for n in range(100_000)]
    random.Random(7).shuffle(every)
    model = QueueModel(clock=lambda: NOW)
    signals = Signals(model)
    first = model.snapshot_started()
    page = sorted(every, key=lambda i: i.arrived)[:200]  # what list_queue(0, 200, "age") gives
    model.apply_snapshot(first, page, complete=False)
    assert model.rowCount() == 200
    assert model.id_at(0) == "Q00099999"  # the oldest message is on top already
    rest = model.snapshot_started()
    model.apply_snapshot(rest, every, complete=True)  # how long it takes is bench/queue_view.py's figure
    assert model.rowCount() == 100_000 and model.total == 100_000
    assert signals.resets == 2  # the first page into the empty model, then the rest in bulk: a reset each
    model.sort(COLUMN["Size"], Qt.SortOrder.AscendingOrder)
    sizes = [model.get(model.id_at(row) or "").size for row in range(0, 100_000, 997)]  # type: ignore[union-attr]
    assert sizes == sorted(sizes)
    model.sort(COLUMN["Size"], Qt.SortOrder.DescendingOrder)
    assert model.get(model.id_at(0) or "").size == 5999  # type: ignore[union-attr]
    model.sort(COLUMN["Sender"], Qt.SortOrder.AscendingOrder)
    senders = [model.data(model.index(row, COLUMN["Sender"])) for row in range(0, 100_000, 1013)]
    assert senders == sorted(senders, key=str.casefold)
    model.set_filter(QueueFilter(domain="dom5.example"))
    assert model.rowCount() == len([i for i in every if i.recipients[0].endswith("@dom5.example")])
    model.set_filter(QueueFilter(text="user4242@", state="deferred"))
    assert ids(model) == ["Q00004242"]
    model.set_filter(QueueFilter())
    assert model.rowCount() == 100_000
    model.set_filter(QueueFilter(state="frozen"))
    assert model.rowCount() == 2000
    qtmodeltester.check(model)  # on 2,000 rows: the checker walks every cell


def test_events_insert_update_remove_without_reset(qtmodeltester: ModelTester) -> None:
    model = loaded([item(n) for n in range(1, 50)])
    qtmodeltester.check(model)
    signals = Signals(model)
    model.apply_events([MessageQueued("NEW1", "a@example.test", ("x@far.example",), 321, "smtp", at=NOW + 5)])
    assert model.get("NEW1") is not None and model.row_of("NEW1") == model.rowCount() - 1  # the youngest: last
    model.apply_events([QueueChanged("NEW1", "frozen")])
    assert model.get("NEW1").state == "frozen"  # type: ignore[union-attr]
    refetch = model.apply_events([QueueChanged("Q00000003", "attempted"), QueueChanged("NEW1", "thawed")])
    assert refetch == {"Q00000003"} and model.get("NEW1").state == "queued"  # type: ignore[union-attr]
    model.apply_events([MessageRemoved("Q00000010", "delivered")])
    assert model.get("Q00000010") is None
    # a message all of whose recipients were local: queued and dropped in one batch, never a row
    model.apply_events([MessageQueued("LOCAL", "a@example.test", ("b@example.test",), 10, "smtp"),
                        MessageDropped("LOCAL", "/Drop/LOCAL.eml", ("b@example.test",))])
    assert model.get("LOCAL") is None
    two = item(60, pending=("a@example.test", "b@far.example"))
    model.apply_snapshot(model.snapshot_started(), [*model.items(), two], complete=True)
    model.apply_events([MessageDropped("Q00000060", "/Drop/Q60.eml", ("a@example.test",))])
    assert model.get("Q00000060").pending == ("b@far.example",)  # type: ignore[union-attr]
    qtmodeltester.check(model)
    assert signals.resets == 0
    assert (signals.inserted, signals.removed) == (2, 1)


def test_a_changed_sort_key_moves_the_row_and_keeps_it_selected(qtmodeltester: ModelTester) -> None:
    model = loaded([item(n, attempts=1) for n in range(1, 20)])
    qtmodeltester.check(model)
    model.sort(COLUMN["Next Retry"], Qt.SortOrder.AscendingOrder)
    target = "Q00000015"
    persistent = QPersistentModelIndex(model.index(model.row_of(target), 0))
    model.apply_events([QueueChanged(target, "retry scheduled")])
    assert model.row_of(target) == 0  # due now: first
    assert model.data(model.index(0, COLUMN["Next Retry"])) == "Due"
    assert persistent.isValid() and persistent.row() == 0  # a row move: the selection follows it
    persistent = QPersistentModelIndex(model.index(model.row_of("Q00000003"), 0))
    model.sort(COLUMN["Queue ID"], Qt.SortOrder.DescendingOrder)
    assert persistent.isValid() and model.id_at(persistent.row()) == "Q00000003"  # sorting keeps it
    for number in (2, 9, 17):  # moves in a descending view
        model.apply_events([QueueChanged(f"Q{number:08d}", "frozen")])
    model.sort(COLUMN["State"], Qt.SortOrder.DescendingOrder)
    model.apply_events([QueueChanged("Q00000009", "thawed")])
    assert [model.state_of(model.id_at(r) or "") for r in range(3)] == ["frozen", "frozen", "deferred"]
    assert model.row_of("Q00000009") > 2


def test_snapshots_never_resurrect_overwrite_or_remove_unseen() -> None:
    model = loaded([item(1), item(2), item(3)])
    generation = model.snapshot_started()
    # while the snapshot is on its way: 1 is removed, 2 frozen, 4 arrives
    model.apply_events([MessageRemoved("Q00000001", "delivered"), QueueChanged("Q00000002", "frozen"),
                        MessageQueued("Q00000004", "s@x.test", ("r@far.example",), 5, "smtp", at=NOW)])
    newer = model.apply_snapshot(generation, [item(1), item(2), item(3), item(5)], complete=True)
    assert model.get("Q00000001") is None  # not resurrected
    assert model.get("Q00000002").state == "frozen"  # type: ignore[union-attr]  # not overwritten
    assert newer == {"Q00000002"}  # ... but asked for again
    assert model.get("Q00000004") is not None  # born after the snapshot was asked for: kept
    assert model.get("Q00000005") is not None
    later = model.snapshot_started()
    model.apply_snapshot(later, [item(2, state="frozen"), item(4)], complete=True)
    assert sorted(i.queue_id for i in model.items()) == ["Q00000002", "Q00000004"]


def test_bulk_change_is_one_reset() -> None:
    model = loaded([item(n) for n in range(5000)])
    signals = Signals(model)
    model.apply_events([MessageRemoved(f"Q{n:08d}", "deleted") for n in range(0, 5000, 2)])
    assert model.rowCount() == 2500 and signals.resets == 1 and signals.removed == 0


def test_events_before_any_load_are_left_to_the_first_snapshot() -> None:
    model = QueueModel(clock=lambda: NOW)
    assert model.apply_events([MessageQueued("X", "a@b.test", ("c@d.test",), 1, "smtp")]) == set()
    assert model.rowCount() == 0


def test_tick_is_one_data_changed() -> None:
    model = loaded([item(n, attempts=1) for n in range(300)])
    signals = Signals(model)
    model.tick()
    assert signals.changed == 1


def test_subjects_are_shown_and_searched() -> None:
    model = loaded([item(1), item(2)])
    model.set_subjects({"Q00000001": "Quarterly report", "Q00000002": "Lunch"})
    assert model.data(model.index(model.row_of("Q00000001"), COLUMN["Subject"])) == "Quarterly report"
    model.set_filter(QueueFilter(text="quarterly"))
    assert ids(model) == ["Q00000001"]


def test_pages_by_id_remove_only_what_their_range_could_see() -> None:
    model = loaded([item(n) for n in range(1, 7)])
    model.apply_events([MessageQueued("Q00000009", "a@b.test", ("c@d.test",), 1, "smtp")])
    first = model.snapshot_started()  # the page (, Q00000003]: Q00000002 left the queue meanwhile
    model.apply_snapshot(first, [item(1), item(3)], complete=False, span=("", "Q00000003"))
    assert model.get("Q00000002") is None and model.get("Q00000004") is not None
    last = model.snapshot_started()  # the last page (Q00000003, end): Q00000005 and Q00000009 are gone
    model.apply_snapshot(last, [item(4), item(6)], complete=False, span=("Q00000003", None))
    assert sorted(queue_id for queue_id in ids(model)) == ["Q00000001", "Q00000003", "Q00000004", "Q00000006"]


def test_subjects_are_asked_for_painted_rows_and_for_all_when_searched() -> None:
    model = loaded([item(n) for n in range(1, 5)])
    asked: list[tuple[list[str], bool]] = []
    model.subjects_wanted = lambda queue_ids, every: asked.append((list(queue_ids), every))
    model.data(model.index(model.row_of("Q00000002"), COLUMN["Age"]))
    assert asked == [(["Q00000002"], False)]
    model.set_subjects({"Q00000002": "Invoice"})
    asked.clear()
    model.data(model.index(model.row_of("Q00000002"), COLUMN["Subject"]))
    assert asked == []  # read: not asked again
    model.set_filter(QueueFilter(text="lunch"))
    assert asked == [(["Q00000001", "Q00000003", "Q00000004"], True)] and model.rowCount() == 0
    model.set_subjects({"Q00000003": "Lunch on Friday", "Q00000004": "Report"})  # the search finds it as it comes
    assert ids(model) == ["Q00000003"]


def test_a_scanned_message_queued_event_brings_its_subject() -> None:
    model = loaded([item(1)])
    model.subjects_wanted = lambda queue_ids, every: None
    model.apply_events([MessageQueued("Q00000009", "a@b.test", ("c@d.test",), 1, "smtp", subject="Hello",
                                      scanned=True),
                        MessageQueued("Q00000010", "a@b.test", ("c@d.test",), 1, "smtp")])
    assert model.subject_of("Q00000009") == "Hello" and not model.needs_subject("Q00000009")
    assert model.needs_subject("Q00000010")  # not scanned: read when painted
