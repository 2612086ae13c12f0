"""The manager window with the REAL embedded engine on a temp Mailroot and a free loopback port (offscreen)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import smtplib
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
import qasync
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from PySide6.QtCore import QEvent, QSettings, QTimer
from PySide6.QtWidgets import QApplication, QToolButton

from app import manager as manager_module
from app.manager import Manager, application, run_manager
from engine.conf.config_file import load_config
from ui.option_fields import LimitField
from ui.result_pane import ResultPane
from ui.scope import Node
from ui.server_sheet import ServerSheet
from ui.session_detail import SessionDialog
from ui.users_dialog import UsersDialog
from ui.window import ManagerWindow

T = TypeVar("T")
MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: window\r\n\r\nbody\r\n"


def arguments(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(config=tmp_path / "smtpsvc.toml", mailroot=tmp_path / "Mailroot",
                              listen=["127.0.0.1:0"], domain="example.test")


class Run:
    """A started Manager (engine thread + window) and the qasync loop the window runs on."""

    def __init__(self, manager: Manager, loop: qasync.QEventLoop) -> None:
        self.manager = manager
        self.window: ManagerWindow = manager.window
        self.loop = loop

    def run(self, coro: Awaitable[T], timeout: float = 20.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate():
                await asyncio.sleep(0.02)

        self.run(wait(), timeout)

    @property
    def port(self) -> int:
        return self.manager.host.bound_addresses[0][1]

    def click(self, action_name: str) -> None:
        button = self.window.toolbar.widgetForAction(getattr(self.window.actions_, action_name))
        assert isinstance(button, QToolButton) and button.isEnabled(), action_name
        button.click()


@pytest.fixture
def running(qapp: QApplication, tmp_path: Path) -> Iterator[Run]:
    application()
    manager = Manager(arguments(tmp_path), QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    manager.messages.show_box = lambda title, text, unexpected: pytest.fail(f"message box: {title}: {text}")
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


def dispose(window: ManagerWindow) -> None:
    """Delete the window's C++ objects here, on the GUI thread, not whenever (and wherever) the GC runs."""
    window.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def banner(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.recv(1024).decode()


def test_session_row_appears_and_disappears(running: Run) -> None:
    window = running.window
    window.select_node(Node.SESSIONS)
    connected, leave = threading.Event(), threading.Event()

    def client() -> None:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as smtp:
            smtp.ehlo("client.test")
            connected.set()
            leave.wait(10)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        running.until(lambda: window.sessions_model.rowCount() == 1)
        row = window.sessions_model.rows()[0]
        assert (row.peer, row.user) == ("127.0.0.1", "(anonymous)")
        assert window.count_label.text() == "1 domain, 1 session"
        running.until(lambda: window.sessions_model.rows()[0].command != "")  # refreshed from the engine
    finally:
        leave.set()
        thread.join()
    running.until(lambda: window.sessions_model.rowCount() == 0)


def test_session_columns_and_properties_follow_the_client(running: Run, tmp_path: Path) -> None:
    window = running.window
    window.select_node(Node.SESSIONS)
    sessions = window.panes[Node.SESSIONS]
    assert isinstance(sessions, ResultPane) and sessions.detail.empty_text == "No client is connected."
    client = smtplib.SMTP("127.0.0.1", running.port, timeout=10)
    try:
        client.ehlo("ws-017.example.test")
        client.mail("anna@example.test")
        running.until(lambda: window.sessions_model.rowCount() == 1 and
                      window.sessions_model.rows()[0].sender == "anna@example.test")
        model = window.sessions_model
        titles = [column.title for column in model.columns]
        row = {title: model.data(model.index(0, number)) for number, title in enumerate(titles)}
        assert (row["EHLO Name"], row["Sender"], row["TLS"], row["Listener"]) == \
            ("ws-017.example.test", "anna@example.test", "—", f"127.0.0.1:{running.port}")
        [key] = [r.session_id for r in model.rows()]
        sessions.select_key(key)
        window.update_actions()
        assert window.actions_.properties.isEnabled()
        window.actions_.properties.trigger()  # Alt+Enter, as a double-click
        [dialog] = [d for d in window.findChildren(SessionDialog) if d.isVisible()]
        assert dialog.labels["EHLO name"].text() == "ws-017.example.test"
        assert dialog.labels["Sender"].text() == "anna@example.test"
        running.until(lambda: ">>> mail FROM:<anna@example.test>" in dialog.transcript.toPlainText())  # smtplib's
        lines = dialog.transcript.toPlainText().splitlines()
        assert ">>> ehlo ws-017.example.test" in lines and "<<< 250 HELP" in lines  # each reply line marked
        assert any(line.startswith("<<< 250 2.1.0") for line in lines)
        dialog.grab().save(str(tmp_path / "session.png"))
        dialog.terminate_button.click()
        running.until(lambda: dialog.ended.isVisible(), 10)
        assert not dialog.terminate_button.isEnabled()
    finally:
        client.close()


def test_users_dialog_manages_the_accounts_that_authenticate(running: Run, tmp_path: Path) -> None:
    window = running.window
    host = running.manager.engine
    config = host.config()
    server = replace(config.server, users_file=str(tmp_path / "users"), auth_basic=True,
                     auth_plaintext_allowed=True)
    running.run(host.apply_config(replace(config, server=server)))
    window.select_node(Node.SERVER)
    window.actions_.properties.trigger()
    sheet = window.ops.sheet
    assert isinstance(sheet, ServerSheet) and sheet.users_button.isEnabled()
    sheet.users_button.click()
    [dialog] = [d for d in sheet.findChildren(UsersDialog) if d.isVisible()]
    running.until(lambda: dialog.status.text() == "0 accounts.")
    dialog.ask_account = lambda name="": (name or "alice", "first secret")  # type: ignore[method-assign]
    dialog.add_button.click()
    running.until(lambda: [dialog.list.item(i).text() for i in range(dialog.list.count())] == ["alice"])

    def login(password: str) -> int:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.ehlo("c")
            try:
                return client.login("alice", password)[0]
            except smtplib.SMTPAuthenticationError as error:
                return error.smtp_code

    assert login("first secret") == 235
    dialog.list.setCurrentRow(0)
    dialog.ask_account = lambda name="": (name, "second secret")  # type: ignore[method-assign]
    dialog.password_button.click()
    running.until(lambda: not dialog.busy)
    assert dialog.remove_button.isEnabled()  # not busy = the list reloaded and usable (a click was lost here)
    assert login("second secret") == 235 and login("first secret") == 535
    dialog.grab().save(str(tmp_path / "users.png"))
    dialog.list.setCurrentRow(0)
    dialog.confirm_remove = lambda name: True  # type: ignore[method-assign]
    dialog.remove_button.click()
    running.until(lambda: dialog.list.count() == 0 and not dialog.busy)
    assert running.run(host.list_users()) == []
    sheet.reject()


def test_certificate_page_creates_checks_and_uses_a_certificate(running: Run, tmp_path: Path) -> None:
    window = running.window
    window.select_node(Node.SERVER)
    window.actions_.properties.trigger()
    sheet = window.ops.sheet
    assert isinstance(sheet, ServerSheet)
    panel = sheet.certificate_panel
    assert panel is not None
    running.until(lambda: panel.report is not None)
    assert panel.report is not None and panel.report.info is None and "STARTTLS is not offered" in \
        panel.details.text()
    panel.ask_new = lambda: ("mx.example.test", ("mail.example.test",), 90)  # type: ignore[method-assign]
    panel.create_button.click()
    running.until(lambda: sheet.fields["tls_certificate"].value() != "")
    running.until(lambda: panel.report is not None and panel.report.info is not None)
    report = panel.report
    assert report is not None and report.info is not None and report.problem == ""
    assert report.info.names == ("mx.example.test", "mail.example.test") and report.info.self_signed
    assert "match and load" in panel.details.text()
    first = (sheet.fields["tls_certificate"].value(), sheet.fields["tls_key"].value())
    panel.create_button.click()  # a second pair: new names, the first is not replaced
    running.until(lambda: sheet.fields["tls_certificate"].value() != first[0])
    assert Path(first[0]).exists() and sheet.fields["tls_certificate"].value().endswith("-2.pem")
    panel.ask_files = lambda: (first[0], sheet.fields["tls_key"].value())  # type: ignore[method-assign]
    panel.import_button.click()  # certificate 1 with key 2: they do not match
    running.until(lambda: panel.report is not None and panel.report.problem != "")
    assert "does not belong to this certificate" in panel.details.text()
    panel.ask_files = lambda: first  # type: ignore[method-assign]
    panel.import_button.click()
    running.until(lambda: panel.report is not None and panel.report.problem == "" and
                  panel.report.info is not None)
    panel.ask_new = lambda: ("short.example.test", (), 10)  # type: ignore[method-assign]
    panel.create_button.click()  # one that expires soon says so
    running.until(lambda: panel.report is not None and panel.report.info is not None and
                  panel.report.info.names == ("short.example.test",))
    assert "expires in 9 days" in panel.details.text() or "expires in 10 days" in panel.details.text()
    panel.remove_button.click()  # no certificate: STARTTLS is not offered
    assert (sheet.fields["tls_certificate"].value(), sheet.fields["tls_key"].value()) == ("", "")
    running.until(lambda: panel.report is not None and panel.report.info is None)
    assert not panel.remove_button.isEnabled()
    panel.import_button.click()  # the first pair again
    running.until(lambda: panel.report is not None and panel.report.problem == "" and
                  panel.report.info is not None and panel.report.info.names[0] == "mx.example.test")
    dialog = panel.window()
    dialog.grab().save(str(tmp_path / "certificate.png"))
    sheet.ok_button.click()
    running.until(lambda: running.manager.host.config().server.tls_certificate == first[0])
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client.ehlo("c")
        assert client.has_extn("starttls")


def test_certificate_page_imports_a_pfx_and_views_it(running: Run, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x5EED).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=60))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mx.example.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    pfx = tmp_path / "exported.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(b"mx", key, cert, None,
                                                          serialization.BestAvailableEncryption(b"open sesame")))
    window = running.window
    window.select_node(Node.SERVER)
    window.actions_.properties.trigger()
    sheet = window.ops.sheet
    assert isinstance(sheet, ServerSheet)
    panel = sheet.certificate_panel
    assert panel is not None
    running.until(lambda: panel.report is not None)
    assert not panel.view_button.isEnabled()  # nothing to view yet
    asked: list[bool] = []
    answers = iter(["wrong", "open sesame"])
    panel.ask_files = lambda: (str(pfx), "")  # type: ignore[method-assign]
    panel.ask_password = lambda path, again: asked.append(again) or next(answers)  # type: ignore[method-assign]
    panel.import_button.click()
    running.until(lambda: sheet.fields["tls_certificate"].value() != "")
    assert asked == [False, True]  # the wrong password was asked again, saying so
    certificate, key_file = sheet.fields["tls_certificate"].value(), sheet.fields["tls_key"].value()
    assert certificate.endswith(".pem") and key_file.endswith(".pem") and Path(key_file).stat().st_mode & 0o077 == 0
    running.until(lambda: panel.report is not None and panel.report.info is not None)
    assert panel.report is not None and panel.report.problem == "" and panel.view_button.isEnabled()
    viewer = panel.view()
    assert viewer is not None
    fields = {viewer.details.topLevelItem(row).text(0): viewer.details.topLevelItem(row).text(1)
              for row in range(viewer.details.topLevelItemCount())}
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    assert fields["SHA-256 fingerprint"].replace(":", "") == digest
    assert fields["Serial number"] == "5E:ED" and fields["Public key"] == "EC secp256r1 (256 bits)"
    assert len(fields["SHA-1 fingerprint"].split(":")) == 20
    viewer.tabs.setCurrentIndex(1)
    viewer.grab().save(str(tmp_path / "view-certificate.png"))
    viewer.close()
    sheet.ok_button.click()
    running.until(lambda: running.manager.host.config().server.tls_certificate == certificate)
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # self-signed: the digest is compared
        client.starttls(context=context)
        presented = client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    assert x509.load_der_x509_certificate(presented).fingerprint(hashes.SHA256()).hex().upper() == digest


