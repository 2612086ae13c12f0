"""The computers of the manager's windows: File → Connect to Computer… adds another computer's engine (through
its admin server) to the scope tree beside this one; the list is remembered and connected again at start,
Remove Computer takes one out, New Window from Here opens a window rooted at a node, and All Tasks → Replicate
Configuration… copies settings to peers.

A self-signed certificate is pinned only after the user confirms its fingerprint (as `smtpsvc --connect` does).
Passwords are never stored: the remembered list holds the address, the operator and the CA file; the password
is asked at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMessageBox

from app.bridge import EngineBridge
from app.engine_proxy import EngineProxy
from app.export import write_csv
from app.remote import Call
from app.remote_host import RemoteHost
from app.replicate_cmd import replicate
from engine.admin.control_ops import masked_config
from engine.admin.http_client import AdminClient, TrustError, fingerprint_text, known_servers_path, parse_url, pin
from engine.conf.config import Config
from engine.errors import EngineError
from ui.computer import Computer
from ui.connect_dialog import ConnectDialog
from ui.errors import MessageBridge
from ui.facade import EngineFacade
from ui.replicate_dialog import ReplicateDialog
from ui.scope import Node
from ui.trust_question import trust_question
from ui.window import LOCAL, ManagerWindow

RECENT_KEY = "remote/computers"  # addresses connected to, newest first (the Connect dialog offers them)
LIST_KEY = "remote/list"  # the computers in the tree: JSON {url, user, cafile}, never a password
RECENT_MAX = 10


class LinkBridge(QObject):
    """The connection state, from the network thread to the GUI thread."""

    changed = Signal(str, str)  # link, reason


@dataclass
class Remote:
    """One remote computer of the run: its facade, transport and the bridges of its events and link state."""

    url: str
    user: str
    cafile: str
    engine: EngineProxy
    host: RemoteHost
    events: EngineBridge
    link: LinkBridge

    @property
    def key(self) -> str:
        return self.host.url


@dataclass(frozen=True)
class Local:
    """This computer's engine and the bridge its events come by."""

    name: str
    engine: EngineFacade
    events: EngineBridge


