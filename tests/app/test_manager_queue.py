"""The Queue, Drop, Badmail and Pickup nodes with the REAL embedded engine (offscreen).

The remote domain far.example has its MX in dnsmasq, pointing at Postfix's smtp-sink, which answers 451 to
every RCPT: its mail stays queued and deferred, with a real transcript. Local mail goes to Drop.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import smtplib
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import qasync
from dns_support import Dnsmasq, DnsRecords, free_port, running_dnsmasq
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMenu, QWidget
from sink_support import running_sink
from test_manager import Run, dispose

from app.manager import Manager, application
from engine.bounce.badmail import write_badmail
from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.conf.config_file import save_config
from engine.store.mailroot import Mailroot
from ui.badmail_detail import BadmailDialog
from ui.mail_ops import MessageRef
from ui.models.queue import COLUMN
from ui.pickup_drop import PickupRow, PreviewDialog
from ui.result_pane import FramedPane, SearchBar
from ui.scope import Node
from ui.server_sheet import ServerSheet

SINK_HOST = "127.0.0.9"
GREYLISTED = "451 4.7.1 Greylisted, please try again later"
RECORDS = DnsRecords(mx=[("far.example", "mx.far.example", 10)], hosts=[("mx.far.example", SINK_HOST)])
MESSAGE = b"From: Anna <anna@example.test>\r\nTo: bob@far.example\r\nSubject: to a far domain\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with running_dnsmasq(tmp_path_factory.mktemp("dns"), RECORDS) as server:
        yield server


@pytest.fixture
def sink_port(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    with running_sink(tmp_path / "sink", SINK_HOST, port, "-r", "RCPT", "-b", GREYLISTED):
        yield port


def write_config(tmp_path: Path, dns: Dnsmasq, port: int) -> Path:
    config = Config(
        server=ServerConfig(listen=("127.0.0.1:0",), fqdn="mx.example.test", dns_servers=(dns.server,),
                            outbound_port=port, outbound_timeout=10, relay_allowed=("127.0.0.0/8",)),
        domains=(DomainConfig("example.test", "default"),), mailroot=str(tmp_path / "Mailroot"))
    path = tmp_path / "smtpsvc.toml"
    save_config(path, config)
    return path


@pytest.fixture
def running(qapp: QApplication, tmp_path: Path, dnsmasq: Dnsmasq, sink_port: int) -> Iterator[Run]:
    application()
    args = argparse.Namespace(config=write_config(tmp_path, dnsmasq, sink_port), mailroot=None, listen=None,
                              domain=None)
    manager = Manager(args, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    manager.messages.show_box = lambda title, text, unexpected: pytest.fail(f"message box: {title}: {text}")
    manager.window.ops.confirm = lambda title, question: True  # type: ignore[method-assign]
    assert manager.start_engine() is None
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    run = Run(manager, loop)
    manager.window.show()
    try:
        yield run
    finally:
        run.run(manager.window.ops.runner.drain())
        manager.window.close()
        manager.shutdown()
        dispose(manager.window)
        loop.close()
        asyncio.set_event_loop(None)


def send(port: int, sender: str, recipients: list[str], body: bytes = MESSAGE) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, recipients, body)


def queued_ids(running: Run) -> list[str]:
    return [item.queue_id for item in running.window.queue_model.items()]


def cell(running: Run, queue_id: str, column: str) -> str:
    model = running.window.queue_model
    return str(model.data(model.index(model.row_of(queue_id), COLUMN[column])))


def mailroot(tmp_path: Path) -> Path:
    return tmp_path / "Mailroot"


def test_deferred_message_detail_retry_freeze_thaw_bounce(running: Run, tmp_path: Path) -> None:
    window = running.window
    window.select_node(Node.QUEUE)
    send(running.port, "anna@example.test", ["bob@far.example"])
    model = window.queue_model
    # The failed attempt is seen before the message leaves "active" (its delivery is still winding up): wait
    # for both, as a loaded machine showed "Active" in between.
    running.until(lambda: any(i.attempts >= 1 and "451 4.7.1" in i.last_error and i.state != "active"
                              for i in model.items()), 20)
    [queue_id] = queued_ids(running)
    assert cell(running, queue_id, "State") == "Deferred"
    assert cell(running, queue_id, "Next Retry").startswith("in ")
    assert cell(running, queue_id, "Last Error").startswith(GREYLISTED)
    assert cell(running, queue_id, "Target Domains") == "far.example"
    running.until(lambda: model.subject_of(queue_id) == "to a far domain")
    assert window.queue_pane.count_label.text() == "1 message"

    window.queue_pane.select_key(queue_id)
    window.actions_.properties.trigger()  # Alt+Enter: the detail dialog
    dialog = window.queue_ops.details[queue_id]
    running.until(lambda: dialog.detail is not None)
    assert "<<< 451 4.7.1 Greylisted" in dialog.transcript.toPlainText()
    running.until(lambda: dialog.labels["From"].text() == "Anna <anna@example.test>")  # read from its header
    received = dialog.labels["Received"].text()
    assert received.startswith("from ") and "[127.0.0.1]" in received and "with ESMTP" in received, received
    assert dialog.labels["Message-ID"].text() == "—"  # the client sent none
    assert dialog.labels["Last error"].text().startswith(GREYLISTED)
    steps = [dialog.schedule.data(dialog.schedule.index(row, 2)) for row in range(dialog.schedule.rowCount())]
    assert steps[0] == "Attempt 2" and steps[-1].startswith("Non-delivery report")
    assert any(step.startswith("Delay notification") for step in steps)
    recipient = dialog.recipients.rows()[0]
    assert (recipient.address, recipient.status, recipient.remote) == ("bob@far.example", "pending", "mx.far.example")

    window.actions_.retry_now.trigger()
    running.until(lambda: (item := model.get(queue_id)) is not None and item.attempts >= 2, 20)
    running.until(lambda: dialog.labels["Attempts"].text().startswith("2"))  # the dialog follows the message
    assert dialog.transcript.toPlainText().count("=== attempt") == 2

    window.actions_.freeze.trigger()
    running.until(lambda: cell(running, queue_id, "State") == "Frozen")
    assert cell(running, queue_id, "Next Retry") == "Held (frozen)"
    assert not window.actions_.freeze.isEnabled() and window.actions_.thaw.isEnabled()
    window.actions_.thaw.trigger()
    running.until(lambda: cell(running, queue_id, "State") == "Deferred")
    asked: list[list[str]] = []
    window.queue_ops.ask_domain = lambda domains: asked.append(domains) or domains[0]  # type: ignore[method-assign]
    window.actions_.retry_domain.trigger()  # Retry Domain Now: far.example
    running.until(lambda: (item := model.get(queue_id)) is not None and item.attempts >= 3, 20)
    assert asked == [["far.example"]]
    window.select_node(Node.QUEUE)
    assert window.actions_.retry_all in window.node_actions(Node.QUEUE) and window.actions_.retry_all.isEnabled()
    window.actions_.retry_all.trigger()  # Retry All Now, as postqueue -f
    running.until(lambda: (item := model.get(queue_id)) is not None and item.attempts >= 4, 20)

    assert dialog.labels["Subject"].text() == "to a far domain"
    asked_to_confirm: list[str] = []
    window.queue_ops.confirm = lambda title, question: asked_to_confirm.append(question) or False  # type: ignore
    dialog.action_buttons["delete"].click()  # refused at the question: nothing happens
    assert asked_to_confirm[0].startswith("Delete 'to a far domain' from anna@example.test from the queue?")
    assert model.get(queue_id) is not None
    window.queue_ops.confirm = lambda title, question: True  # type: ignore[method-assign]
    window.actions_.bounce_now.trigger()
    running.until(lambda: model.get(queue_id) is None, 20)
    running.until(lambda: "no longer in the queue" in dialog.gone.text())
    window.select_node(Node.DROP)  # the NDR went to the sender, a local address
    running.until(lambda: any(row.recipients == ("anna@example.test",) for row in window.drop_model.rows()), 20)
    ndr = next(row for row in window.drop_model.rows() if row.recipients == ("anna@example.test",))
    assert ndr.sender == "" and "deliver" in ndr.subject.lower()
    assert not list((mailroot(tmp_path) / "Queue").glob(f"{queue_id}.*"))


def test_held_for_etrn_says_so_without_a_schedule_and_is_released(running: Run, tmp_path: Path) -> None:
    window = running.window
    host = running.manager.engine
    config = host.config()
    held = DomainConfig("far.example", "remote", relay_allowed=True, etrn_queue=True)
    running.run(host.apply_config(replace(config, domains=(*config.domains, held))))
    window.select_node(Node.QUEUE)
    send(running.port, "anna@example.test", ["bob@far.example"])
    model = window.queue_model
    running.until(lambda: any(item.etrn_held for item in model.items()), 20)
    [queue_id] = queued_ids(running)
    assert cell(running, queue_id, "State") == "Held for ETRN"
    assert cell(running, queue_id, "Next Retry") == "Waiting for ETRN from far.example"
    window.queue_pane.select_key(queue_id)
    window.update_actions()
    actions = window.actions_
    assert actions.release_etrn.isVisible() and actions.release_etrn.isEnabled()
    assert not actions.retry_now.isEnabled()  # Retry Now would not send it: only a release does
    actions.properties.trigger()
    dialog = window.queue_ops.details[queue_id]
    running.until(lambda: dialog.detail is not None)
    assert dialog.labels["State"].text() == "Held for ETRN (far.example)"
    assert dialog.labels["Next attempt"].text() == "Waiting for ETRN from far.example"
    assert dialog.schedule.rowCount() == 0 and "does not expire" in dialog.schedule_note.text()
    assert dialog.labels["Delay notice"].text() == "Not sent"
    assert dialog.recipients.data(dialog.recipients.index(0, 1)) == "Held for ETRN"
    dialog.show()
    dialog.action_buttons["release"].click()  # as if far.example had sent ETRN: the sink greylists it
    running.until(lambda: (item := model.get(queue_id)) is not None and item.attempts >= 1, 20)
    item = model.get(queue_id)
    assert item is not None and item.etrn_held == ()
    running.until(lambda: cell(running, queue_id, "State") == "Deferred")
    running.until(lambda: dialog.labels["State"].text() == "Deferred")
    assert not dialog.action_buttons["release"].isVisible()


def test_delete_many_with_progress_and_view_and_drag_out(running: Run, tmp_path: Path) -> None:
    window = running.window
    window.select_node(Node.QUEUE)
    for number in range(12):
        body = MESSAGE.replace(b"to a far domain", f"number {number}".encode())
        send(running.port, "anna@example.test", [f"user{number}@far.example"], body)
    model = window.queue_model
    running.until(lambda: model.total == 12, 20)
    [first] = [i.queue_id for i in model.items() if i.recipients == ("user0@far.example",)]
    top, second = model.id_at(0), model.id_at(1)
    window.queue_ops.show_detail(top)
    dialog = window.queue_ops.details[top]
    dialog.action_buttons["next"].click()  # ▼: the message below, in the list's order
    assert list(window.queue_ops.details) == [second] and window.queue_pane.selected_keys() == [second]
    window.queue_ops.details[second].action_buttons["previous"].click()
    assert list(window.queue_ops.details) == [top]
    window.queue_ops.details[top].close()

    async def dragged() -> bytes:
        mime = await window.mail_ops.drag_data([MessageRef("queue", first)])
        [url] = mime.urls()
        return Path(url.toLocalFile()).read_bytes()

    data = running.run(dragged())
    assert data == running.run(window.engine.read_queued(first))
    assert running.run(window.engine.read_queued(first, 20)) == data[:20]  # a preview's bounded read
    assert b"Subject: number 0" in data
    window.queue_pane.select_key(first)
    window.actions_.view_message.trigger()
    running.until(lambda: bool(window.mail_ops.viewers))
    viewer = window.mail_ops.viewers[0]
    assert viewer.parts.subject == "number 0" and viewer.parts.text == "body\r\n"
    viewer.close()

    window.queue_pane.detail.selectAll()
    assert len(window.queue_pane.selected_keys()) == 12
    saved = tmp_path / "saved"
    saved.mkdir()
    window.mail_ops.ask_directory = lambda title: str(saved)  # type: ignore[method-assign]
    window.actions_.save_as.trigger()  # twelve messages: into a folder, one .eml each
    running.until(lambda: len(list(saved.glob("*.eml"))) == 12)
    assert (saved / f"{first}.eml").read_bytes() == data
    window.actions_.delete.trigger()  # confirmed by the fixture
    running.until(lambda: model.total == 0, 20)
    assert not list((mailroot(tmp_path) / "Queue").glob("*.eml"))


def drop_event(target: QWidget, mime: QMimeData) -> None:
    """What a drag from another application does: enter (Qt delivers a drop only after it), then drop."""
    with warnings.catch_warnings():  # Qt 6 has only the QPoint constructor, which PySide marks deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(40, 40), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(40, 40), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, event)
    assert event.isAccepted()


def file_mime(paths: list[Path]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    return mime


def message_file(folder: Path, number: int) -> Path:
    path = folder / f"message{number:04d}.eml"
    path.write_bytes(f"From: sender@example.test\r\nTo: drop{number}@example.test\r\nSubject: dropped {number}\r\n"
                     f"\r\nhello {number}\r\n".encode())
    return path


def drop_subjects(tmp_path: Path) -> list[str]:
    subjects = []
    for path in (mailroot(tmp_path) / "Drop").glob("*.eml"):
        for line in path.read_bytes().split(b"\r\n"):
            if line.startswith(b"Subject: "):
                subjects.append(line[9:].decode())
    return subjects


def test_files_dropped_on_the_window_are_previewed_then_delivered(running: Run, tmp_path: Path) -> None:
    window = running.window
    files = tmp_path / "files"
    files.mkdir()
    good = [message_file(files, number) for number in range(3)]
    bad = files / "notes.txt"
    bad.write_bytes(b"just some text, not a message\n")
    previews: list[PreviewDialog] = []
    window.pickup.preview_shown.connect(previews.append)
    drop_event(window, file_mime([*good, bad]))
    running.until(lambda: bool(previews))
    preview = previews[0]
    statuses = {row.name: row.status for row in preview.model.rows()}
    assert statuses == {"message0000.eml": "ready", "message0001.eml": "ready", "message0002.eml": "ready",
                        "notes.txt": "problem"}
    [row] = [row for row in preview.model.rows() if row.name == "message0001.eml"]
    assert (row.sender, row.recipients) == ("sender@example.test", ("drop1@example.test",))
    assert preview.ok.text() == "Put 3 into Pickup"
    preview.dont_ask.setChecked(True)
    preview.accept()
    results = window.pickup.results
    running.until(lambda: sum(r.status == "delivered" for r in window.pickup.own_rows()) == 3, 20)
    assert sorted(drop_subjects(tmp_path)) == ["dropped 0", "dropped 1", "dropped 2"]
    assert all(r.queue_id for r in results.rows() if r.status == "delivered")
    assert next(r for r in results.rows() if r.name == "notes.txt").status == "problem"
    assert not window.pickup.ask_first and not window.actions_.pickup_preview.isChecked()  # don't ask again

    text = QMimeData()  # text dragged from another application
    text.setText("From: sender@example.test\nTo: text@example.test\nSubject: dragged text\n\nbody\n")
    drop_event(window.tree.viewport(), text)  # on the tree (the Queue/Pickup nodes): no preview any more
    running.until(lambda: "dragged text" in drop_subjects(tmp_path), 20)
    assert not list((mailroot(tmp_path) / "Pickup").iterdir())


def test_put_files_into_pickup_with_ctrl_o_and_paste(running: Run, tmp_path: Path) -> None:
    window = running.window
    files = tmp_path / "chosen"
    files.mkdir()
    chosen = [message_file(files, number) for number in (7, 8)]
    window.pickup.ask_first = False
    window.pickup.choose_files = lambda: [str(p) for p in chosen]  # type: ignore[method-assign]
    window.select_node(Node.DOMAINS)
    assert window.actions_.put_pickup.shortcut().toString() == "Ctrl+O"
    assert not window.actions_.paste_pickup.isEnabled()  # Ctrl+V on another node sends nothing
    window.actions_.put_pickup.trigger()
    assert window.node == Node.PICKUP  # where the results show
    results = window.pickup.results
    running.until(lambda: sum(r.status == "delivered" for r in window.pickup.own_rows()) == 2, 20)
    assert {"dropped 7", "dropped 8"} <= set(drop_subjects(tmp_path))
    [seven] = [r for r in results.rows() if r.name == "message0007.eml"]
    pane = window.panes[Node.PICKUP]
    pane.activated.emit(results.index(results.row_of(seven.key), 0))  # double-click: where did it go?
    assert window.node == Node.DROP
    running.until(lambda: any(seven.queue_id in key for key in window.pane.selected_keys()), 20)
    window.select_node(Node.PICKUP)
    QApplication.clipboard().setText("From: sender@example.test\nTo: pasted@example.test\nSubject: pasted text\n"
                                     "\nbody\n")
    window.update_actions()
    assert window.actions_.paste_pickup.isEnabled()
    window.actions_.paste_pickup.trigger()
    running.until(lambda: "pasted text" in drop_subjects(tmp_path), 20)
    notes: list[str] = []
    window.messages.note.connect(notes.append)
    QApplication.clipboard().clear()
    window.actions_.paste_pickup.trigger()
    assert notes == ["Paste into Pickup: the clipboard holds no file and no text"]


def test_pickup_pane_says_what_sits_in_the_folder_now(running: Run, tmp_path: Path) -> None:
    window = running.window
    running.click("stop")
    running.until(lambda: window.state == "stopped")
    (mailroot(tmp_path) / "Pickup" / "waiting.eml").write_bytes(
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: waited\r\n\r\nbody\r\n")
    window.select_node(Node.PICKUP)
    running.until(lambda: "waiting.eml" in window.pickup_now.text(), 10)
    assert "1 file (waiting.eml), waiting: the server is stopped" in window.pickup_now.text()
    running.click("start")
    running.until(lambda: window.pickup_now.text().startswith("The Pickup folder is empty"), 20)
    running.until(lambda: "waited" in drop_subjects(tmp_path), 20)


def test_pickup_lists_what_other_tools_put_there_and_leads_to_it(running: Run, tmp_path: Path) -> None:
    window = running.window
    pickup = mailroot(tmp_path) / "Pickup"
    head = b"From: a@example.test\r\nTo: "
    for name, data in (("by-script.eml", head + b"b@example.test\r\nSubject: scripted\r\n\r\nx\r\n"),
                       ("far.eml", head + b"bob@far.example\r\nSubject: far away\r\n\r\nx\r\n"),
                       ("garbage.txt", b"not a message\r\n")):
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).rename(pickup / name)  # another program's drop, as a rename
    window.select_node(Node.PICKUP)
    results = window.pickup.results

    def history(status: str) -> list[PickupRow]:
        return [r for r in results.rows() if r.listed == "history" and r.status == status]

    # "queued" comes with the message's intake; its first attempt's 451 a moment later (under load, seconds).
    running.until(lambda: len(history("delivered")) == 1 and len(history("refused")) == 1
                  and len(history("queued")) == 1 and "451 4.7.1" in history("queued")[0].detail, 20)
    [delivered], [refused], [queued] = history("delivered"), history("refused"), history("queued")
    assert delivered.subject == "scripted" and delivered.queue_id and delivered.recipients == ("b@example.test",)
    assert refused.name == "garbage.txt" and refused.badmail and refused.detail
    assert queued.subject == "far away" and "451 4.7.1" in queued.detail and queued.name == "far.eml"
    assert delivered.name == "by-script.eml"  # the file's own name, kept by message tracking
    assert window.pickup.own_rows() == []  # none of them was put there by this window
    view = window.panes[Node.PICKUP].detail
    view.resizeColumnToContents(0)
    window.grab().save(str(tmp_path / "pickup-history.png"))
    pane = window.panes[Node.PICKUP]
    pane.activated.emit(results.index(results.row_of(refused.key), 0))  # the Badmail item it became
    assert window.node == Node.BADMAIL
    running.until(lambda: window.pane.selected_keys() == [refused.badmail], 20)
    window.select_node(Node.PICKUP)
    pane.activated.emit(results.index(results.row_of(queued.key), 0))  # the queued message's detail
    assert window.node == Node.QUEUE and queued.queue_id in window.queue_ops.details
    window.select_node(Node.PICKUP)
    pane.activated.emit(results.index(results.row_of(delivered.key), 0))  # its Drop file
    assert window.node == Node.DROP
    running.until(lambda: any(delivered.queue_id in key for key in window.pane.selected_keys()), 20)
    running.run(running.manager.engine.delete_message(queued.queue_id))
    running.until(lambda: [r.status for r in results.rows() if r.key == queued.key] == ["deleted"], 20)


def test_own_drag_out_is_not_taken_back(running: Run) -> None:
    window = running.window
    mime = file_mime([Path("/etc/hostname")])
    assert window.pickup.accepts(mime, None)
    assert not window.pickup.accepts(mime, window.queue_pane.detail)  # our drag coming back: no duplicate


def test_cancelling_a_large_drop_half_way_loses_and_duplicates_nothing(running: Run, tmp_path: Path) -> None:
    window = running.window
    window.pickup.ask_first = False
    files = tmp_path / "many"
    files.mkdir()
    paths = [message_file(files, number) for number in range(300)]
    submitted = ("in pickup", "queued", "delivered")

    async def cancel_half_way() -> None:
        while sum(r.status in submitted for r in window.pickup.own_rows()) < 150:
            await asyncio.sleep(0.005)
        window.pickup.cancel()

    finished: list[int] = []
    window.pickup.finished.connect(finished.append)
    drop_event(window, file_mime(paths))
    running.run(cancel_half_way())
    running.until(lambda: bool(finished), 30)
    rows = window.pickup.own_rows()  # (the server's history of Pickup is listed too: not these)
    taken = {row.name for row in rows if row.status in submitted}
    left = {row.name for row in rows if row.status == "not submitted"}
    assert len(rows) == 300 and taken | left == {path.name for path in paths} and not taken & left
    assert 150 <= len(taken) < 300
    expected = sorted(f"dropped {int(name[7:11])}" for name in taken)
    running.until(lambda: len(drop_subjects(tmp_path)) >= len(taken), 30)
    running.run(asyncio.sleep(0.5))  # nothing more arrives
    assert sorted(drop_subjects(tmp_path)) == expected  # every submitted file once, no other
    assert not list((mailroot(tmp_path) / "Pickup").iterdir())
    running.until(lambda: all(row.status in ("delivered", "not submitted") for row in window.pickup.own_rows()), 20)


def test_badmail_resend_view_delete_and_live_rows(running: Run, tmp_path: Path) -> None:
    window = running.window
    root = Mailroot(mailroot(tmp_path))
    good = b"From: a@example.test\r\nTo: back@example.test\r\nSubject: resent\r\n\r\nagain\r\n"
    name = write_badmail(root, good, "The remote server was not reachable", sender="a@example.test",
                         recipients=["back@example.test"], source="delivery")
    window.select_node(Node.BADMAIL)
    running.until(lambda: window.badmail_model.get(name) is not None)
    row = window.badmail_model.get(name)
    assert row is not None and row.reason == "The remote server was not reachable"
    (root.pickup / "bad.eml").write_bytes(b"To: x@example.test\r\nSubject: no sender\r\n\r\nbody\r\n")
    running.until(lambda: any("no From" in r.reason for r in window.badmail_model.rows()), 20)  # live
    window.panes[Node.BADMAIL].select_key(name)
    window.actions_.view_message.trigger()
    running.until(lambda: any(v.parts.subject == "resent" for v in window.mail_ops.viewers))
    for viewer in list(window.mail_ops.viewers):
        viewer.close()
    window.actions_.resend.trigger()
    running.until(lambda: window.badmail_model.get(name) is None)
    running.until(lambda: "resent" in drop_subjects(tmp_path), 20)
    assert not (root.badmail / f"{name}.BAD").exists()
    [other] = [r.name for r in window.badmail_model.rows()]
    model = window.badmail_model
    titles = [column.title for column in model.columns]
    cells = {t: model.data(model.index(model.row_of(other), n)) for n, t in enumerate(titles)}
    assert (cells["Original File or Message"], cells["Source"]) == ("bad.eml", "Pickup directory")
    window.panes[Node.BADMAIL].select_key(other)
    window.update_actions()
    window.actions_.properties.trigger()  # Badmail Properties: the .BDR and .BDP
    [dialog] = [d for d in window.findChildren(BadmailDialog) if d.isVisible()]
    assert dialog.labels["Original Pickup file"].text() == "bad.eml"
    assert "no From" in dialog.reason.toPlainText() and dialog.labels["Source"].text() == "Pickup directory"
    dialog.grab().save(str(tmp_path / "badmail-properties.png"))
    dialog.close()
    window.actions_.delete.trigger()
    running.until(lambda: window.badmail_model.rowCount() == 0)
    assert not list(root.badmail.iterdir())
    opened: list[str] = []
    window.folder_ops.open_url = lambda url: opened.append(url.toLocalFile()) or True  # type: ignore[method-assign]
    window.actions_.open_folder.trigger()
    assert opened == [str(root.badmail)]


def test_stopped_server_shows_a_read_only_queue_and_reloads_on_start(running: Run, tmp_path: Path) -> None:
    window = running.window
    send(running.port, "anna@example.test", ["bob@far.example"])
    send(running.port, "anna@example.test", ["carl@far.example"])
    window.select_node(Node.QUEUE)
    model = window.queue_model
    running.until(lambda: model.total == 2 and all(i.attempts for i in model.items()), 20)
    running.until(lambda: window.queue_pane.chart.shape is not None and window.queue_pane.chart.shape.total == 2)
    running.click("stop")
    running.until(lambda: window.state == "stopped" and window.queue_feed.offline and not window.queue_feed.loading)
    assert model.total == 2 and {cell(running, i, "State") for i in queued_ids(running)} == {"Deferred"}
    # No countdown of a server that sends nothing; the schedule stays in the tooltip.
    assert {cell(running, i, "Next Retry") for i in queued_ids(running)} == {"Stopped"}
    placeholder = window.queue_pane.placeholder.text()
    assert "stopped" in placeholder and "read-only" in placeholder and not window.queue_pane.placeholder.isHidden()
    assert window.queue_pane.chart.shape is not None and window.queue_pane.chart.shape.total == 2  # the same 2
    window.queue_pane.select_key(queued_ids(running)[0])
    window.update_actions()
    for action in ("retry_now", "freeze", "bounce_now", "delete", "details", "retry_domain"):
        assert not getattr(window.actions_, action).isEnabled(), action
    [first] = [p for p in (tmp_path / "Mailroot" / "Queue").glob("*.eml") if p.stem == queued_ids(running)[0]]
    first.unlink()  # changed behind the stopped server: F5 reads the folder again
    (tmp_path / "Mailroot" / "Queue" / f"{first.stem}.env").unlink(missing_ok=True)
    window.actions_.refresh.trigger()
    running.until(lambda: model.total == 1 and not window.queue_feed.loading)
    running.until(lambda: window.queue_pane.chart.shape is not None and window.queue_pane.chart.shape.total == 1)
    running.until(lambda: window.queue_pane.count_label.text() == "1 message")
    window.grab().save(str(tmp_path / "stopped-queue.png"))
    running.click("start")
    running.until(lambda: window.state == "started" and not window.queue_feed.offline and model.total == 1, 20)
    assert window.queue_pane.placeholder.isHidden()
    assert cell(running, queued_ids(running)[0], "Next Retry") != "Stopped"


def test_drop_node_lists_every_drop_with_its_domain_and_follows_changes(running: Run, tmp_path: Path) -> None:
    window = running.window
    host = running.manager.engine
    config = host.config()
    alias_drop = tmp_path / "AliasDrop"
    running.run(host.apply_config(replace(config, domains=(
        *config.domains, DomainConfig("alias.test", "alias", drop_dir=str(alias_drop))))))
    window.select_node(Node.DROP)
    model = window.drop_model
    send(running.port, "anna@example.test", ["x@alias.test"])
    send(running.port, "anna@example.test", ["y@example.test", "z@alias.test"])  # one copy in each Drop
    running.until(lambda: model.rowCount() == 3, 20)
    domain_column = [c.title for c in model.columns].index("Domain")
    shown = {(model.data(model.index(row, domain_column)), model.rows()[row].recipients)
             for row in range(model.rowCount())}
    assert shown == {("alias.test", ("x@alias.test",)), ("alias.test", ("z@alias.test",)),
                     ("example.test", ("y@example.test",))}
    window.grab().save("/tmp/mailroot-drop-pane.png")
    pane = window.panes[Node.DROP]
    assert isinstance(pane, FramedPane) and isinstance(pane.top, SearchBar)  # Drop can be searched
    pane.top.edit.setText("Y@EXAMPLE")  # any column, any case
    assert pane.proxy.rowCount() == 1 and pane.top.count.text() == "1 of 3 items"
    pane.top.edit.clear()
    assert pane.proxy.rowCount() == 3
    [x] = [r for r in model.rows() if r.recipients == ("x@alias.test",)]
    window.panes[Node.DROP].select_key(x.ref)
    opened: list[str] = []
    window.folder_ops.open_url = lambda url: opened.append(url.toLocalFile()) or True  # type: ignore[method-assign]
    window.actions_.open_folder.trigger()
    assert opened == [str(alias_drop)]  # the selected item's Drop
    window.actions_.view_message.trigger()
    running.until(lambda: any(v.parts.subject == "to a far domain" for v in window.mail_ops.viewers))
    [viewer] = window.mail_ops.viewers  # the envelope: who it was delivered to (To: says bob@far.example)
    assert viewer.summary["Envelope:"].text() == "from anna@example.test to x@alias.test"
    for viewer in list(window.mail_ops.viewers):
        viewer.close()
    window.actions_.delete.trigger()
    running.until(lambda: model.get(x.ref) is None)
    assert len(list(alias_drop.glob("*.eml"))) == 1
    # The default domain's Drop moves (applied live): the list shows the new, empty one, and new mail lands there.
    config = host.config()
    running.run(host.apply_config(replace(config, domains=tuple(
        replace(d, drop_dir="Drop2") if d.type == "default" else d for d in config.domains))))
    running.until(lambda: [r.recipients for r in model.rows()] == [("z@alias.test",)], 20)
    send(running.port, "anna@example.test", ["w@example.test"])
    running.until(lambda: any(r.recipients == ("w@example.test",) for r in model.rows()), 20)
    assert len(list((mailroot(tmp_path) / "Drop2").glob("*.eml"))) == 1


def test_drop_resend_delivers_a_copy_again_and_keeps_the_file(running: Run, tmp_path: Path) -> None:
    """Drop → Resend (asked first): a copy goes back through Pickup and arrives in Drop again beside the file,
    which stays; answered No, nothing is sent."""
    window = running.window
    window.resize(1000, 560)
    window.select_node(Node.DROP)
    model = window.drop_model
    drop = mailroot(tmp_path) / "Drop"
    send(running.port, "anna@example.test", ["yves@example.test"])
    running.until(lambda: model.rowCount() == 1, 20)
    [item] = model.rows()
    asked: list[str] = []
    answers = [False, True]
    window.ops.confirm = lambda title, question: asked.append(question) or answers.pop(0)  # type: ignore[method-assign]
    pane = window.panes[Node.DROP]
    pane.select_key(item.ref)
    window.update_actions()
    assert window.actions_.resend.isVisible() and window.actions_.resend.isEnabled()
    view = pane.view()
    window._result_menu(view.visualRect(view.currentIndex()).center())  # the item's context menu
    [menu] = [m for m in window.findChildren(QMenu) if m.isVisible() and window.actions_.resend in m.actions()]
    assert [a.text() for a in menu.actions() if a.text()][:3] == ["&View Message", "&Save As .eml…", "Re&send"]
    menu.grab().save(str(Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path)) / "drop-context-menu.png"))
    menu.close()
    window.actions_.resend.trigger()  # answered No
    running.run(window.runner.drain())
    assert len(asked) == 1 and "delivered again" in asked[0] and "The Drop file stays" in asked[0]
    assert [p.name for p in drop.glob("*.eml")] == [item.name] and model.rowCount() == 1
    window.actions_.resend.trigger()  # answered Yes
    running.until(lambda: model.rowCount() == 2, 20)
    assert all(r.recipients == ("yves@example.test",) for r in model.rows())
    assert len(list(drop.glob("*.eml"))) == 2 and (drop / item.name).exists()  # the first one stays
    running.until(lambda: window.statusBar().currentMessage() == "Resent 1 Drop item.")


def test_preview_pane_follows_the_selection_and_the_message(running: Run, tmp_path: Path) -> None:
    window = running.window
    window.select_node(Node.QUEUE)
    send(running.port, "anna@example.test", ["bob@far.example", "carl@far.example"])
    send(running.port, "carl@example.test", ["dora@far.example"], MESSAGE.replace(b"to a far", b"another far"))
    model = window.queue_model
    running.until(lambda: model.rowCount() == 2 and all(i.attempts >= 1 and i.state != "active"
                                                        for i in model.items()), 20)
    pane = window.queue_pane
    assert not pane.preview.isVisible()  # off by default
    window.actions_.show_preview.trigger()  # View ▸ Preview Pane
    assert pane.preview.isVisible() and running.window.settings.value("queue/preview", type=bool)
    first = next(i.queue_id for i in model.items() if i.sender == "anna@example.test")
    second = next(i.queue_id for i in model.items() if i.sender == "carl@example.test")
    pane.select_key(first)
    text = pane.preview.browser.toPlainText
    running.until(lambda: "Subject: to a far domain" in text())
    assert "anna@example.test" in text() and "Deferred" in text() and GREYLISTED in text()
    assert "bob@far.example" in text() and "carl@far.example" in text() and "body" not in text()
    window.grab().save(str(tmp_path / "queue-preview.png"))
    pane.select_key(second)
    running.until(lambda: "Subject: another far domain" in text())
    assert "carl@example.test" in text() and "to a far domain" not in text()
    window.queue_ops.confirm = lambda title, question: True  # type: ignore[method-assign]
    window.actions_.freeze.trigger()
    running.until(lambda: "Frozen" in text())  # the pane follows the message it shows
    running.run(running.manager.engine.delete_message(second))
    running.until(lambda: model.get(second) is None)
    running.until(lambda: "Select a message" in text() or "Subject: to a far domain" in text())


def test_check_dns_on_advanced_delivery_asks_the_engines_resolver(running: Run, tmp_path: Path,
                                                                  dnsmasq: Dnsmasq) -> None:
    window = running.window
    window.select_node(Node.SERVER)
    window.actions_.properties.trigger()
    sheet = window.ops.sheet
    assert isinstance(sheet, ServerSheet) and sheet.check_dns is not None
    told: list[tuple[str, str, bool]] = []
    sheet.check_dns.tell = lambda title, text, ok: told.append((title, text, ok))  # type: ignore[method-assign]
    sheet.fields["fqdn"].set_value("far.example")  # as typed, not applied
    sheet.advanced_delivery.show()
    sheet.check_dns.button.click()
    running.until(lambda: bool(told), 20)
    title, text, ok = told[0]
    assert ok and title == "Check DNS" and "MX: mail for far.example goes to mx.far.example." in text
    assert f"Asked: {dnsmasq.server}." in text and "far.example has no address" in text
    sheet.fields["fqdn"].set_value("mx.far.example")
    sheet.check_dns.button.click()
    running.until(lambda: len(told) == 2, 20)
    assert told[1][2] and f"Addresses of mx.far.example: {SINK_HOST}" in told[1][1]
    sheet.advanced_delivery.grab().save(str(tmp_path / "advanced-delivery.png"))
    sheet.advanced_delivery.reject()
    sheet.reject()


def test_queue_by_domain_forces_freezes_and_thaws_a_domain(running: Run, tmp_path: Path) -> None:
    window = running.window
    window.select_node(Node.QUEUE)
    send(running.port, "anna@example.test", ["bob@far.example"])
    send(running.port, "carl@example.test", ["dora@far.example"])
    model = window.queue_model
    running.until(lambda: model.rowCount() == 2 and all(i.attempts >= 1 and i.state != "active"
                                                        for i in model.items()), 20)
    pane = window.queue_pane
    window.actions_.show_preview.setChecked(True)
    pane.domains_button.click()  # By Domain
    assert pane.preview.isHidden()  # it previews messages, not domains
    domains = pane.domains
    assert pane.lists.currentWidget() is domains and domains.model.rowCount() == 1
    [row] = domains.model.rows()
    assert (row.domain, row.messages, row.state) == ("far.example", 2, "deferred")
    assert row.last_error.startswith(GREYLISTED) and row.next_retry > 0
    texts = [domains.model.data(domains.model.index(0, column)) for column in range(domains.model.columnCount())]
    assert texts[:3] == ["far.example", "2", "Deferred"] and texts[3].startswith("in ")
    domains.view.setCurrentIndex(domains.proxy.index(0, 0))
    assert domains.force_button.isEnabled() and domains.freeze_button.isEnabled()
    assert not domains.thaw_button.isEnabled()
    domains.freeze_button.click()
    running.until(lambda: all(i.state == "frozen" for i in model.items()), 20)
    running.until(lambda: domains.model.rows()[0].state == "frozen", 10)  # the view follows
    assert domains.thaw_button.isEnabled() and not domains.force_button.isEnabled()
    window.grab().save(str(tmp_path / "queue-domains.png"))
    domains.thaw_button.click()
    running.until(lambda: all(i.state != "frozen" for i in model.items()), 20)
    running.until(lambda: domains.force_button.isEnabled(), 10)
    domains.force_button.click()  # Force Connection: both are tried again now
    running.until(lambda: all(i.attempts >= 2 for i in model.items()), 20)
    domains.open_domain.emit("far.example")  # double-click: its messages
    assert pane.lists.currentWidget() is pane.detail and not pane.domains_button.isChecked()
    assert pane.preview.isVisible()
    assert pane.current_filter().domain == "far.example"


def test_export_of_the_queue_has_every_subject(running: Run, tmp_path: Path) -> None:
    for number in range(3):  # queued before the Queue node is shown: the rows come from the listing, not events
        body = MESSAGE.replace(b"to a far", f"{number} far".encode())
        send(running.port, "anna@example.test", ["bob@far.example"], body)
    window = running.window
    window.queue_pane.detail.hide()  # no row painted: no subject asked for by painting
    window.select_node(Node.QUEUE)
    model = window.queue_model
    running.until(lambda: model.total == 3 and not window.queue_feed.loading, 20)
    target = tmp_path / "queue.csv"
    window.export_list(str(target))
    running.until(target.exists, 20)
    rows = list(csv.reader(target.read_text(encoding="utf-8").splitlines()))
    subject = rows[0].index("Subject")
    assert sorted(row[subject] for row in rows[1:]) == ["0 far domain", "1 far domain", "2 far domain"]
    window.queue_pane.detail.show()
