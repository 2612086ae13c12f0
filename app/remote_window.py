"""File → Connect to Computer…: another computer's engine in a manager window of its own, through its admin server.

The window is the same ManagerWindow as the local one, with the facade implemented by app/remote_host.py, so
every node, pane, sheet and action works the same. A self-signed certificate is pinned only after the user
confirms its fingerprint (as `smtpsvc --connect` does); the addresses used are remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import AsyncIterator, Callable
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from app.bridge import EngineBridge
from app.engine_proxy import EngineProxy
from app.export import write_csv
from app.remote import Call
from app.remote_host import RemoteHost
from app.replicate_cmd import replicate
from engine.admin.control_ops import masked_config
from engine.admin.http_client import AdminClient, TrustError, known_servers_path, pin
from engine.conf.config import Config
from engine.errors import EngineError
from ui.connect_dialog import ConnectDialog
from ui.errors import MessageBridge
from ui.replicate_dialog import ReplicateDialog
from ui.window import ManagerWindow

RECENT_KEY = "remote/computers"
RECENT_MAX = 10


class LinkBridge(QObject):
    """The connection state, from the network thread to the GUI thread."""

    changed = Signal(str)


class RemoteComputers:
    """The remote windows of one run."""

    def __init__(self, settings: QSettings, messages: MessageBridge, parent: Callable[[], QWidget]) -> None:
        self.settings = settings
        self.messages = messages
        self.parent = parent
        self.windows: dict[str, tuple[ManagerWindow, RemoteHost]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    def recent(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        return [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]

    def ask(self) -> None:
        """The Connect to Computer dialog; connecting goes on in the background."""
        dialog = ConnectDialog(self.recent(), getpass.getuser(), self.parent())
        if dialog.exec() != ConnectDialog.DialogCode.Accepted:
            return
        task = asyncio.ensure_future(self.connect(*dialog.values()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def confirm_certificate(self, host_port: str, fingerprint: str) -> bool:
        answer = QMessageBox.question(
            self.parent(), "Unknown certificate",
            f"The certificate of {host_port} is not issued by a certificate authority this computer trusts.\n\n"
            f"SHA-256 fingerprint:\n{fingerprint}\n\nCompare it with `smtpsvc cert show` on that computer. "
            "Trust this certificate and remember it?")
        return answer == QMessageBox.StandardButton.Yes

    async def connect(self, url: str, user: str, password: str) -> ManagerWindow | None:
        seen: list[tuple[str, str]] = []

        def unknown(host_port: str, fingerprint: str) -> bool:  # on the network thread: ask the user afterwards
            seen.append((host_port, fingerprint))
            return False

        host = RemoteHost(AdminClient(url, user, password, confirm=unknown))
        try:
            await host.open()
        except TrustError as error:
            await asyncio.to_thread(host.shutdown)
            if not seen or not self.confirm_certificate(*seen[0]):
                self.messages.error(f"Cannot connect to {url}", error)
                return None
            pin(known_servers_path(), seen[0][0], bytes.fromhex(seen[0][1].replace(":", "")))
            return await self.connect(url, user, password)
        except EngineError as error:
            await asyncio.to_thread(host.shutdown)
            self.messages.error(f"Cannot connect to {url}", error)
            return None
        self._remember(url)
        return self._open_window(host)

    def _remember(self, url: str) -> None:
        recent = [url, *(u for u in self.recent() if u != url)][:RECENT_MAX]
        self.settings.setValue(RECENT_KEY, recent)

    def _open_window(self, host: RemoteHost) -> ManagerWindow:
        name = host.client.target.host_port
        bridge, link = EngineBridge(), LinkBridge()
        host.add_event_sink(bridge.deliver)
        window = ManagerWindow(EngineProxy(host), f"{name} (remote)", self.settings, write_csv, MessageBridge())
        window.setWindowTitle(f"smtpsvc — SMTP Service Manager — {name}")
        bridge.events.connect(window.on_engine_events)

        def show_link(state: str) -> None:
            text = {"disconnected": f"{name}: disconnected — retrying", "connected": f"{name}: connected"}
            window.statusBar().showMessage(text.get(state, state), 0 if state == "disconnected" else 5000)
            if state == "connected":
                window.refresh()

        link.changed.connect(show_link)
        host.link_changed = link.changed.emit
        window.closed.connect(lambda: self._closed(name))
        window.replicate_requested.connect(lambda: self.replicate(window))
        window.connect_requested.connect(self.ask)
        window._link_bridges = (bridge, link)  # type: ignore[attr-defined]  # kept alive with the window
        self.windows[name] = (window, host)
        window.set_state(host.state)
        window.show()
        window.refresh()
        return window

    def _closed(self, name: str) -> None:
        entry = self.windows.pop(name, None)
        if entry is not None:
            task = asyncio.ensure_future(asyncio.to_thread(entry[1].shutdown))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- All Tasks → Replicate Configuration… ------------------------------------------------------------

    def replicate(self, window: ManagerWindow) -> ReplicateDialog:
        """The dialog for the server of ``window`` (this computer's or a remote one); peers are asked in a
        thread of their own, so the window stays responsive."""
        config = window.engine.config()
        dialog = ReplicateDialog(config.name, self.recent(), getpass.getuser(), window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def run(peers: list[str], user: str, password: str, dry_run: bool) -> None:
            task = asyncio.ensure_future(self._replicate(dialog, window.engine.config(), peers, user, password,
                                                         dry_run))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        dialog.run_requested.connect(run)
        dialog.open()
        return dialog

    async def _replicate(self, dialog: ReplicateDialog, config: Config, peers: list[str], user: str,
                         password: str, dry_run: bool) -> None:
        def refuse_unknown(host_port: str, fingerprint: str) -> bool:
            return False  # pinned with File → Connect to Computer… or `smtpsvc --connect` first

        @contextlib.asynccontextmanager
        async def connect(url: str) -> AsyncIterator[Call]:
            async with AdminClient(url, user, password, confirm=refuse_unknown) as client:
                yield client.call

        async def lines() -> list[str]:
            return [line async for line, _ in replicate(masked_config(config), peers, connect, dry_run=dry_run)]

        text = "\n".join(await asyncio.to_thread(asyncio.run, lines()))
        with contextlib.suppress(RuntimeError):  # the dialog was closed meanwhile
            dialog.show_outcome(text)

    async def drain(self) -> None:
        """Wait for the connections and disconnections under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def shutdown(self) -> None:
        for window, host in list(self.windows.values()):
            host.shutdown()
            window.close()
        self.windows.clear()

