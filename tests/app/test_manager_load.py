"""The window with its embedded engine under concurrent load: no crash, every message kept, the GUI loop answers.

(Throughput and lag figures belong in bench/embedded.py; this test only asserts behaviour.)
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import qasync
from PySide6.QtCore import QEvent, QSettings, QTimer
from PySide6.QtWidgets import QApplication
from test_manager import arguments

from app.manager import Manager, application
from ui.scope import Node

CLIENTS = 20
MESSAGES = 25
BODY = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: load\r\n\r\n" + b"x" * 2000 + b"\r\n"


@pytest.fixture
def manager(qapp: QApplication, tmp_path: Path) -> Iterator[tuple[Manager, qasync.QEventLoop]]:
    application()
    manager = Manager(arguments(tmp_path), QSettings(str(tmp_path / "ui.ini"), QSettings.Format.IniFormat))
    manager.messages.show_box = lambda title, text, unexpected: pytest.fail(f"message box: {title}: {text}")
    assert manager.start_engine() is None
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    manager.window.show()
    try:
        yield manager, loop
    finally:
        manager.window.close()
        manager.shutdown()
        manager.window.deleteLater()
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        loop.close()
        asyncio.set_event_loop(None)


def test_concurrent_sessions_with_the_window_open(manager: tuple[Manager, qasync.QEventLoop],
                                                  tmp_path: Path) -> None:
    mgr, loop = manager
    window = mgr.window
    window.select_node(Node.SESSIONS)
    port = mgr.host.bound_addresses[0][1]
    errors: list[BaseException] = []
    most_rows = [0]

    def client() -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                for _ in range(MESSAGES):
                    smtp.sendmail("a@example.test", ["b@example.test"], BODY)
        except BaseException as error:
            errors.append(error)

    gaps: list[float] = []
    last = [time.monotonic()]

    def beat() -> None:
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now
        most_rows[0] = max(most_rows[0], window.sessions_model.rowCount())

    timer = QTimer()
    timer.timeout.connect(beat)
    timer.start(10)
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]

    async def drive() -> None:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            await asyncio.sleep(0.05)
        while window.sessions_model.rowCount():
            await asyncio.sleep(0.05)

    try:
        loop.run_until_complete(asyncio.wait_for(drive(), 120))
    finally:
        timer.stop()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(list((tmp_path / "Mailroot" / "Drop").glob("*.eml"))) == CLIENTS * MESSAGES
    assert most_rows[0] > 1  # the pane showed the concurrent sessions live
    assert len(gaps) > 10 and max(gaps) < 2.0  # the window's loop kept answering throughout