def test_terminate_all_from_the_window(running: Run) -> None:
    window = running.window
    window.select_node(Node.SESSIONS)
    window.ops.confirm = lambda title, question: True  # type: ignore[method-assign]
    client = smtplib.SMTP("127.0.0.1", running.port, timeout=10)
    try:
        running.until(lambda: window.sessions_model.rowCount() == 1)
        window.actions_.terminate_all.trigger()
        running.until(lambda: window.sessions_model.rowCount() == 0)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
            client.noop()
    finally:
        client.close()


def test_pause_continue_stop_start_from_the_toolbar(running: Run) -> None:
    window = running.window
    port = running.port
    assert banner(port).startswith("220 ")
    running.click("pause")
    running.until(lambda: window.state == "paused")
    assert banner(port).startswith("421 ")
    assert window.state_label.text() == "Paused"
    running.click("pause")  # Continue
    running.until(lambda: window.state == "started")
    assert banner(port).startswith("220 ")
    running.click("stop")
    running.until(lambda: window.state == "stopped")
    with pytest.raises(ConnectionRefusedError):
        banner(port)
    running.click("start")
    running.until(lambda: window.state == "started")
    assert banner(running.port).startswith("220 ")
    assert window.address_label.text() == f"Listening on 127.0.0.1:{running.port}"


