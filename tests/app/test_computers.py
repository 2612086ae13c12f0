"""Several computers in one window: this computer's embedded engine and two real `smtpsvc serve` engines added
with File → Connect to Computer… (HTTPS admin servers on loopback), each node working against its own computer;
a remote engine's restart; the list remembered and connected again at start; New Window from Here (offscreen)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import smtplib
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import qasync
from admin_support import OPERATORS, AdminServe, admin_config, cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMenu, QMessageBox, QWidget
from serve_support import free_port

from app.cli import build_parser, remote_refusal
from app.computers import LIST_KEY
from app.manager import Manager, application
from engine.admin.http_client import known_servers_path, read_known
from engine.conf.config_file import load_config, with_option
from ui import queue_feed
from ui.connect_dialog import ConnectDialog
from ui.domain_sheet import DomainSheet
from ui.scope import Node
from ui.server_sheet import ServerSheet
from ui.window import LOCAL, ManagerWindow

T = TypeVar("T")
FAR = b"From: a@example.test\r\nTo: x@partner.test\r\nSubject: far away\r\n\r\nbody\r\n"
BOSS = OPERATORS["boss"][0]


def named(root: Path, fqdn: str) -> AdminServe:
    """An engine with the admin server, named ``fqdn`` (the label of its node in the window)."""
    process = AdminServe(root)
    assert cli("config", "set", "fqdn", fqdn, "--config", str(process.config)) == 0
    return process


def serving(root: Path, fqdn: str) -> AdminServe:
    """Started by ``with``, stopped when the block ends."""
    return named(root, fqdn)


@pytest.fixture
def first(tmp_path: Path) -> Iterator[AdminServe]:
    """Made before the test's loop is set: the command line that writes its configuration may run (and end) an
    asyncio loop of its own on this thread."""
    with serving(tmp_path / "first", "mx1.example.test") as process:
        yield process


@pytest.fixture
def second(tmp_path: Path) -> Iterator[AdminServe]:
    with serving(tmp_path / "second", "mx2.example.test") as process:
        yield process


class Session:
    """A Manager (this computer's engine embedded) and the qasync loop its window runs on."""

    def __init__(self, qapp: QApplication, tmp_path: Path, settings: QSettings, **options: object) -> None:
        application()
        args = argparse.Namespace(config=tmp_path / "local" / "smtpsvc.toml", mailroot=tmp_path / "local" / "Mailroot",
                                  listen=["127.0.0.1:0"], domain="example.test", **options)
        self.boxes: list[str] = []
        self.manager = Manager(args, settings)
        self.manager.messages.show_box = lambda title, text, unexpected: self.boxes.append(f"{title}: {text}")
        self.computers = self.manager.computers
        self.computers.confirm_certificate = lambda host_port, fingerprint: True  # type: ignore[method-assign]
        assert self.manager.start_engine() is None
        self.loop = qasync.QEventLoop(qapp)
        asyncio.set_event_loop(self.loop)
        self.window: ManagerWindow = self.manager.window
        self.window.show()

    def run(self, coro: Awaitable[T], timeout: float = 30.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async def wait() -> None:
            while not predicate():
                await asyncio.sleep(0.02)
        self.run(wait(), timeout)

    def close(self) -> None:
        self.run(self.window.runner.drain())
        self.run(self.computers.drain())
        self.window.close()
        self.manager.shutdown()
        self.run(asyncio.sleep(0))
        self.window.deleteLater()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        self.loop.close()
        asyncio.set_event_loop(None)


def ehlo_size(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("window.test")
        return int(client.esmtp_features["size"])


def remote_cli(loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The output of `smtpsvc --connect URL ...` (it runs a loop of its own: the window's is set again after)."""
    capsys.readouterr()
    try:
        assert cli(*args) == 0
    finally:
        asyncio.set_event_loop(loop)
    return capsys.readouterr().out


def config_show(session: Session, engine: AdminServe, capsys: pytest.CaptureFixture[str]) -> str:
    """`smtpsvc --connect URL config show` of that engine."""
    return remote_cli(session.loop, capsys, "--connect", engine.url, "--user", "boss", "config", "show")


def drop_on(tree_viewport: QWidget, point: QPoint, mime: QMimeData) -> None:
    with warnings.catch_warnings():  # Qt 6 has only the QPoint constructor, which PySide marks deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(point, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(tree_viewport, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(point), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(tree_viewport, event)
    assert event.isAccepted()


def test_three_computers_in_one_tree(qapp: QApplication, first: AdminServe, second: AdminServe, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SMTPSVC_PASSWORD", BOSS)
    # No first page and pages of one message: a remote Queue is read through queue.page over HTTPS, page by page.
    monkeypatch.setattr(queue_feed, "FIRST_PAGE", 0)
    monkeypatch.setattr(queue_feed, "PAGE", 1)
    shots = Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path))
    settings = QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat)
    session = Session(qapp, tmp_path, settings)
    window, computers = session.window, session.computers
    try:
        assert session.run(computers.connect(first.url, "boss", "wrong password")) is None
        assert session.boxes and "wrong operator name or password" in session.boxes[-1].lower()
        other_ca = str(second.config.parent / "smtpsvc-cert.pem")  # the Connect dialog's CA file: not first's issuer
        assert session.run(computers.connect(first.url, "boss", BOSS, other_ca)) is None
        assert f"not issued by a certificate authority in {other_ca}" in session.boxes[-1]
        a = session.run(computers.connect(first.url, "boss", BOSS))
        b = session.run(computers.connect(second.url, "boss", BOSS))
        assert a is not None and b is not None and a.key == first.url and b.key == second.url
        tree = window.tree
        labels = [tree.root.child(i).text(0) for i in range(tree.root.childCount())]
        assert tree.root.text(0) == "SMTP Service Manager" and labels[0].endswith("(local computer)")
        assert labels[1:] == [f"mx1.example.test ({first.url})", f"mx2.example.test ({second.url})"]
        assert [window.computers[k].engine for k in (LOCAL, a.key, b.key)] == \
            [session.manager.engine, a.engine, b.engine]  # each node's panes take its own computer's facade
        assert (a.engine.bound_addresses[0][1], b.engine.bound_addresses[0][1]) == (first.port, second.port)

        # A property sheet under the first remote computer: only that engine changes.
        a.select_node(Node.SERVER)
        assert window.current is a
        # With several computers the description bar says whose server it is (the title has the whole path).
        assert window.description_bar.text().startswith("<b>mx1.example.test\\Default SMTP Virtual Server</b>")
        window.actions_.properties.trigger()
        sheet = a.ops.sheet
        assert isinstance(sheet, ServerSheet)
        size = sheet.fields["max_message_size_kb"]
        size.spin.setValue(1000)  # type: ignore[attr-defined]
        closed: list[int] = []
        sheet.finished.connect(closed.append)
        sheet.ok_button.click()
        session.until(lambda: closed == [1])
        assert "max_message_size_kb = 1000" in config_show(session, first, capsys)
        assert "max_message_size_kb = 1000" not in config_show(session, second, capsys)
        assert (ehlo_size(first.port), ehlo_size(second.port)) == (1000 * 1024, 2048 * 1024)
        assert session.manager.engine.config().server.max_message_size_kb != 1000

        # A file dropped on the first remote computer's Pickup node goes into THAT computer's queue.
        session.run(a.engine.apply_config(with_option(with_option(a.engine.config(), "smart_host", "[127.0.0.1]"),
                                                      "outbound_port", 9)))  # held in its queue: port 9 refuses
        far = tmp_path / "far.eml"
        far.write_bytes(FAR)
        a.pickup.ask_first = False
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(far))])
        tree.scrollToItem(a.items[Node.PICKUP])
        drop_on(tree.viewport(), tree.visualItemRect(a.items[Node.PICKUP]).center(), mime)
        session.until(lambda: any(r.status == "queued" for r in a.pickup.results.rows()))
        queue_id = next(r.queue_id for r in a.pickup.results.rows() if r.status == "queued")
        a.select_node(Node.QUEUE)
        session.until(lambda: queue_id in [item.queue_id for item in a.queue_model.items()])
        b.select_node(Node.QUEUE)
        session.until(lambda: not b.queue_feed.loading)
        assert window.pane is b.queue_pane and queue_id not in [i.queue_id for i in b.queue_model.items()]
        assert queue_id in remote_cli(session.loop, capsys, "--connect", first.url, "--user", "boss", "queue", "list")
        assert not (tmp_path / "local" / "Mailroot" / "Queue" / f"{queue_id}.eml").exists()
        # The Pickup history and Check DNS reach that computer's engine too (read ops).
        async def tracked() -> None:
            while queue_id not in [record.queue_id for record in await a.engine.pickup_history(50)]:  # type: ignore[attr-defined]
                await asyncio.sleep(0.1)

        session.run(tracked())
        report = session.run(a.engine.check_dns("127.0.0.5", ()))  # type: ignore[attr-defined]
        assert report.addresses == ("127.0.0.5",) and report.name == "127.0.0.5"

        a.select_node(Node.QUEUE)
        window.resize(1280, 680)
        session.until(lambda: window.pane is a.queue_pane and a.queue_model.total >= 1)
        window.grab().save(str(shots / "three-computers.png"))

        # The second remote engine restarts: its node says so, then comes back by itself.
        second.stop()
        session.until(lambda: b.items[Node.COMPUTER].text(0).endswith("disconnected — retrying"))
        assert not a.items[Node.COMPUTER].text(0).endswith("retrying")
        b.select_node(Node.COMPUTER)
        window.grab().save(str(shots / "three-computers-retrying.png"))
        assert not window.actions_.start.isEnabled()
        second.start()
        session.until(lambda: b.items[Node.COMPUTER].text(0) == f"mx2.example.test ({second.url})", 60)
        session.until(lambda: b.state == "started")
        b.select_node(Node.SESSIONS)
        with smtplib.SMTP("127.0.0.1", second.port, timeout=10) as client:
            client.ehlo("after-restart.test")
            session.until(lambda: b.sessions_model.rowCount() == 1)  # its events follow again

        # All Tasks → Replicate Configuration… from the first remote computer to the second.
        a.select_node(Node.SERVER)
        dialog = computers.replicate(window)
        dialog.user.setText("boss")
        dialog.password.setText(BOSS)
        dialog.peers.setPlainText(second.url)
        dialog.preview.click()
        session.until(lambda: "dry run" in dialog.results.toPlainText())
        assert "max_message_size_kb: 2048 → 1000" in dialog.results.toPlainText()
        dialog.grab().save(str(shots / "replicate-dry-run.png"))
        dialog.replicate.click()
        session.until(lambda: "replicated" in dialog.results.toPlainText())
        assert ehlo_size(second.port) == 1000 * 1024
        dialog.close()

        # New Window from Here: a window rooted at the first remote computer's Queue.
        a.select_node(Node.QUEUE)
        window.actions_.new_window.trigger()
        other = computers.windows[-1]
        assert other is not window and not other.primary
        assert other.tree.currentItem() is other.computers[a.key].items[Node.QUEUE]
        assert other.current.engine is a.engine and list(other.computers) == [a.key]
        session.until(lambda: queue_id in [item.queue_id for item in other.queue_model.items()])
        session.until(lambda: other.queue_pane.count_label.text() == "1 message")
        other.grab().save(str(shots / "new-window-from-here.png"))
        other.close()
        session.until(lambda: other not in computers.windows)

        # Remove Computer: out of the tree and of the remembered list.
        remembered = [e["url"] for e in computers.remembered()]
        assert remembered == [first.url, second.url]
        a.select_node(Node.COMPUTER)
        window.actions_.remove_computer.trigger()
        session.until(lambda: a.key not in window.computers)
        assert tree.root.childCount() == 2 and [e["url"] for e in computers.remembered()] == [second.url]
        assert all(BOSS not in str(value) for value in [settings.value(LIST_KEY)])  # no password kept
        assert len(session.boxes) == 2, session.boxes  # only the wrong password and the wrong CA file were said
    finally:
        session.close()

    # The next start connects the remembered computer again, after asking its password; down at that moment,
    # it is shown "disconnected — retrying" and connects when its engine answers.
    second.stop()
    asked: list[tuple[str, str]] = []
    again = Session(qapp, tmp_path, settings)
    try:
        again.computers.ask_password = lambda url, user: asked.append((url, user)) or BOSS  # type: ignore[method-assign]
        again.run(again.manager.connect_remembered())
        assert asked == [(second.url, "boss")]
        assert list(again.window.computers) == [LOCAL, second.url]
        node = again.window.computers[second.url].items[Node.COMPUTER]
        assert node.text(0) == f"127.0.0.1 ({second.url}) — disconnected — retrying"
        second.start()
        again.until(lambda: node.text(0) == f"mx2.example.test ({second.url})", 60)
        assert again.window.computers[second.url].link == "connected"
        ini = (tmp_path / "ui.ini").read_text()
        assert BOSS not in ini
    finally:
        again.close()


