"""File → Connect to Computer…: a real `smtpsvc serve` administered from a manager window over HTTPS (offscreen)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import smtplib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import qasync
from admin_support import OPERATORS, AdminServe, admin_config, cli
from PySide6.QtCore import QEvent, QSettings
from PySide6.QtWidgets import QApplication, QWidget
from serve_support import free_port

from app.manager import Manager, application
from app.remote_window import RemoteComputers
from engine.conf.config_file import with_option
from ui.errors import MessageBridge
from ui.scope import Node
from ui.server_sheet import ServerSheet

T = TypeVar("T")
FAR = b"From: a@example.test\r\nTo: x@partner.test\r\nSubject: far away\r\n\r\nbody\r\n"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AdminServe]:
    process = AdminServe(tmp_path / "remote")
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[AdminServe]:
    """A second engine for replication. Made before the test's loop is set: the command line that writes its
    configuration may run (and end) an asyncio loop of its own on this thread."""
    process = AdminServe(tmp_path / "peer")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def ehlo_size(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("window.test")
        return int(client.esmtp_features["size"])


def test_remote_computer_in_a_window(qapp: QApplication, engine: AdminServe, peer: AdminServe, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    application()
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)

    def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async def wait() -> None:
            while not predicate():
                await asyncio.sleep(0.02)
        run(wait(), timeout)

    boxes: list[str] = []
    messages = MessageBridge()
    messages.show_box = lambda title, text, unexpected: boxes.append(f"{title}: {text}")
    parent = QWidget()
    settings = QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat)
    computers = RemoteComputers(settings, messages, lambda: parent)
    asked: list[str] = []
    computers.confirm_certificate = lambda host_port, fingerprint: bool(asked.append(fingerprint)) or True  # type: ignore[method-assign]
    try:
        assert run(computers.connect(engine.url, "boss", "wrong password")) is None
        assert boxes and "wrong operator name or password" in boxes[-1].lower()
        window = run(computers.connect(engine.url, "boss", OPERATORS["boss"][0]))
        assert window is not None and len(asked) == 1  # asked once, then pinned
        assert (tmp_path / "xdg" / "smtpsvc" / "known_servers").exists()
        assert computers.recent() == [engine.url]
        remote_window, transport = computers.windows[f"127.0.0.1:{engine.admin_port}"]
        host = remote_window.engine
        assert window.state == "started" and host.bound_addresses[0][1] == engine.port

        # Drag and drop into Pickup goes through the Posting Acceptor; the queue pane follows the events.
        run(host.apply_config(with_option(with_option(host.config(), "smart_host", "[127.0.0.1]"),
                                          "outbound_port", 9)))
        queue_id = run(host.submit_to_pickup(FAR, "far.eml"))
        window.select_node(Node.QUEUE)
        until(lambda: queue_id in [item.queue_id for item in window.queue_model.items()])
        # The Pickup history and Check DNS reach the remote engine too (read ops).
        async def tracked() -> None:
            while queue_id not in [record.queue_id for record in await host.pickup_history(50)]:
                await asyncio.sleep(0.1)

        run(tracked())
        report = run(host.check_dns("127.0.0.5", ()))  # an address: no lookup leaves the machine
        assert report.addresses == ("127.0.0.5",) and report.name == "127.0.0.5"
        detail = run(host.queue_detail(queue_id))
        assert detail.item.recipients == ("x@partner.test",)

        # A property sheet's Apply: the remote engine takes it (and saves it).
        run(host.apply_config(with_option(host.config(), "max_message_size_kb", 1000)))
        assert ehlo_size(engine.port) == 1000 * 1024
        until(lambda: host.config().server.max_message_size_kb == 1000)

        window.actions_.pause.trigger()
        until(lambda: window.state == "paused")
        window.select_node(Node.SERVER)
        shots = Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path))
        window.select_node(Node.QUEUE)
        window.grab().save(str(shots / "remote-queue.png"))
        window.select_node(Node.SERVER)
        window.grab().save(str(shots / "remote-window.png"))

        # All Tasks → Replicate Configuration…: to a second engine (its certificate pinned by connecting once).
        assert run(computers.connect(peer.url, "boss", OPERATORS["boss"][0])) is not None
        dialog = computers.replicate(window)
        dialog.user.setText("boss")
        dialog.password.setText(OPERATORS["boss"][0])
        dialog.peers.setPlainText(peer.url)
        dialog.preview.click()
        until(lambda: "dry run" in dialog.results.toPlainText())
        assert "max_message_size_kb: 2048 → 1000" in dialog.results.toPlainText()
        assert ehlo_size(peer.port) == 2048 * 1024
        dialog.replicate.click()
        until(lambda: "replicated" in dialog.results.toPlainText())
        dialog.grab().save(str(shots / "remote-replicate.png"))
        assert ehlo_size(peer.port) == 1000 * 1024
        dialog.close()

        # The remote engine restarts: the window says so, reconnects, and shows the state it finds.
        links: list[str] = []
        transport.link_changed = links.append
        engine.stop()
        until(lambda: "disconnected" in links)
        engine.start()
        until(lambda: links[-1] == "connected", 60)
        assert host.state == "started"
        for other in [w for w, _ in computers.windows.values()]:
            other.close()
        until(lambda: not computers.windows)
        run(computers.drain())
        assert len(boxes) == 1  # only the wrong password was said
    finally:
        run(computers.drain())
        computers.shutdown()
        run(asyncio.sleep(0))
        for widget in (parent,):
            widget.deleteLater()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        loop.close()
        asyncio.set_event_loop(None)


kept: list[object] = []


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


def test_remote_security_tab_lists_operators(qapp: QApplication, engine: AdminServe, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The Operators list of a remote computer's Security tab goes through its admin server (operators.* ops)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    application()
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)

    def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        async def wait() -> None:
            while not predicate():
                await asyncio.sleep(0.02)
        run(wait(), timeout)

    boxes: list[str] = []
    messages = MessageBridge()
    messages.show_box = lambda title, text, unexpected: boxes.append(f"{title}: {text}")
    parent = QWidget()
    computers = RemoteComputers(QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat), messages,
                                lambda: parent)
    computers.confirm_certificate = lambda host_port, fingerprint: True  # type: ignore[method-assign]
    try:
        window = run(computers.connect(engine.url, "boss", OPERATORS["boss"][0]))
        assert window is not None
        host = computers.windows[f"127.0.0.1:{engine.admin_port}"][0].engine
        window.select_node(Node.SERVER)
        window.actions_.properties.trigger()
        sheet = window.ops.sheet
        assert isinstance(sheet, ServerSheet) and sheet.operators_panel is not None
        assert not sheet.users_button.isHidden()  # the accounts of AUTH too (users.* ops)
        panel = sheet.operators_panel
        panel.messages.show_box = lambda title, text, unexpected: boxes.append(f"{title}: {text}")
        until(lambda: panel.rows() == [("boss", "admin"), ("watcher", "viewer")])
        panel.list.setCurrentItem(panel.list.topLevelItem(0))
        panel.confirm_remove = lambda name: True  # type: ignore[method-assign]
        panel.remove_button.click()  # pending until Apply, where the engine refuses
        sheet.apply_button.click()
        until(lambda: bool(boxes) and not sheet.busy)
        assert boxes[0].endswith("the changes were not applied: Boss is the last admin operator; add another "
                                 "admin first")
        panel.discard()
        panel.ask_operator = lambda name="": ("carol", "carol-secret", "admin")  # type: ignore[method-assign]
        panel.add_button.click()
        assert ("carol", "admin") in panel.rows() and ("carol", "admin") not in run(host.list_operators())
        sheet.apply_button.click()
        until(lambda: not panel.pending and not sheet.busy)
        assert ("carol", "admin") in run(host.list_operators())
        sheet.reject()
        window.close()
        until(lambda: not computers.windows)
    finally:
        run(computers.drain())
        computers.shutdown()
        run(asyncio.sleep(0))
        parent.deleteLater()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        loop.close()
        asyncio.set_event_loop(None)