def ehlo_size(port: int) -> str | None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.test")
        return smtp.esmtp_features.get("size")


def test_message_size_limit_from_the_sheet_changes_ehlo(running: Run, tmp_path: Path) -> None:
    window = running.window
    assert ehlo_size(running.port) == "2097152"
    window.select_node(Node.SERVER)
    window.actions_.properties.trigger()
    sheet = window.ops.sheet
    assert isinstance(sheet, ServerSheet)
    size = sheet.fields["max_message_size_kb"]
    assert isinstance(size, LimitField)
    size.spin.setValue(1024)
    closed: list[int] = []
    sheet.finished.connect(closed.append)
    sheet.ok_button.click()
    running.until(lambda: closed == [1])  # accepted (then deleted) once the engine took it
    assert ehlo_size(running.port) == "1048576"
    assert load_config(tmp_path / "smtpsvc.toml").server.max_message_size_kb == 1024


def test_closing_the_window_stops_the_engine_and_keeps_mail(running: Run, tmp_path: Path) -> None:
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as smtp:
        smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)
    running.window.close()
    running.manager.shutdown()
    assert not running.manager.host.running
    assert len(list((tmp_path / "Mailroot" / "Drop").glob("*.eml"))) == 1


def test_second_manager_on_the_same_mailroot_says_why_and_exits_nonzero(
        running: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(manager_module.QMessageBox, "critical",
                        lambda parent, title, text: shown.append(text))
    assert run_manager(arguments(tmp_path)) == 1
    assert len(shown) == 1
    assert "is in use by another smtpsvc engine" in shown[0] and "--mailroot" in shown[0]
    assert running.manager.host.state == "started"  # the first one is unharmed
    assert banner(running.port).startswith("220 ")


def test_run_manager_opens_the_window_and_exits_cleanly(qapp: QApplication, tmp_path: Path) -> None:
    def close_windows() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, ManagerWindow) and widget.isVisible():
                seen.append(widget.windowTitle())
                widget.close()

    seen: list[str] = []
    timer = QTimer()
    timer.timeout.connect(close_windows)
    timer.start(300)
    try:
        assert run_manager(arguments(tmp_path)) == 0
    finally:
        timer.stop()
    assert len(seen) == 1 and seen[0].startswith("SMTP Service Manager - [") and seen[0].endswith("]")
    assert not (tmp_path / "Mailroot" / "smtpsvc.lock").exists() or _lock_free(tmp_path / "Mailroot")


def _lock_free(mailroot: Path) -> bool:
    import fcntl
    import os

    fd = os.open(mailroot / "smtpsvc.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