def test_connect_on_the_command_line_opens_the_window_with_that_computer(
        qapp: QApplication, first: AdminServe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`smtpsvc --connect URL --user NAME` without a command: the manager window, that computer beside this one
    (its password asked by the window)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert remote_refusal(build_parser().parse_args(["--connect", first.url])) is None
    session = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat),
                      connect=first.url, user="boss", cafile=None)
    asked: list[tuple[str, str]] = []
    session.computers.ask_password = lambda url, user: asked.append((url, user)) or BOSS  # type: ignore[method-assign]
    try:
        session.run(session.manager.connect_remembered())
        assert asked == [(first.url, "boss")] and list(session.window.computers) == [LOCAL, first.url]
        assert session.window.computers[first.url].label == f"mx1.example.test ({first.url})"
    finally:
        session.close()


def test_the_window_process_serves_remote_administration(qapp: QApplication, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    admin_port = free_port()
    config = admin_config(tmp_path / "local", admin_port)
    args = argparse.Namespace(config=config, mailroot=tmp_path / "local" / "Mailroot", listen=["127.0.0.1:0"],
                              domain="example.test")
    application()
    manager = Manager(args, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    try:
        assert manager.start_engine() is None
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
        monkeypatch.setenv("SMTPSVC_PASSWORD", OPERATORS["watcher"][0])
        capsys.readouterr()
        assert cli("--connect", f"https://127.0.0.1:{admin_port}", "--user", "watcher", "queue", "list",
                   stdin="yes\n") == 0
        assert "Mail queue is empty" in capsys.readouterr().out
    finally:
        manager.shutdown()
        manager.window.close()
        kept.append(manager.window)  # deleting it now would leave its panes' pending layout timers dangling


kept: list[object] = []


def test_remote_security_tab_lists_operators(qapp: QApplication, first: AdminServe, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The Operators list of a remote computer's Security tab goes through its admin server (operators.* ops)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    session = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    try:
        computer = session.run(session.computers.connect(first.url, "boss", BOSS))
        assert computer is not None
        computer.select_node(Node.SERVER)
        session.window.actions_.properties.trigger()
        sheet = computer.ops.sheet
        assert isinstance(sheet, ServerSheet) and sheet.operators_panel is not None
        assert not sheet.users_button.isHidden()  # the accounts of AUTH too (users.* ops)
        panel = sheet.operators_panel
        boxes: list[str] = []
        panel.messages.show_box = lambda title, text, unexpected: boxes.append(f"{title}: {text}")
        session.until(lambda: panel.rows() == [("boss", "admin"), ("watcher", "viewer")])
        panel.list.setCurrentItem(panel.list.topLevelItem(0))
        panel.confirm_remove = lambda name: True  # type: ignore[method-assign]
        panel.remove_button.click()  # pending until Apply, where the engine refuses
        sheet.apply_button.click()
        session.until(lambda: bool(boxes) and not sheet.busy)
        assert boxes[0].endswith("the changes were not applied: Boss is the last admin operator; add another "
                                 "admin first")
        panel.discard()
        panel.ask_operator = lambda name="": ("carol", "carol-secret", "admin")  # type: ignore[method-assign]
        panel.add_button.click()
        operators = computer.engine.list_operators  # type: ignore[attr-defined]
        assert ("carol", "admin") in panel.rows() and ("carol", "admin") not in session.run(operators())
        sheet.apply_button.click()
        session.until(lambda: not panel.pending and not sheet.busy)
        assert ("carol", "admin") in session.run(operators())
        sheet.reject()
        assert load_config(first.config).server.admin_listen  # the remote engine's own file, untouched here
    finally:
        session.close()


def test_remote_session_transcript_and_pickup_folder(qapp: QApplication, first: AdminServe, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote computer's Session Properties shows the live transcript (sessions.transcript), and its Pickup pane
    the files waiting in that computer's Pickup folder while its server is stopped (pickup.list)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    session = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    client = smtplib.SMTP("127.0.0.1", first.port, timeout=10)
    try:
        computer = session.run(session.computers.connect(first.url, "boss", BOSS))
        assert computer is not None
        client.ehlo("transcript.test")
        client.docmd("AUTH", "PLAIN AHVzZXIAaHVudGVyMg==")  # refused (no TLS), its secret masked all the same
        assert client.mail("sender@transcript.test")[0] == 250
        [info] = session.run(computer.engine.list_sessions())
        computer.select_node(Node.SESSIONS)
        session.until(lambda: computer.sessions_model.get(info.session_id) is not None)
        dialog = computer.show_session(info.session_id)
        assert not dialog.transcript.isHidden()
        session.until(lambda: "mail from:<sender@transcript.test>" in dialog.transcript.toPlainText().lower())
        text = dialog.transcript.toPlainText()
        assert "*** (masked)" in text and "AHVzZXIAaHVudGVyMg==" not in text
        dialog.grab().save(str(tmp_path / "remote-session.png"))
        dialog.close()
        computer.panes[Node.SESSIONS].select_key(info.session_id)  # Terminate closes it on that computer
        session.window.update_actions()
        session.window.actions_.terminate.trigger()
        session.until(lambda: computer.sessions_model.get(info.session_id) is None)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
            client.noop()

        session.run(computer.engine.stop())
        session.until(lambda: computer.state == "stopped")
        (first.mailroot / "Pickup" / "waiting.eml").write_bytes(FAR)
        computer.select_node(Node.PICKUP)
        session.until(lambda: "waiting.eml" in computer.pickup_now.text())
        assert computer.pickup_now.text().startswith("In the Pickup folder now: 1 file (waiting.eml), waiting")
        session.window.grab().save(str(tmp_path / "remote-pickup.png"))
    finally:
        client.close()
        session.close()


LOOP = b"".join(b"Received: from hop%d.test by x.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % n
                for n in range(40)) + b"From: a@example.test\r\nTo: bob@example.test\r\nSubject: looped\r\n\r\nx\r\n"


def test_remote_protocol_log(qapp: QApplication, first: AdminServe, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote computer's Protocol Log node lists the lines of THAT computer's protocol log file (log.tail over its
    admin server) that a real SMTP session wrote there, newest first, as the local computer's node does its own."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    session = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    window = session.window
    try:
        computer = session.run(session.computers.connect(first.url, "watcher", OPERATORS["watcher"][0]))
        assert computer is not None  # a viewer: reading the log is a read op
        with smtplib.SMTP("127.0.0.1", first.port, timeout=10) as client:
            client.ehlo("remote-log.test")
            client.sendmail("ann@example.test", ["bob@example.test"], b"Subject: logged there\r\n\r\nhi\r\n")
        computer.select_node(Node.LOG)
        model = computer.protocol_log.model

        def methods() -> list[str]:
            return [row.get("cs-method") for row in sorted(model.rows(), key=lambda row: row.seq)
                    if row.get("c-ip") == "127.0.0.1"]

        session.until(lambda: methods()[-1:] == ["QUIT"])  # read again every 2 s while shown
        assert methods() == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
        assert {row.get("cs-username") for row in model.rows()} == {"remote-log.test"}
        where = computer.protocol_log.where.full
        remote_logs = first.config.parent / "Logs" / "SMTPSVC1"
        assert where.startswith(str(remote_logs)) and "(W3C Extended) — the newest 5 entries" in where
        local = window.computers[LOCAL]
        assert all(row.get("cs-username") != "remote-log.test" for row in local.protocol_log.model.rows())
        assert not session.boxes, session.boxes
        window.resize(1200, 560)
        shots = Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path))
        window.grab().save(str(shots / "remote-protocol-log.png"))
        computer.protocol_log.pane.grab().save(str(shots / "remote-protocol-log-pane.png"))

        computer.select_node(Node.PERFORMANCE)
        session.until(lambda: bool(computer.performance.read_at))
        first.stop()  # the link drops: the next reading says why (no box every second or two), what was read stays
        session.until(lambda: computer.performance.status.text().startswith("Not read again since "))
        assert not session.boxes, session.boxes
        computer.select_node(Node.LOG)
        session.until(lambda: computer.protocol_log.where.full.startswith("Not read again since "))
        assert methods() == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"] and not session.boxes, session.boxes
        window.grab().save(str(shots / "remote-protocol-log-down.png"))
    finally:
        session.close()


def test_every_node_of_a_remote_computer(qapp: QApplication, first: AdminServe, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Domains, Queue, Drop, Badmail, Event Viewer and Performance of a remote computer list what is on THAT
    computer (over its admin server), and their actions (properties, freeze, view, resend, delete) act there."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SMTPSVC_PASSWORD", BOSS)
    remote = ("--connect", first.url, "--user", "boss")
    assert cli(*remote, "config", "domain", "add", "branch.test", "--type", "remote", stdin="yes\n") == 0
    assert cli(*remote, "config", "domain", "add", "partner.test", "--type", "remote", "--relay", "--smart-host",
               "127.0.0.1:9") == 0  # port 9 refuses: its mail stays queued
    with smtplib.SMTP("127.0.0.1", first.port, timeout=10) as client:
        client.sendmail("ann@example.test", ["x@partner.test"], b"Subject: held there\r\n\r\nhi\r\n")
    with smtplib.SMTP("127.0.0.1", first.port, timeout=10) as client:
        client.sendmail("ann@example.test", ["bob@example.test"], b"Subject: to the remote drop\r\n\r\nhi\r\n")
    (first.mailroot / "Pickup" / "loop.eml").write_bytes(LOOP)  # refused by that computer's Pickup: its Badmail
    session = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    window = session.window
    try:
        computer = session.run(session.computers.connect(first.url, "boss", BOSS))
        assert computer is not None
        computer.ops.confirm = lambda title, question: True  # type: ignore[method-assign]
        local = window.computers[LOCAL]

        computer.select_node(Node.DOMAINS)
        session.until(lambda: computer.domains_model.get("branch.test") is not None)
        assert local.domains_model.get("branch.test") is None
        computer.panes[Node.DOMAINS].select_key("branch.test")  # its property sheet: applied on that computer
        window.update_actions()
        window.actions_.properties.trigger()
        sheet = computer.ops.sheet
        assert isinstance(sheet, DomainSheet) and not sheet.relay_check.isChecked()
        sheet.relay_check.setChecked(True)
        closed: list[int] = []
        sheet.finished.connect(closed.append)
        sheet.ok_button.click()
        session.until(lambda: closed == [1])
        assert {d.name: d.relay_allowed for d in load_config(first.config).domains}["branch.test"]
        computer.panes[Node.DOMAINS].select_key("branch.test")
        window.update_actions()
        window.actions_.delete.trigger()
        session.until(lambda: computer.domains_model.get("branch.test") is None)
        assert "branch.test" not in {d.name for d in load_config(first.config).domains}

        computer.select_node(Node.QUEUE)  # the queue actions act on that computer's queue
        session.until(lambda: computer.queue_model.total == 1)
        [held] = [item.queue_id for item in computer.queue_model.items()]
        assert not local.queue_model.total
        computer.queue_pane.select_key(held)
        window.update_actions()
        window.actions_.freeze.trigger()
        session.until(lambda: [i.state for i in computer.queue_model.items()] == ["frozen"])
        assert f"{held}!" in remote_cli(session.loop, capsys, *remote, "queue", "list")
        computer.queue_pane.select_key(held)
        window.update_actions()
        window.actions_.delete.trigger()
        session.until(lambda: computer.queue_model.total == 0)
        assert held not in remote_cli(session.loop, capsys, *remote, "queue", "list")

        computer.select_node(Node.DROP)
        session.until(lambda: [r.subject for r in computer.drop_model.rows()] == ["to the remote drop"])
        assert not local.drop_model.rows()
        [dropped] = computer.drop_model.rows()
        computer.panes[Node.DROP].select_key(dropped.ref)
        window.actions_.view_message.trigger()  # the message read from that computer (drop.read)
        session.until(lambda: any(v.parts.subject == "to the remote drop" for v in computer.mail_ops.viewers))
        for viewer in list(computer.mail_ops.viewers):
            viewer.close()
        window.update_actions()
        window.actions_.resend.trigger()  # a copy into that computer's Pickup (drop.resend): delivered there again
        session.until(lambda: [r.subject for r in computer.drop_model.rows()] == ["to the remote drop"] * 2)
        assert (first.mailroot / "Drop" / dropped.name).exists() and not local.drop_model.rows()
        for ref in [r.ref for r in computer.drop_model.rows()]:
            computer.panes[Node.DROP].select_key(ref)
            window.actions_.delete.trigger()
            session.until(lambda ref=ref: computer.drop_model.get(ref) is None)
        assert not list((first.mailroot / "Drop").glob("*.eml"))

        computer.select_node(Node.BADMAIL)
        session.until(lambda: any("hop count" in r.reason for r in computer.badmail_model.rows()))
        [bad] = computer.badmail_model.rows()
        computer.panes[Node.BADMAIL].select_key(bad.name)
        window.update_actions()
        window.actions_.resend.trigger()  # back into that computer's Pickup: badmailed again, a new name
        session.until(lambda: computer.badmail_model.get(bad.name) is None)
        session.until(lambda: computer.badmail_model.rowCount() == 1)
        [again] = computer.badmail_model.rows()
        computer.panes[Node.BADMAIL].select_key(again.name)
        window.update_actions()
        window.actions_.delete.trigger()
        session.until(lambda: computer.badmail_model.rowCount() == 0)
        assert not list((first.mailroot / "Badmail").iterdir())

        computer.select_node(Node.EVENTS)
        model = computer.event_viewer.model
        session.until(lambda: any("Operator boss" in e.text and "domain.add" in e.text for e in model.entries))
        assert not any("branch.test" in e.text for e in local.event_viewer.model.entries)

        # Pause, Continue, Stop and Start from the toolbar act on that computer's server.
        computer.select_node(Node.SERVER)
        window.update_actions()
        for action, state in ((window.actions_.pause, "paused"), (window.actions_.pause, "started"),
                              (window.actions_.stop, "stopped"), (window.actions_.start, "started")):
            session.until(action.isEnabled)
            action.trigger()
            session.until(lambda wanted=state: computer.state == wanted)
        assert local.state == "started"
        with smtplib.SMTP("127.0.0.1", first.port, timeout=10) as client:
            assert client.ehlo("again.test")[0] == 250  # listening again

        computer.select_node(Node.PERFORMANCE)
        session.until(lambda: bool(computer.performance.history.samples))
        assert "Messages Received Total" in computer.performance.history.names
        window.resize(1100, 640)
        window.grab().save(str(tmp_path / "remote-performance.png"))
    finally:
        session.close()


def test_a_certificate_changed_while_connected_is_refused_not_retried(qapp: QApplication, first: AdminServe,
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The remote engine restarts with another certificate: its node says the certificate is refused (the reason
    in the status bar's tooltip), rather than "disconnected — retrying" for ever; nothing goes to the impostor."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    session = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    window = session.window
    try:
        computer = session.run(session.computers.connect(first.url, "boss", BOSS))  # confirmed and pinned
        assert computer is not None
        computer.select_node(Node.COMPUTER)
        first.stop()
        assert cli("cert", "new", "--force", "--config", str(first.config), "--fqdn", "localhost") == 0
        asyncio.set_event_loop(session.loop)  # the command line ran a loop of its own
        first.start()
        node = computer.items[Node.COMPUTER]
        session.until(lambda: node.text(0).endswith("certificate refused — not connected"), 60)
        assert computer.link == "untrusted" and "has CHANGED" in computer.link_reason
        assert window.state_label.text() == "Certificate refused — not connected"
        assert "has CHANGED" in window.state_label.toolTip()
        assert not window.actions_.start.isEnabled() and not window.actions_.stop.isEnabled()
        window.resize(1000, 520)
        window.grab().save(str(Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path)) / "certificate-refused.png"))
    finally:
        session.close()


def new_certificate(loop: asyncio.AbstractEventLoop | None, engine: AdminServe) -> str:
    """The engine restarted with a certificate of its own making (`smtpsvc cert new --force`): its fingerprint."""
    engine.stop()
    assert cli("cert", "new", "--force", "--config", str(engine.config), "--fqdn", "localhost") == 0
    asyncio.set_event_loop(loop)  # the command line ran a loop of its own
    engine.start()
    pem = (engine.config.parent / "smtpsvc-cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()


def test_trust_new_certificate_replaces_the_pin_and_connects_again(qapp: QApplication, first: AdminServe,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A computer whose certificate was refused: Trust New Certificate… shows the new and the pinned fingerprint;
    No changes nothing, Yes replaces the pin in known_servers and connects again (twice: two certificate changes).
    Only in that state is the action enabled."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    session = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    window = session.window
    trust = window.actions_.trust_certificate
    known = known_servers_path()
    host_port = f"127.0.0.1:{first.admin_port}"
    asked: list[str] = []

    def answer(button: QMessageBox.StandardButton, shot: str = "") -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        asked.append(box.text())
        if shot:
            box.grab().save(str(Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path)) / shot))
        box.button(button).click()

    try:
        computer = session.run(session.computers.connect(first.url, "boss", BOSS))  # confirmed and pinned
        assert computer is not None
        computer.select_node(Node.COMPUTER)
        window.update_actions()
        assert trust.isVisible() and not trust.isEnabled()
        assert trust in window.node_actions(Node.COMPUTER)
        for change in (1, 2):
            old = read_known(known)[host_port]
            new = new_certificate(session.loop, first)
            session.until(lambda: computer.link == "untrusted", 60)
            window.update_actions()
            assert trust.isEnabled()
            if change == 1:  # the node's menu offers it; answered No: known_servers unchanged, still refused
                tree = window.tree
                window._tree_menu(tree.visualItemRect(computer.items[Node.COMPUTER]).center())
                [menu] = [m for m in window.findChildren(QMenu) if m.isVisible() and trust in m.actions()]
                menu.grab().save(str(Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path)) / "trust-menu.png"))
                menu.close()
                before = known.read_bytes()
                QTimer.singleShot(0, window, lambda: answer(QMessageBox.StandardButton.No, "trust-question.png"))
                trust.trigger()
                session.run(session.computers.drain())
                assert known.read_bytes() == before and computer.link == "untrusted"
                shown = asked[-1].replace("\n", "").replace(":", "").lower()
                assert new in shown and old in shown and shown.index(new) < shown.index(old)
            QTimer.singleShot(0, window, lambda: answer(QMessageBox.StandardButton.Yes))
            trust.trigger()
            session.until(lambda: computer.link == "connected", 60)
            assert read_known(known)[host_port] == new
            assert not computer.items[Node.COMPUTER].text(0).endswith("not connected")
            session.until(lambda: "new certificate is trusted" in window.statusBar().currentMessage())
            window.update_actions()
            assert not trust.isEnabled()
        assert len(asked) == 3
        assert computer.engine.config().server.fqdn == "mx1.example.test"  # read again over the new trust
        computer.select_node(Node.DOMAINS)  # and its nodes work
        session.until(lambda: computer.domains_model.get("example.test") is not None)
        assert not session.boxes, session.boxes  # (a Current Sessions poll during the restart notes, no box)
    finally:
        session.close()

    # Changed while the window was closed: at the next start the remembered computer is in the tree, refused,
    # and trusted from there (it used to be left out with a box, known_servers to be edited by hand).
    new = new_certificate(None, first)
    again = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    try:
        again.computers.ask_password = lambda url, user: BOSS  # type: ignore[method-assign]
        again.run(again.manager.connect_remembered())
        computer = again.window.computers[first.url]
        assert computer.link == "untrusted" and "has CHANGED" in computer.link_reason
        assert computer.items[Node.COMPUTER].text(0).endswith("certificate refused — not connected")
        computer.select_node(Node.COMPUTER)
        again.window.update_actions()
        again.window.resize(1000, 520)
        again.window.grab().save(str(Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path)) / "refused-at-start.png"))
        QTimer.singleShot(0, again.window, lambda: answer(QMessageBox.StandardButton.Yes))
        again.window.actions_.trust_certificate.trigger()
        again.until(lambda: computer.link == "connected", 60)
        assert read_known(known)[host_port] == new and len(asked) == 4
        again.until(lambda: computer.items[Node.COMPUTER].text(0) == f"mx1.example.test ({first.url})")
        assert not again.boxes, again.boxes
    finally:
        again.close()


