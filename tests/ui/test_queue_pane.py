"""The Queue pane (filter bar, selection kept across resets, chart clicks), the queue shape, the detail dialog's
models, and the Badmail / Drop / Pickup models — without an engine (the real one is in tests/app)."""

from __future__ import annotations

import time
from dataclasses import replace

from conftest import QLoop, Recorder
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QDialogButtonBox, QToolTip
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot
from test_queue_model import NOW, item, loaded

from engine.admin.mailroot_items import DropItem
from engine.bounce.badmail import BadmailItem
from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.events import MessageRemoved
from engine.qmgr.queue import QueueDetail, QueueItem, RecipientDetail
from ui.columns import ColumnsDialog, header_menu
from ui.models.folders import BadmailModel, DropModel
from ui.models.queue import COLUMN
from ui.models.queue_shape import AGE_BUCKETS, OTHER, bucket_of, bucket_range, queue_shape
from ui.pickup_drop import PickupResultsModel, PickupRow, PreviewDialog
from ui.queue_detail import QueueDetailDialog, recipient_status
from ui.queue_ops import domain_choices
from ui.queue_pane import QueuePane
from ui.queue_preview import HEAD_BYTES, HEAD_LINES, header_start
from ui.tasks import TaskRunner
from ui.views import elided_tooltip


def pane_with(qtbot: QtBot, count: int) -> QueuePane:
    pane = QueuePane(loaded([item(n, attempts=n % 3, state="frozen" if n % 10 == 0 else "queued",
                                  domain="busy.example" if n % 2 else None) for n in range(count)]))
    qtbot.addWidget(pane)
    pane.resize(1000, 600)
    pane.show()
    return pane


def test_filter_bar_search_state_domain_and_show_all(qtbot: QtBot) -> None:
    pane = pane_with(qtbot, 200)
    assert pane.count_label.text() == "200 messages" and not pane.clear_button.isEnabled()
    pane.search.setText("user42@")
    qtbot.waitUntil(lambda: pane.model.rowCount() == 1)  # after the typing pause
    assert pane.count_label.text() == "1 of 200 messages"
    pane.search.clear()
    pane.state_box.setCurrentIndex(pane.state_box.findData("frozen"))
    assert pane.model.rowCount() == 20
    pane.domain_box.setEditText("busy.example")
    pane.apply_filter()
    assert pane.model.rowCount() == 0  # frozen ones are the even numbers, busy.example the odd ones
    pane.clear_filter()
    assert pane.model.rowCount() == 200 and pane.state_box.currentIndex() == 0
    pane._fill_domains()
    assert pane.domain_box.itemText(0) == "busy.example (100)"


def test_selection_survives_a_filter_and_a_bulk_reset(qtbot: QtBot) -> None:
    pane = pane_with(qtbot, 3000)
    keep = ["Q00000011", "Q00000013", "Q00000015"]
    pane.select_keys(keep)
    assert sorted(pane.selected_keys()) == keep
    pane.domain_box.setEditText("busy.example")
    pane.apply_filter()  # a reset
    assert sorted(pane.selected_keys()) == keep
    pane.model.apply_events([MessageRemoved(f"Q{n:08d}", "deleted") for n in range(0, 3000, 2)])  # bulk: a reset
    assert sorted(pane.selected_keys()) == keep


def test_sorting_by_a_header_click_and_the_default_order(qtbot: QtBot) -> None:
    pane = pane_with(qtbot, 50)
    header = pane.detail.header()
    assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (COLUMN["Age"],
                                                                            Qt.SortOrder.DescendingOrder)
    assert pane.model.id_at(0) == "Q00000049"  # the oldest first
    pane.detail.sortByColumn(COLUMN["Size"], Qt.SortOrder.AscendingOrder)
    sizes = [pane.model.get(pane.model.id_at(r)).size for r in range(50)]  # type: ignore[union-attr, arg-type]
    assert sizes == sorted(sizes)


