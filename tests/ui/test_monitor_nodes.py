"""The Event Viewer and Performance nodes of the manager window with the REAL embedded engine (offscreen)."""

from __future__ import annotations

import argparse
import asyncio
import smtplib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
import qasync
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from app.manager import Manager, application
from engine.admin.perf import explanation
from ui.event_viewer import EventDetail
from ui.performance import AddCounters
from ui.scope import Node
from ui.window import ManagerWindow

T = TypeVar("T")


class Run:
    def __init__(self, manager: Manager, loop: qasync.QEventLoop) -> None:
        self.manager = manager
        self.window: ManagerWindow = manager.window
        self.loop = loop

    def run(self, coro: Awaitable[T], timeout: float = 20.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        async def wait() -> None:
            while not predicate():
                await asyncio.sleep(0.02)

        self.run(wait(), timeout)

    @property
    def port(self) -> int:
        return self.manager.host.bound_addresses[0][1]


@pytest.fixture
def running(qapp: QApplication, tmp_path: Path) -> Iterator[Run]:
    application()
    args = argparse.Namespace(config=tmp_path / "smtpsvc.toml", mailroot=tmp_path / "Mailroot",
                              listen=["127.0.0.1:0"], domain="example.test")
    manager = Manager(args, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    manager.messages.show_box = lambda title, text, unexpected: pytest.fail(f"message box: {title}: {text}")
    assert manager.start_engine() is None
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    run = Run(manager, loop)
    manager.window.resize(1100, 700)
    manager.window.show()
    try:
        yield run
    finally:
        run.window.performance.set_active(False)
        run.run(manager.window.ops.runner.drain())
        manager.window.close()
        manager.shutdown()
        loop.close()  # its executor's QThreads (asyncio.to_thread on this loop) end with it


def send(port: int, count: int) -> None:
    for _ in range(count):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: watch\r\n\r\nhi\r\n")


def test_event_viewer_lists_filters_and_follows_the_log(running: Run) -> None:
    window = running.window
    viewer = window.event_viewer
    window.select_node(Node.EVENTS)
    running.until(lambda: viewer.loaded and viewer.model.rowCount() >= 1)
    assert [e.event_id for e in viewer.model.rows()] == [1000]
    config = running.manager.host.config()
    running.run(running.manager.engine.apply_config(replace(config, server=replace(config.server, max_recipients=9))))
    running.run(running.manager.engine.pause())
    running.run(running.manager.engine.resume())
    running.until(lambda: viewer.model.rowCount() == 4)  # live, without a refresh
    assert sorted(e.event_id for e in viewer.model.rows()) == [1000, 1002, 1003, 1100]
    window.grab().save("/tmp/monitor-event-viewer.png")
    viewer.level.setCurrentIndex(1)  # warnings and errors
    assert viewer.model.rowCount() == 0 and viewer.count.text() == "0 of 4 event(s)"
    viewer.level.setCurrentIndex(0)
    viewer.source.setCurrentIndex(viewer.source.findData("Configuration"))
    assert [e.event_id for e in viewer.model.rows()] == [1100]
    viewer.source.setCurrentIndex(0)
    viewer.search.setText("paused")
    assert [e.event_id for e in viewer.model.rows()] == [1002]
    viewer.search.clear()
    index = window.pane.model.index(window.pane.model.row_of(next(
        viewer.model.key(e) for e in viewer.model.rows() if e.event_id == 1100)), 0)
    window.pane.activated.emit(index)  # a double-click on the row
    [dialog] = [w for w in QApplication.topLevelWidgets() if isinstance(w, EventDetail) and w.isVisible()]
    assert "Event ID: 1100" in dialog.as_text() and "server.max_recipients" in dialog.as_text()
    dialog.grab().save("/tmp/monitor-event-detail.png")
    dialog.close()
    headers, rows = window.pane.export_rows()
    assert headers == ["Type", "Date and Time", "Source", "Event", "Description"] and len(rows) == 4


def test_performance_charts_live_counters(running: Run) -> None:
    window = running.window
    performance = window.performance
    window.select_node(Node.PERFORMANCE)
    performance.add_counter("Messages Received Total")
    running.run(asyncio.to_thread(send, running.port, 3))
    running.until(lambda: (row := performance.model.get("Messages Received Total")) is not None and row.last == 3)
    running.until(lambda: len(performance.history.samples) >= 3)
    row = performance.model.get("Messages Received/sec")
    assert row is not None and row.maximum > 0
    series = performance.series["Messages Received Total"]
    assert series.count() == len(performance.history.samples) and series.at(series.count() - 1).x() == 0
    window.grab().save("/tmp/monitor-performance.png")
    performance.pause_button.setChecked(True)
    samples = len(performance.history.samples)
    running.run(asyncio.sleep(1.5))
    assert len(performance.history.samples) == samples  # paused: nothing read
    performance.pause_button.setChecked(False)
    performance.report_button.setChecked(True)
    assert performance.view.isHidden()
    QApplication.processEvents()
    window.grab().save("/tmp/monitor-performance-report.png")
    window.pane.inner.select_key("Remote Queue Length")  # type: ignore[union-attr]
    performance.remove_selected()
    assert performance.model.get("Remote Queue Length") is None and "Remote Queue Length" not in performance.series
    chooser = AddCounters(list(performance.history.names), {r.name for r in performance.model.rows()}, window)
    chooser.list.setCurrentRow(chooser.list.count() - 1)
    assert chooser.explain.text() == explanation(chooser.list.currentItem().text()) != ""
    chooser.show()
    chooser.grab().save("/tmp/monitor-add-counters.png")
    chooser.close()
    window.select_node(Node.SERVER)
    assert not performance.timer.isActive()  # not shown: the engine is not asked


def test_track_message_from_the_drop_pane(running: Run) -> None:
    window = running.window
    running.run(asyncio.to_thread(send, running.port, 2))
    window.select_node(Node.DROP)
    running.until(lambda: window.drop_model.rowCount() == 2)
    key = window.drop_model.key(window.drop_model.rows()[0])
    window.pane.select_key(key)
    dialog = window.track_message()
    assert dialog.queue_id.text() == key.rpartition("/")[2].removesuffix(".eml")
    running.until(lambda: len(dialog.found) == 1)
    [track] = dialog.found
    assert [s.what for s in track.steps] == ["received", "delivered to Drop"] and track.subject == "watch"
    assert dialog.results.topLevelItem(0).childCount() == 2
    dialog.grab().save("/tmp/monitor-track.png")
    dialog.queue_id.clear()
    dialog.sender_edit.setText("@example.test")
    dialog.search()
    running.until(lambda: len(dialog.found) == 2)
    assert "2 message(s) found" in dialog.status.text()
    assert window.actions_.track in window.action_menu.actions()
    dialog.close()


def test_track_message_from_a_badmail_item_names_its_queued_message(running: Run) -> None:
    from engine.bounce.badmail import BadmailItem

    window = running.window
    window.select_node(Node.BADMAIL)
    running.until(lambda: window.badmail_model.loaded)
    window.badmail_model.upsert(BadmailItem("B1", "No recipients", "a@example.test", (), "delivery", 0.0,
                                            (("queue-id", "18EEFFQUEUEID"),)))
    window.pane.select_key("B1")
    dialog = window.track_message()
    assert dialog.queue_id.text() == "18EEFFQUEUEID"
    running.until(lambda: dialog.status.text() == "No message matches.")
    dialog.close()


def test_protocol_log_node_lists_the_newest_lines_and_follows_the_file(running: Run, tmp_path: Path) -> None:
    window = running.window
    send(running.port, 1)
    window.select_node(Node.LOG)
    log = window.current.protocol_log
    model = log.model

    def methods() -> list[str]:
        return [row.get("cs-method") for row in model.rows()]

    running.until(lambda: methods()[-5:] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"])  # smtplib's, in file order
    assert log.timer.isActive() and "W3C Extended" in log.where.full and log.where.full.endswith("entries")
    first = model.rows()[0]
    assert first.get("c-ip") == "127.0.0.1" and first.get("sc-status") == "250"
    proxy = log.pane.proxy
    assert proxy.data(proxy.index(0, 4)) == "QUIT"  # newest first
    send(running.port, 1)  # followed while shown
    running.until(lambda: methods().count("QUIT") == 2)
    log.search.edit.setText("rcpt")
    assert proxy.rowCount() == 2 and log.search.count.text()
    window.grab().save(str(tmp_path / "protocol-log.png"))
    window.select_node(Node.EVENTS)
    assert not log.timer.isActive()  # read only while shown