def test_file_connect_to_computer_through_its_dialog(qapp: QApplication, first: AdminServe, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """File → Connect to Computer… opens the dialog; the address, operator, password and CA file typed there
    connect (the CA file: no certificate question), and the computer appears beside this one."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    session = Session(qapp, tmp_path, QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    window = session.window
    session.computers.confirm_certificate = lambda host_port, fingerprint: False  # type: ignore[method-assign]
    by_name = f"https://localhost:{first.admin_port}"
    shown: list[str] = []

    def fill() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, ConnectDialog)
        dialog.address.setCurrentText(by_name)
        dialog.user.setText("boss")
        dialog.password.setText(BOSS)
        dialog.cafile.setText(str(first.config.parent / "smtpsvc-cert.pem"))
        dialog.grab().save(str(Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path)) / "connect-filled.png"))
        shown.append(dialog.windowTitle())
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()

    try:
        assert window.actions_.connect.isEnabled()
        QTimer.singleShot(0, window, fill)  # the dialog is modal: filled in from the event loop it runs
        window.actions_.connect.trigger()
        assert shown == ["Connect to Computer"]
        session.until(lambda: by_name in window.computers and window.computers[by_name].link == "connected")
        assert window.computers[by_name].label == f"mx1.example.test ({by_name})"
        assert [e["url"] for e in session.computers.remembered()] == [by_name]
        assert not session.boxes, session.boxes
        # By its address there is no CA file: the fingerprint question, answered No: not connected, nothing pinned.
        assert session.run(session.computers.connect(first.url, "boss", BOSS)) is None
        assert "is not trusted: not confirmed" in session.boxes[-1] and first.url not in window.computers
        assert not (tmp_path / "xdg" / "smtpsvc" / "known_servers").exists()
    finally:
        session.close()