class Computers:
    """Every computer and window of one run; ``window`` is the main window (with this computer in it)."""

    def __init__(self, window: ManagerWindow, local: Local, settings: QSettings, messages: MessageBridge) -> None:
        self.window = window
        self.local = local
        self.settings = settings
        self.messages = messages
        self.windows: list[ManagerWindow] = []
        self.remotes: dict[str, Remote] = {}
        self._slots: dict[int, list[tuple[Any, Any]]] = {}  # id(window) → (signal, slot) to undo when it closes
        self._tasks: set[asyncio.Future[Any]] = set()
        self._watch(window)

    def _watch(self, window: ManagerWindow) -> None:
        self.windows.append(window)
        window.connect_requested.connect(self.ask)
        window.remove_requested.connect(self.remove)
        window.trust_requested.connect(self.trust_new_certificate)
        window.new_window_requested.connect(lambda key, node: self.new_window(key, Node(node)))
        window.replicate_requested.connect(lambda: self.replicate(window))
        window.closed.connect(lambda: self._closed(window))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- remembered -------------------------------------------------------------------------------------

    def recent(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        return [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]

    def remembered(self) -> list[dict[str, str]]:
        """The computers to connect again at start: {url, user, cafile}."""
        value = self.settings.value(LIST_KEY, [])
        found = []
        for entry in value if isinstance(value, list) else [value] if value else []:
            try:
                data = json.loads(str(entry))
            except ValueError:
                continue
            if isinstance(data, dict) and isinstance(data.get("url"), str):
                found.append({"url": data["url"], "user": str(data.get("user") or getpass.getuser()),
                              "cafile": str(data.get("cafile") or "")})
        return found

    def _remember(self, url: str, user: str, cafile: str) -> None:
        recent = [url, *(u for u in self.recent() if u != url)][:RECENT_MAX]
        self.settings.setValue(RECENT_KEY, recent)
        entries = [e for e in self.remembered() if e["url"] != url] + [{"url": url, "user": user, "cafile": cafile}]
        self.settings.setValue(LIST_KEY, [json.dumps(e, sort_keys=True) for e in entries])
        self.settings.sync()

    def _forget(self, url: str) -> None:
        entries = [e for e in self.remembered() if e["url"] != url]
        self.settings.setValue(LIST_KEY, [json.dumps(e, sort_keys=True) for e in entries])
        self.settings.sync()

    async def reconnect(self) -> None:
        """At start: every remembered computer, each after its password is asked (Cancel leaves it out this
        time); one that cannot be reached now is shown "disconnected — retrying" and connects when it can."""
        for entry in self.remembered():
            url = parse_url(entry["url"]).base
            if url in self.remotes:
                continue
            password = self.ask_password(url, entry["user"])
            if password is None:
                self.messages.inform(f"Not connected to {url}: no password given")
                continue
            await self.connect(url, entry["user"], password, entry["cafile"], retry=True)

    # -- asked of the user (tests replace these) ----------------------------------------------------------

    def ask_password(self, url: str, user: str) -> str | None:
        password, ok = QInputDialog.getText(self.window, "Connect to Computer",
                                            f"Password of operator {user} at {url}:", QLineEdit.EchoMode.Password)
        return password if ok else None

    def confirm_certificate(self, host_port: str, fingerprint: str) -> bool:
        answer = QMessageBox.question(
            self.window, "Unknown certificate",
            f"The certificate of {host_port} is not issued by a certificate authority this computer trusts.\n\n"
            f"SHA-256 fingerprint:\n{fingerprint}\n\nCompare it with `smtpsvc cert show` on that computer. "
            "Trust this certificate and remember it?")
        return answer == QMessageBox.StandardButton.Yes

    def confirm_new_certificate(self, host_port: str, presented: str, pinned: str) -> bool:
        return trust_question(self.window, host_port, presented, pinned).exec() == QMessageBox.StandardButton.Yes

    def ask(self) -> None:
        """The Connect to Computer dialog; connecting goes on in the background."""
        dialog = ConnectDialog(self.recent(), getpass.getuser(), self.window)
        if dialog.exec() != ConnectDialog.DialogCode.Accepted:
            return
        url, user, password, cafile = dialog.values()
        self._spawn(self.connect(url, user, password, cafile))

    # -- connecting ---------------------------------------------------------------------------------------

    async def connect(self, url: str, user: str, password: str, cafile: str = "", *,
                      retry: bool = False) -> Computer | None:
        """Add the computer at ``url`` to the main window; None (said to the user) when it cannot be.
        ``retry``: one that cannot be reached now is added anyway and connects when it can."""
        seen: list[tuple[str, str]] = []

        def unknown(host_port: str, fingerprint: str) -> bool:  # on the network thread: ask the user afterwards
            seen.append((host_port, fingerprint))
            return False

        try:
            client = AdminClient(url, user, password, cafile=Path(cafile) if cafile else None, confirm=unknown)
        except EngineError as error:
            self.messages.error(f"Cannot connect to {url}", error)
            return None
        key = client.target.base
        if key in self.remotes:
            self.messages.inform(f"{key} is already in the tree")
            return self.window.computers.get(key)
        host = RemoteHost(client)
        try:
            await host.open(retry=retry)
        except TrustError as error:
            await asyncio.to_thread(host.shutdown)
            if not seen or not self.confirm_certificate(*seen[0]):
                self.messages.error(f"Cannot connect to {url}", error)
                return None
            pin(known_servers_path(), seen[0][0], bytes.fromhex(seen[0][1].replace(":", "")))
            return await self.connect(url, user, password, cafile, retry=retry)
        except EngineError as error:
            await asyncio.to_thread(host.shutdown)
            self.messages.error(f"Cannot connect to {url}", error)
            return None
        remote = Remote(key, user, cafile, EngineProxy(host), host, EngineBridge(), LinkBridge())
        host.add_event_sink(remote.events.deliver)
        host.link_changed = lambda link: remote.link.changed.emit(link, host.reason)
        self.remotes[key] = remote
        self._remember(key, user, cafile)
        return self._add(self.window, remote)

    def trust_new_certificate(self, key: str) -> None:
        """Trust New Certificate…: the certificate refused as changed is pinned in its place (as a first one is,
        after the user compared its fingerprint), and the computer connects again."""
        remote = self.remotes.get(key)
        if remote is None or remote.host.link != "untrusted":
            return
        change = remote.host.changed
        if change is None:  # checked against a CA file or the system's store: there is no pin to replace
            self.messages.refuse("Trust New Certificate", f"The certificate of {key} is refused: "
                                 f"{remote.host.reason}.\n\nIt is checked against certificate authorities, not "
                                 "pinned: renew it on that computer, or remove the computer and connect again with "
                                 "another CA file.")
            return
        pinned = fingerprint_text(bytes.fromhex(change.pinned)) if change.pinned else ""
        if not self.confirm_new_certificate(change.host_port, fingerprint_text(change.presented), pinned):
            return
        pin(change.known, change.host_port, change.presented)
        self._spawn(self._reopen(remote))

    async def _reopen(self, remote: Remote) -> None:
        try:
            await remote.host.reopen()
        except EngineError as error:
            self.messages.error(f"Cannot connect to {remote.key}", error)
            return
        if remote.host.link == "connected":
            self.messages.inform(f"Connected to {remote.key}: its new certificate is trusted")

    def _label(self, remote: Remote) -> str:
        name = remote.engine.config().server.fqdn if remote.host.link == "connected" else ""
        return f"{name or remote.host.client.target.host} ({remote.key})"

    def _add(self, window: ManagerWindow, remote: Remote) -> Computer:
        link = remote.host.link
        computer = window.add_computer(remote.key, self._label(remote), remote.engine,
                                       link if link in ("connected", "untrusted") else "disconnected")
        computer.link_reason = remote.host.reason
        self._link(window, remote.events.events, computer.on_engine_events)
        def link_changed(state: str, reason: str) -> None:
            if state == "connected":
                computer.label = self._label(remote)  # its name, once known (added while unreachable)
            computer.set_link("connected" if state == "connected" else "untrusted" if state == "untrusted"
                              else "disconnected", reason)

        self._link(window, remote.link.changed, link_changed)
        return computer

    def _link(self, window: ManagerWindow, signal: Any, slot: Any) -> None:
        """Connect, and remember to disconnect when the window closes or the computer leaves it."""
        signal.connect(slot)
        self._slots.setdefault(id(window), []).append((signal, slot))

    def _unlink(self, window: ManagerWindow) -> None:
        for signal, slot in self._slots.pop(id(window), []):
            with contextlib.suppress(RuntimeError, TypeError):
                signal.disconnect(slot)

    def remove(self, key: str) -> None:
        """Remove Computer: out of every window and of the remembered list; its connection closes."""
        remote = self.remotes.pop(key, None)
        if remote is None:
            return
        for signal in (remote.events.events, remote.link.changed):
            with contextlib.suppress(RuntimeError, TypeError):
                signal.disconnect()
        for window in list(self.windows):
            window.remove_computer(key)
            if not window.primary and not window.computers:
                window.close()
        self._forget(key)
        self._spawn(asyncio.to_thread(remote.host.shutdown))

    # -- New Window from Here ---------------------------------------------------------------------------

    def new_window(self, key: str, node: Node) -> ManagerWindow:
        """A window whose tree starts at ``node`` of computer ``key`` ("" with the root: every computer)."""
        window = ManagerWindow(None, "", self.settings, write_csv, self.messages, primary=False)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        keys = [key] if key else [LOCAL, *self.remotes]
        for name in keys:
            if name == LOCAL:
                computer = window.add_computer(LOCAL, self.window.computers[LOCAL].label, self.local.engine)
                self._link(window, self.local.events.events, computer.on_engine_events)
            elif name in self.remotes:
                self._add(window, self.remotes[name])
        self._watch(window)
        window.root_at(key, node)
        window.resize(900, 560)
        window.show()
        return window

    def _closed(self, window: ManagerWindow) -> None:
        self._unlink(window)
        if window in self.windows:
            self.windows.remove(window)

    # -- All Tasks → Replicate Configuration… ------------------------------------------------------------

    def replicate(self, window: ManagerWindow) -> ReplicateDialog:
        """The dialog for the server of the computer shown (this computer's or a remote one); peers are asked
        in a thread of their own, so the window stays responsive."""
        engine = window.current.engine
        dialog = ReplicateDialog(engine.config().name, self.recent(), getpass.getuser(), window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def run(peers: list[str], user: str, password: str, dry_run: bool) -> None:
            self._spawn(self._replicate(dialog, engine.config(), peers, user, password, dry_run))

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

    # -- the end ------------------------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait for the connections and disconnections under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def shutdown(self) -> None:
        """Close every remote connection (the main window's end does the rest)."""
        for window in [w for w in self.windows if not w.primary]:
            window.close()
        for remote in list(self.remotes.values()):
            remote.host.shutdown()
        self.remotes.clear()
