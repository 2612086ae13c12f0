"""`smtpsvc` without a sub-command: the manager window on a qasync loop, with the engine embedded on its own thread."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import getpass
import logging
import platform
import signal
import sys
import types
from importlib import resources
from typing import TYPE_CHECKING, Any

import qasync
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app import running
from app.bridge import EngineBridge
from app.computers import Computers, Local
from app.desktop import display_problem
from app.export import write_csv
from app.host import EngineHost, LocalEngine
from app.serve import config_failure, effective_config, start_admin
from engine.errors import EngineError, MailrootLockedError
from engine.events import Event, QueueRecovery
from engine.server import VirtualServer
from engine.store.mailroot import Mailroot
from ui.errors import MessageBridge, describe
from ui.icons import state_icon
from ui.main_thread_gc import MainThreadGC
from ui.window import ManagerWindow

if TYPE_CHECKING:  # aiohttp: imported only where the window serves remote administration (app.serve)
    from engine.admin.http_server import AdminServer

log = logging.getLogger("smtpsvc")


def application() -> QApplication:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    app.setApplicationName("smtpsvc")
    app.setOrganizationName("smtpsvc")
    # No application display name: Qt would append it to every dialog's title ("… Properties — SMTP Service
    # Manager"), cutting long titles; the main window names itself.
    app.setQuitOnLastWindowClosed(False)  # the window's `closed` ends the run, after the engine stopped
    if app.findChild(MainThreadGC) is None:  # Qt objects must never be freed by a collection in the engine's thread
        MainThreadGC(app)
    app.setWindowIcon(state_icon("computer", "started"))
    app.setStyleSheet(resources.files("resources").joinpath("manager.qss").read_text(encoding="utf-8"))
    return app


def install_error_hooks(messages: MessageBridge, loop: asyncio.AbstractEventLoop) -> None:
    """Unexpected exceptions from Qt slots and from the loop's callbacks end in the message bridge."""

    def excepthook(kind: type[BaseException], error: BaseException, trace: types.TracebackType | None) -> None:
        log.error("unexpected error", exc_info=(kind, error, trace))
        messages.error("Unexpected error", error)

    def loop_handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        messages.error("Unexpected error", error if isinstance(error, BaseException)
                       else RuntimeError(str(context.get("message"))))

    sys.excepthook = excepthook
    loop.set_exception_handler(loop_handler)


def freeze_long_lived() -> None:
    """Move what lives now (a recovered queue, the Queue pane's rows) out of the cyclic GC's reach.

    A full collection walks every tracked object: with 100,000 queued messages (about a million objects,
    engine and window) it holds the GIL for most of a second, stalling the window and the engine alike.
    Frozen objects are still freed when no longer referenced; only a reference cycle among them that dies
    later is never collected, and such data (queue records, rows) has none.
    """
    gc.freeze()
    give_back_freed_memory()


TRIM_AFTER_MS = 0  # after the Queue list was sorted or filtered (once the event loop is idle)


def give_back_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim): reading back a large queue on
    worker threads leaves tens of MB free but kept in their malloc arenas, counted in the window's RSS."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim): nothing to give back this way
        return


def locked_message(error: MailrootLockedError) -> str:
    return (f"{describe(error)}.\n\nOnly one smtpsvc may serve a Mailroot. Close the other smtpsvc (its manager "
            "window or `smtpsvc serve`), or start this one on another Mailroot with --mailroot.")