def test_chart_shows_the_shape_and_a_click_filters(qtbot: QtBot) -> None:
    pane = pane_with(qtbot, 120)
    pane.refresh_chart(force=True)
    shape = pane.chart.shape
    assert shape is not None and shape.total == 120 and shape.domains[0] == "busy.example"
    assert pane.chart.series.count() == len(AGE_BUCKETS)
    bucket = bucket_of(time.time() - pane.model.get("Q00000001").arrived)  # type: ignore[union-attr]
    top = len(pane.chart._categories) - 1  # the busiest domain is drawn on top
    pane.chart.series.barSets()[bucket].clicked.emit(top)
    assert pane.domain_box.currentText() == "busy.example"
    assert pane.age_button.isVisible() and AGE_BUCKETS[bucket][1] in pane.age_button.text()
    assert 0 < pane.model.rowCount() <= 60
    pane.age_button.click()
    assert pane.model.rowCount() == 60 and not pane.age_button.isVisible()


def test_queue_shape() -> None:
    now = 100_000.0
    messages = [(("a.example",), now - 60), (("a.example", "b.example"), now - 7200), (("c.example",), now - 1)]
    shape = queue_shape(messages, now, top=2)
    assert shape.domains == ("a.example", "b.example", OTHER) and shape.total == 3
    assert shape.counts[bucket_of(60)][0] == 1 and shape.counts[bucket_of(7200)][0] == 1
    assert shape.counts[bucket_of(1)][2] == 1  # c.example folded into the rest
    assert shape.domain_total(0) == 2
    assert bucket_range(0) == (0.0, 300.0) and bucket_range(len(AGE_BUCKETS) - 1)[1] == float("inf")


def test_detail_dialog_models(qtbot: QtBot, qtmodeltester: ModelTester) -> None:
    config = Config(server=ServerConfig(), domains=(DomainConfig("example.test", "default"),))
    deferred = item(3, attempts=2, error="451 4.7.1 Greylisted")
    detail = QueueDetail(deferred, (
        RecipientDetail("user3@dom3.example", "pending", "451 4.7.1 Greylisted", "4.7.1", "mx.dom3.example", 2),
        RecipientDetail("done@dom3.example", "delivered", "", "2.0.0", "mx.dom3.example", 1),
        RecipientDetail("gone@dom3.example", "failed", "550 5.1.1 No such user", "5.1.1", "mx.dom3.example", 1),
    ), "=== attempt 1\n10:00:00 <<< 451 4.7.1 Greylisted\n", NOW - 600, False)
    dialog = QueueDetailDialog(deferred.queue_id, lambda: config)
    qtbot.addWidget(dialog)
    dialog.show_detail(detail, now=NOW)
    qtmodeltester.check(dialog.recipients)
    qtmodeltester.check(dialog.schedule)
    assert [recipient_status(r) for r in detail.recipients] == ["Deferred", "Delivered", "Failed"]
    events = [dialog.schedule.data(dialog.schedule.index(r, 2)) for r in range(dialog.schedule.rowCount())]
    assert events[0] == "Attempt 3" and events[-1].startswith("Non-delivery report")
    assert dialog.labels["State"].text() == "Deferred"
    assert dialog.action_buttons["freeze"].isEnabled() and not dialog.action_buttons["thaw"].isEnabled()
    dialog.show_gone("delivered")
    assert not dialog.action_buttons["retry"].isEnabled()


def test_folder_models(qtmodeltester: ModelTester) -> None:
    badmail = BadmailModel()
    generation = badmail.snapshot_started()
    badmail.gone(["B1"])  # deleted while the listing was on its way
    badmail.arrived([BadmailItem("B3", "new", "", (), "pickup", 3.0)])  # arrived meanwhile
    badmail.apply_snapshot(generation, [BadmailItem("B1", "r", "a@x", ("b@y",), "delivery", 1.0),
                                        BadmailItem("B2", "r2", "", ("c@y", "d@y"), "pickup", 2.0)])
    qtmodeltester.check(badmail)
    assert sorted(row.name for row in badmail.rows()) == ["B2", "B3"]
    titles = [column.title for column in badmail.columns]
    assert badmail.data(badmail.index(badmail.row_of("B2"), titles.index("Recipients"))) == "c@y (+1)"
    assert badmail.data(badmail.index(badmail.row_of("B2"), titles.index("Source"))) == "Pickup directory"
    drop = DropModel()
    drop.apply_snapshot(drop.snapshot_started(), [DropItem("D1.eml", "a@x", ("b@y",), "Hi", 1234, 5.0),
                                                  DropItem("D1.eml", "a@x", ("c@z",), "Hi", 99, 5.0, "z.test")])
    qtmodeltester.check(drop)
    assert drop.rowCount() == 2  # one message copied into two domains' Drops: two rows, keyed domain/file
    assert drop.data(drop.index(drop.row_of("D1.eml"), 5)) == "1.2 KB" and drop.loaded
    assert drop.data(drop.index(drop.row_of("z.test/D1.eml"), 3)) == "z.test"


