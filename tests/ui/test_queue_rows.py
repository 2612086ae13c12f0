"""The Queue model's compact rows: an item goes in and comes back out the same; removal fills the slot with the
last row; text columns store a repeated text once and rewrite their buffer after many changes."""

from __future__ import annotations

from engine.qmgr.queue import QueueItem
from ui.models.queue_rows import QueueRows, TextColumn


def item(number: int, **changes: object) -> QueueItem:
    rcpts = (f"anna.{number}@Contoso.Example", f"ben.{number}@fabrikam.example") if number % 3 == 0 else \
        (f"chen.{number}@contoso.example",)
    fields: dict[str, object] = dict(queue_id=f"Q{number:06d}", sender=f"s{number % 4}@example.test",
                                     recipients=rcpts, pending=rcpts, size=100 + number, arrived=1000.0 + number,
                                     attempts=number % 5, next_attempt=2000.0 + number, state="queued",
                                     last_error=f"451 4.7.1 try later ({number}) — ünïcode" if number % 5 else "",
                                     source="smtp")
    fields.update(changes)
    return QueueItem(**fields)  # type: ignore[arg-type]


def test_items_round_trip_and_share_repeated_strings() -> None:
    rows = QueueRows()
    items = [item(n) for n in range(30)]
    items.append(item(30, pending=("anna.30@Contoso.Example",), state="frozen", etrn_held=("fabrikam.example",)))
    items.append(item(31, state="active", pending=()))
    for one in items:
        assert rows.put(one)
    assert [rows.get(one.queue_id) for one in items] == items
    assert rows.domains[rows.slots["Q000003"]] == ("contoso.example", "fabrikam.example")  # lower-cased, in order
    assert rows.domains[rows.slots["Q000030"]] == ("contoso.example",)  # the pending ones only
    assert rows.domains[rows.slots["Q000001"]] is rows.domains[rows.slots["Q000002"]]  # one tuple for all
    assert rows.sender[rows.slots["Q000001"]] is rows.sender[rows.slots["Q000005"]]
    assert [rows.state_of(rows.slots[i]) for i in ("Q000000", "Q000001", "Q000030", "Q000031")] == \
        ["queued", "deferred", "frozen", "active"]
    assert rows.first_shown(rows.slots["Q000030"]) == "anna.30@Contoso.Example"
    assert rows.shown_count(rows.slots["Q000003"]) == 2 and rows.shown_count(rows.slots["Q000030"]) == 1
    assert not rows.put(item(7, attempts=4, last_error="550 no"))  # a change, not a new row
    assert rows.get("Q000007") == item(7, attempts=4, last_error="550 no")


def test_removal_moves_the_last_row_into_the_hole_and_keeps_subjects() -> None:
    rows = QueueRows()
    for number in range(5):
        rows.put(item(number))
        rows.set_subject(f"Q{number:06d}", f"subject {number}")
    assert rows.remove("Q000001") and not rows.remove("Q000001")
    assert rows.ids[1] == "Q000004" and rows.slots["Q000004"] == 1 and len(rows) == 4
    assert [rows.get(f"Q{n:06d}") for n in (0, 2, 3, 4)] == [item(n) for n in (0, 2, 3, 4)]
    assert rows.subject_of(rows.slots["Q000004"]) == "subject 4"
    rows.put(item(9))
    assert rows.subject_of(rows.slots["Q000009"]) is None  # not read yet
    assert rows.set_subject("Q000009", "") and not rows.set_subject("Q000009", "")
    assert rows.subject_of(rows.slots["Q000009"]) == ""
    assert next(iter(rows.shape_pairs())) == (("contoso.example", "fabrikam.example"), 1000.0)


def test_text_column_shares_equal_texts_and_rewrites_its_buffer_after_many_changes() -> None:
    column = TextColumn()
    for number in range(1500):
        column.append("451 4.7.1 Greylisted" if number % 2 else f"text {number}")
    assert column.get(1) == column.get(1499) == "451 4.7.1 Greylisted" and column.get(2) == "text 2"
    size = column.buffer_size
    assert size < 1500 * 10  # the repeated text is stored once
    for round_ in range(1600):  # more changes than slots: the buffer is rewritten
        column.set(round_ % 1500, f"changed {round_}")
    column.pop_into(0)  # the last slot's text moves into slot 0
    assert column.get(0) == "changed 1499" and len(column) == 1499
    assert column.get(1) == "changed 1501" and column.get(1498) == "changed 1498"
    assert column.buffer_size < 3 * 1499 * 14