class Manager:
    """The window, the engine host and the bridge between them, for one run (tests drive it too)."""

    def __init__(self, args: argparse.Namespace, settings: QSettings | None = None) -> None:
        self.config, self.path = effective_config(args)
        self.messages = MessageBridge()
        self.bridge = EngineBridge()
        self.host = EngineHost(self.config, config_path=self.path)
        self.admin: AdminServer | None = None
        self.host.add_event_sink(self.bridge.deliver)
        self.host.start_thread()
        self.engine = LocalEngine(self.host)
        self.window = ManagerWindow(self.engine, platform.node() or "localhost", settings or QSettings(),
                                    write_csv, self.messages)
        self.messages.parent_widget = lambda: self.window
        self.bridge.events.connect(self.window.local.on_engine_events)
        self.computers = Computers(self.window, Local(platform.node() or "localhost", self.engine, self.bridge),
                                   self.window.settings, self.messages)
        # Freeze what lives once the queue is whole: the engine's recovered queue when its recovery ends, the
        # Queue pane's rows when the load that follows it is in (a load during recovery is partial).
        self.bridge.events.connect(self._freeze_when_recovered)
        self.window.local.queue_feed.loaded.connect(self._freeze_when_loaded)
        # Sorting or filtering 100,000 rows makes and drops that many sort keys: give the freed heap back right
        # after (a millisecond or two), so that one sort after another does not pile up.
        self._trim = QTimer(self.window)
        self._trim.setSingleShot(True)
        self._trim.setInterval(TRIM_AFTER_MS)
        self._trim.timeout.connect(give_back_freed_memory)
        queue_model = self.window.local.queue_model
        for changed in (queue_model.layoutChanged, queue_model.modelReset):
            changed.connect(self._trim.start)
        self.connect_to: tuple[str, str, str] | None = None  # `smtpsvc --connect URL`: (url, user, cafile)
        if getattr(args, "connect", None):
            cafile = getattr(args, "cafile", None)
            self.connect_to = (args.connect, getattr(args, "user", None) or getpass.getuser(),
                               str(cafile) if cafile else "")

    def start_engine(self) -> EngineError | None:
        """Start the engine before the window shows; a locked Mailroot is raised, other errors returned."""
        try:
            self.host.call_blocking(lambda server: server.start())
        except MailrootLockedError:
            raise
        except EngineError as error:
            return error
        finally:
            self.window.local.set_state(self.host.state)  # its events are on their way; show the state now
        running.write_note(self.path, Mailroot.from_config(self.config).root)  # for `smtpsvc config set`
        try:
            self.host.call_blocking(self._start_admin)
        except EngineError as error:  # SMTP runs; only remote administration is missing
            return error
        return None

    def _freeze_when_recovered(self, batch: list[Event]) -> None:
        if any(isinstance(event, QueueRecovery) and event.finished for event in batch):
            freeze_long_lived()

    def _freeze_when_loaded(self) -> None:
        if not self.window.local.queue_feed.partial:
            freeze_long_lived()

    async def _start_admin(self, server: VirtualServer) -> None:
        """The admin server (admin_listen), on the engine's loop like the rest of the engine."""
        admin = start_admin(server, self.path)
        self.admin = admin  # kept even when it cannot listen now: a corrected admin_listen applies live
        await admin.start()

    async def connect_remembered(self) -> None:
        """The remote computers of the last run (and the one of --connect), each after its password prompt."""
        if self.connect_to is not None:
            url, user, cafile = self.connect_to
            password = self.computers.ask_password(url, user)
            if password is not None:
                await self.computers.connect(url, user, password, cafile)
        await self.computers.reconnect()

    def shutdown(self) -> None:
        running.remove_note(self.path)
        self.computers.shutdown()
        admin, self.admin = self.admin, None
        if admin is not None and self.host.running:
            try:
                self.host.call_blocking(lambda server: admin.stop())
            except EngineError:
                log.exception("stopping the admin server failed")
        self.host.shutdown()


async def _run(manager: Manager, start_error: EngineError | None) -> int:
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_closed() -> None:
        if not closed.done():
            closed.set_result(None)

    manager.window.closed.connect(on_closed)
    manager.window.show()
    connecting = asyncio.ensure_future(manager.connect_remembered())
    if start_error is not None:
        manager.messages.error("The virtual server could not start", start_error)
    await closed
    connecting.cancel()
    await asyncio.to_thread(manager.shutdown)
    return 0


def run_manager(args: argparse.Namespace) -> int:
    problem = display_problem()
    if problem is not None:  # said before Qt aborts the process with "could not load the Qt platform plugin"
        print(problem, file=sys.stderr)
        return 1
    app = application()
    try:
        manager = Manager(args)
    except EngineError as error:
        text = config_failure(args, error)
        print(f"smtpsvc: {text}", file=sys.stderr)  # for whoever started it from a terminal
        QMessageBox.critical(None, "smtpsvc", text[:1].upper() + text[1:])
        return 2
    try:
        start_error = manager.start_engine()
    except MailrootLockedError as error:
        manager.shutdown()
        print(f"smtpsvc: {locked_message(error)}", file=sys.stderr)
        QMessageBox.critical(None, "smtpsvc", locked_message(error))
        return 1
    if start_error is not None:
        print(f"smtpsvc: the virtual server could not start: {start_error}", file=sys.stderr)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    install_error_hooks(manager.messages, loop)
    previous = {signum: signal.signal(signum, lambda *_: manager.window.close())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    wake = QTimer()  # lets Python run its signal handlers while Qt waits
    wake.start(250)
    wake.timeout.connect(lambda: None)
    try:
        with loop:
            return int(loop.run_until_complete(_run(manager, start_error)))
    finally:
        wake.stop()
        manager.shutdown()
        asyncio.set_event_loop(None)
        sys.excepthook = sys.__excepthook__
        for signum, handler in previous.items():
            signal.signal(signum, handler)