def test_pickup_results_and_preview(qtbot: QtBot, qtmodeltester: ModelTester) -> None:
    rows = [PickupRow("1", "a.eml", 120, "ready", sender="s@x", recipients=("r@y",)),
            PickupRow("2", "b.txt", 9, "problem", detail="no From: header")]
    results = PickupResultsModel()
    results.sync(rows)
    qtmodeltester.check(results)
    results.change("1", status="queued", queue_id="Q1")
    assert results.data(results.index(0, 2)) == "Queued" and results.data(results.index(0, 3)) == "Q1"
    dialog = PreviewDialog(rows)
    qtbot.addWidget(dialog)
    assert dialog.ok.text() == "Put 1 into Pickup" and dialog.ok.isEnabled()
    all_bad = PreviewDialog(rows[1:])
    qtbot.addWidget(all_bad)
    assert not all_bad.ok.isEnabled()


def test_first_columns_visible_at_default_size_last_error_stretches_and_columns_can_be_chosen(
        qtbot: QtBot) -> None:
    pane = pane_with(qtbot, 30)
    pane.resize(760, 600)  # the default window's result pane
    header = pane.detail.header()
    qtbot.waitUntil(lambda: header.sectionSize(COLUMN["Last Error"]) >= 300)
    first = [header.logicalIndex(v) for v in range(5)]
    assert [pane.model.columns[i].title for i in first] == [
        "State", "Next Retry", "Attempts", "Target Domains", "Last Error"]
    right_edge = header.sectionPosition(COLUMN["Last Error"]) + header.sectionSize(COLUMN["Last Error"])
    assert header.sectionPosition(COLUMN["Last Error"]) < pane.detail.viewport().width() and right_edge >= 300
    pane.resize(2400, 600)
    others = sum(header.sectionSize(i) for i in range(header.count()) if i != COLUMN["Last Error"])
    qtbot.waitUntil(lambda: header.sectionSize(COLUMN["Last Error"]) == pane.detail.viewport().width() - others)
    menu = header_menu(header)
    [queue_id] = [a for a in menu.actions() if a.text() == "Queue ID"]
    queue_id.setChecked(False)  # header context menu
    assert header.isSectionHidden(COLUMN["Queue ID"])
    dialog = ColumnsDialog(header)  # View ▸ Add/Remove Columns…
    for row in range(dialog.list.count()):
        dialog.list.item(row).setCheckState(Qt.CheckState.Unchecked)
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()  # not none at all
    dialog.list.item(0).setCheckState(Qt.CheckState.Checked)
    dialog.list.item(dialog.list.count() - 1).setCheckState(Qt.CheckState.Checked)
    dialog.accept()
    assert header.count() - header.hiddenSectionCount() == 2
    assert not header.isSectionHidden(COLUMN["State"]) and not header.isSectionHidden(COLUMN["Queue ID"])


def test_next_retry_fits_its_first_rows(qtbot: QtBot) -> None:
    held = replace(item(1, domain="sales.fabrikam.example"), etrn_held=("sales.fabrikam.example",))
    pane = QueuePane(loaded([held, item(2)]))
    qtbot.addWidget(pane)
    pane.resize(1000, 600)
    pane.show()
    header = pane.detail.header()
    metrics = pane.detail.fontMetrics()
    waiting = metrics.horizontalAdvance("Waiting for ETRN from sales.fabrikam.example")
    qtbot.waitUntil(lambda: header.sectionSize(COLUMN["Next Retry"]) >= waiting)  # not "Waiting for E…"
    narrow = QueuePane(loaded([held, item(2)]))  # beside a wide tree or the preview: Last Error keeps its room
    qtbot.addWidget(narrow)
    narrow.resize(800, 600)
    narrow.show()
    qtbot.waitUntil(lambda: narrow.detail.header().sectionSize(COLUMN["Next Retry"]) > 95)
    last_error = narrow.detail.header().sectionPosition(COLUMN["Last Error"])
    assert last_error + narrow.model.columns[COLUMN["Last Error"]].width <= narrow.detail.viewport().width()
    plain = pane_with(qtbot, 30)  # countdowns only: the usual narrow columns, Last Error keeps the room
    qtbot.wait(50)
    assert plain.detail.header().sectionSize(COLUMN["Next Retry"]) == plain.model.columns[COLUMN["Next Retry"]].width


def test_retry_domain_lists_each_domain_with_its_count() -> None:
    assert domain_choices(["contoso.example", "fabrikam.example", "new.example"],
                          {"contoso.example": 1234, "fabrikam.example": 1}) == [
        "contoso.example (1,234 messages)", "fabrikam.example (1 message)", "new.example"]


def test_an_elided_cell_shows_its_whole_text_as_tooltip(qtbot: QtBot) -> None:
    pane = pane_with(qtbot, 3)
    view = pane.detail
    view.setColumnWidth(COLUMN["Target Domains"], 30)
    index = pane.model.index(0, COLUMN["Target Domains"])
    point = view.visualRect(index).center()
    event = QHelpEvent(QEvent.Type.ToolTip, point, view.viewport().mapToGlobal(point))
    assert elided_tooltip(view, event)
    assert QToolTip.text() == pane.model.data(index)
    view.setColumnWidth(COLUMN["Target Domains"], 400)  # it fits: no tooltip of its own
    assert not elided_tooltip(view, QHelpEvent(QEvent.Type.ToolTip, view.visualRect(index).center(),
                                               view.viewport().mapToGlobal(point)))


class CountingQueue:
    """The two calls the preview makes, counted (the real engine's are in tests/app/test_manager_queue.py)."""

    def __init__(self, model_items: dict[str, QueueItem]) -> None:
        self.items = model_items
        self.read: list[str] = []
        self.limits: list[int] = []

    async def queue_detail(self, queue_id: str) -> QueueDetail:
        self.read.append(queue_id)
        return QueueDetail(self.items[queue_id], (), "", 0.0, False)

    async def read_queued(self, queue_id: str, limit: int = 0) -> bytes:
        self.limits.append(limit)
        return f"Subject: message {queue_id}\r\nX-Long: {'x' * 300}\r\n\r\nthe body".encode()[:limit or None]


def test_preview_reads_only_where_the_selection_stops(qtbot: QtBot, qloop: QLoop, messages: Recorder) -> None:
    items = [item(n, attempts=1, error="451 4.7.1 try later") for n in range(20_000)]
    pane = QueuePane(loaded(items))
    qtbot.addWidget(pane)
    pane.resize(1000, 600)
    pane.show()
    engine = CountingQueue({i.queue_id: i for i in items})
    runner = TaskRunner(messages)
    pane.set_source(engine, runner)  # type: ignore[arg-type]
    pane.select_key(items[0].queue_id)
    assert engine.read == [] and pane.preview.isHidden()  # no pane, no reading
    pane.show_preview(True)
    qloop.run(qloop.until(lambda: "Subject: message Q00000000" in pane.preview.browser.toPlainText()))
    assert engine.read == ["Q00000000"]
    for number in range(1, 200):  # arrowing down 199 rows: only where it stops is read
        pane.select_key(items[number].queue_id)
    qloop.run(qloop.until(lambda: "Subject: message Q00000199" in pane.preview.browser.toPlainText()))
    qloop.run(runner.drain())
    assert engine.read == ["Q00000000", "Q00000199"]
    assert engine.limits == [HEAD_BYTES + 1] * 2  # the header only: never the whole message
    text = pane.preview.browser.toPlainText()
    assert "451 4.7.1 try later" in text and "the body" not in text and "x" * 241 not in text
    pane.detail.selectionModel().clearSelection()
    qtbot.waitUntil(lambda: "Select a message" in pane.preview.browser.toPlainText())


def test_header_start_stops_at_the_body_and_cuts_long_headers() -> None:
    message = b"".join(b"Received: from hop%d\r\n" % n for n in range(40)) + b"Subject: s\r\n\r\nbody\r\n"
    text = header_start(message)
    assert text.splitlines()[0] == "Received: from hop0" and len(text.splitlines()) == HEAD_LINES + 1
    assert text.endswith("\n…") and "body" not in text
    assert header_start(b"Subject: short\n\nbody") == "Subject: short"
