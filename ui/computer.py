"""One computer in the manager window: its engine facade, its scope nodes, panes, models and operations.

Every pane, sheet, action and dropped file of a node works against the facade of the computer the node sits
under; the window (ui/window.py) keeps the tree, the menus and the selection, and asks the computer of the
selected node. A Computer is the ``WindowPort`` (ui/context.py) of its operation objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Literal, Protocol

from PySide6.QtCore import QModelIndex, QSettings, QTimer
from PySide6.QtWidgets import QLabel, QTreeWidgetItem, QVBoxLayout, QWidget

from engine.admin.mailroot_items import PickupFile
from engine.bounce.badmail import BadmailItem
from engine.conf.config import Config
from engine.conf.hostport import join_hostport, split_hostport
from engine.events import ConfigChanged, ErrorEvent, Event, ListenerFailed, SessionClosed, SessionOpened, StateChanged
from ui.actions import Actions
from ui.badmail_detail import BadmailDialog
from ui.context import Pane
from ui.errors import MessageBridge
from ui.event_viewer import MAX_SHOWN, EventViewer
from ui.facade import EngineFacade, PickupFolderFacade, TranscriptFacade
from ui.folder_ops import FolderOperations
from ui.mail_ops import MailOperations, MessageRef
from ui.models.domains import DomainsModel
from ui.models.folders import BadmailModel, DropModel
from ui.models.nodes import ChildrenModel, NodeRow, ServerRow, ServersModel
from ui.models.queue import QueueModel
from ui.models.sessions import SessionsModel
from ui.models.table import KEY_ROLE
from ui.operations import Operations
from ui.performance import Performance
from ui.pickup_drop import PickupDrop, PickupRow, drop_hint
from ui.protocol_log import ProtocolLogView
from ui.queue_feed import QueueFeed
from ui.queue_ops import QueueOperations
from ui.queue_pane import QueuePane
from ui.result_pane import FramedPane, ResultPane, SearchBar
from ui.scope import NODE_DESCRIPTIONS, NODE_ICONS, NODE_TITLES, SERVER_CHILDREN, Node
from ui.session_detail import SessionDialog
from ui.tasks import TaskRunner
from ui.views import ItemView

RUNNING = ("started", "paused", "pausing", "continuing")
MESSAGE_NODES = (Node.QUEUE, Node.DROP, Node.BADMAIL)
SESSION_BURST = 50  # more session events than this waiting: they are shown with the next second's refresh
STOPPED_QUEUE = "The virtual server is stopped: reading its Queue folder…"
STOPPED_QUEUE_READ = ("The virtual server is stopped. This is what its Queue folder held at {read} (read-only; F5 "
                      "reads it again). Start the server (Action ▸ Start) to deliver or change these messages.")
Link = Literal["local", "connecting", "connected", "disconnected", "untrusted"]
LINK_SUFFIX = {"connecting": "connecting…", "disconnected": "disconnected — retrying",
               "untrusted": "certificate refused — not connected"}

EMPTY_TEXTS = {
    Node.DROP: "No message has been delivered to a local domain yet.",
    Node.BADMAIL: "Badmail is empty: everything could be delivered or returned.",
    Node.PICKUP: "No file has been put into Pickup from this window yet.",
    Node.LOG: "No entry in today's protocol log file yet.",
}


def pickup_now_text(files: list[PickupFile], running: bool) -> str:
    """The Pickup pane's line about the folder's content now."""
    if not files:
        return "The Pickup folder is empty: every file put there has been taken."
    names = ", ".join(f.name for f in files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    waiting = "being taken now" if running else "waiting: the server is stopped; they are sent when it starts"
    return f"In the Pickup folder now: {len(files)} file{'s' * (len(files) != 1)} ({names}), {waiting}."


def searchable(pane: ResultPane, placeholder: str) -> FramedPane:
    """A list with a search box over it (the Queue pane has its own filter bar)."""
    return FramedPane(SearchBar(pane, placeholder), pane)


class Shell(Protocol):
    """What a Computer uses of the window around it."""

    actions_: Actions
    settings: QSettings
    messages: MessageBridge
    runner: TaskRunner

    def window(self) -> QWidget: ...
    def isVisible(self) -> bool: ...
    def current_node(self, computer: Computer) -> Node | None: ...
    def show_item(self, item: QTreeWidgetItem) -> None: ...
    def computer_changed(self, computer: Computer) -> None: ...
    def confirm(self, title: str, question: str) -> bool: ...
    def engine_events(self, computer: Computer, batch: list[Event]) -> None: ...


class Computer:
    """``key`` names it in the window (and in the remembered list); ``label`` is its node's text."""

    def __init__(self, shell: Shell, key: str, label: str, engine: EngineFacade, link: Link = "local") -> None:
        self.shell = shell
        self.key = key
        self.label = label
        self.engine = engine
        self.link: Link = link
        self.link_reason = ""
        self.actions_ = shell.actions_
        self.settings = shell.settings
        self.messages = shell.messages
        self.runner = shell.runner
        self.state = engine.state
        self.closed = False  # its window closed: events still on their way are dropped
        self.messages_received = 0
        self.items: dict[Node, QTreeWidgetItem] = {}
        self.servers_model = ServersModel()
        self.children_model = ChildrenModel()
        self.domains_model = DomainsModel()
        self.sessions_model = SessionsModel()
        self.queue_model = QueueModel()
        self.badmail_model = BadmailModel()
        self.drop_model = DropModel()
        self.ops = Operations(self)
        self.pickup = PickupDrop(self)
        self.queue_pane = QueuePane(self.queue_model)
        self.queue_pane.set_source(engine, self.runner)
        self.event_viewer = EventViewer()
        self.performance = Performance(engine, self.runner)
        self.protocol_log = ProtocolLogView(engine, self.runner)  # a remote computer's file is read there (log.tail)
        self.panes: dict[Node, Pane] = {
            Node.COMPUTER: ResultPane(self.servers_model, "computer"),
            Node.SERVER: ResultPane(self.children_model, "server"),
            Node.DOMAINS: ResultPane(self.domains_model, "domains", sort_column=1),
            Node.SESSIONS: ResultPane(self.sessions_model, "sessions", sort_column=2),
            Node.QUEUE: self.queue_pane,
            Node.PICKUP: FramedPane(self._pickup_top(), ResultPane(self.pickup.results, "pickup")),
            Node.DROP: searchable(ResultPane(self.drop_model, "drop", descending=True),
                                  "Search sender, recipients, subject or file"),
            Node.BADMAIL: searchable(ResultPane(self.badmail_model, "badmail", descending=True),
                                     "Search file, reason, sender or recipients"),
            Node.LOG: self.protocol_log.pane,
            Node.EVENTS: self.event_viewer.pane,
            Node.PERFORMANCE: self.performance.pane,
        }
        self.queue_feed = QueueFeed(engine, self.queue_model, self.runner)
        self.mail_ops = MailOperations(self)
        self.queue_ops = QueueOperations(self, view=self.mail_ops.view)
        self.folder_ops = FolderOperations(self)
        self._queue_wanted = False  # the Queue node was shown: keep its model live from then on
        self._session_events: list[SessionOpened | SessionClosed] = []
        for node, why in EMPTY_TEXTS.items():  # an empty list says why (not a blank page)
            view = self.panes[node].detail
            if isinstance(view, ItemView):
                view.set_empty_text(why)
        self.children_model.sync(NodeRow(node.value, NODE_TITLES[node], NODE_ICONS[node], NODE_DESCRIPTIONS[node],
                                         order) for order, node in enumerate(SERVER_CHILDREN))
        self._soon = QTimer(shell.window())  # coalesces action/count updates after row changes
        self._soon.setSingleShot(True)
        self._soon.timeout.connect(self._rows_changed)
        for model in (self.domains_model, self.sessions_model, self.queue_model, self.drop_model,
                      self.badmail_model):
            model.rowsInserted.connect(self._soon.start)
            model.rowsRemoved.connect(self._soon.start)
            model.modelReset.connect(self._soon.start)
        # a message's state can change by a snapshot too, not only by an event: the actions follow it
        self.queue_model.dataChanged.connect(lambda *_: self._soon.start())

    # -- the WindowPort of the operation objects ------------------------------------------------------

    @property
    def current(self) -> bool:
        return self.shell.current_node(self) is not None

    @property
    def node(self) -> Node:
        """The node of this computer the window shows (the computer's own node when it shows another's)."""
        return self.shell.current_node(self) or Node.COMPUTER

    @property
    def pane(self) -> Pane:
        return self.panes[self.node]

    def window(self) -> QWidget:
        return self.shell.window()

    def isVisible(self) -> bool:
        return self.current and self.shell.isVisible()

    def select_node(self, node: Node) -> None:
        self.shell.show_item(self.items[node])

    def update_actions(self) -> None:
        if self.current:
            self.shell.computer_changed(self)

    def confirm(self, title: str, question: str) -> bool:
        """Asked before destructive actions (Operations.confirm, which tests replace)."""
        return self.ops.confirm(title, question)

    # -- engine events and state -------------------------------------------------------------------

    def on_engine_events(self, batch: list[Event]) -> None:
        """Engine events, in order, delivered on the GUI thread (the bridge's queued signal)."""
        if self.closed:
            return
        self.queue_feed.on_events(batch)
        self.queue_ops.on_events(batch)
        self.folder_ops.on_events(batch)
        self.pickup.on_events(batch)
        self.event_viewer.on_events(batch)
        self._session_events += [e for e in batch if isinstance(e, SessionOpened | SessionClosed)]
        if len(self._session_events) <= SESSION_BURST:
            self._apply_session_events()
        for event in batch:
            if isinstance(event, SessionClosed):
                self.messages_received += event.messages
            elif isinstance(event, StateChanged):
                self.set_state(event.state)
            elif isinstance(event, ConfigChanged):
                self.refresh_config()
            elif isinstance(event, ListenerFailed):
                self.messages.inform(f"{self._who()}Cannot listen on {event.address}: {event.reason}")
            elif isinstance(event, ErrorEvent):
                self.messages.inform(f"{self._who()}{event.source}: {event.message}")
        self.shell.engine_events(self, batch)
        self._rows_changed()

    def _who(self) -> str:
        return "" if self.link == "local" else f"{self.label}: "

    def _apply_session_events(self) -> None:
        """Session rows from events. Under a load of short connections they come in bursts and wait for the
        once-a-second refresh; a session that opened and closed meanwhile never gets a row (each row change
        is work for the window, which competes with the engine for the GIL)."""
        events, self._session_events = self._session_events, []
        closed = [e.session_id for e in events if isinstance(e, SessionClosed)]
        short = set(closed)
        opened = [(e.session_id, e.peer, e.at) for e in events
                  if isinstance(e, SessionOpened) and e.session_id not in short]
        self.sessions_model.apply_events(opened, closed)

    def set_state(self, state: str) -> None:
        self.state = state
        sessions_pane = self.panes[Node.SESSIONS]
        if isinstance(sessions_pane, ResultPane):
            sessions_pane.detail.set_empty_text("No client is connected." if state in RUNNING else
                                                "The virtual server is stopped: no client can connect.")
        if state == "stopped":
            self.sessions_model.clear()
            self.queue_feed.stopped()
            self.folder_ops.stopped()
            if self._queue_wanted:
                self.queue_feed.load()  # a read-only scan of the Queue folder
            self.queue_pane.refresh_chart(force=True)  # never the running queue's shape over the stopped one
        if state in RUNNING and self._queue_wanted and (self.queue_feed.offline or not self.queue_model.live):
            if self.queue_feed.offline:
                self.queue_feed.stopped()
            self.queue_feed.load()
        self.queue_loading(self.queue_feed.loading)
        self._update_server_row()
        self.update_children()
        self.shell.computer_changed(self)

    def set_link(self, link: Link, reason: str = "") -> None:
        """The connection to a remote computer's engine; on reconnecting, everything shown is read again."""
        if self.closed:
            return
        self.link, self.link_reason = link, reason
        if link == "connected":
            self.sessions_model.clear()  # the engine may have restarted meanwhile, numbering sessions anew
            self.refresh()
        self._update_server_row()
        self.shell.computer_changed(self)

    @property
    def link_text(self) -> str:
        return LINK_SUFFIX.get(self.link, "")

    def addresses(self) -> tuple[tuple[str, int], ...]:
        bound = tuple(self.engine.bound_addresses)
        if bound and self.state in RUNNING:
            return bound
        pairs = []
        for text in self.engine.config().server.listen:
            try:
                pairs.append(split_hostport(text, 25))
            except ValueError:
                continue
        return tuple(pairs)

    def listening_text(self) -> str:
        listening = ", ".join(join_hostport(host, port) for host, port in self.addresses())
        if self.link not in ("local", "connected"):
            return f"Last known: {listening}"
        return f"Listening on {listening}" if self.state in RUNNING else f"Configured: {listening}"

    def _update_server_row(self) -> None:
        config = self.engine.config()
        state = self.state if self.link in ("local", "connected") else "not connected"
        self.servers_model.sync([ServerRow(config.name, state, self.addresses(), str(self.engine.mailroot))])

    def _rows_changed(self) -> None:
        self.update_children()
        if self.current:
            self.shell.computer_changed(self)

    def update_children(self) -> None:
        """The virtual server node's list says what each child holds, where it has been read (a dashboard)."""
        def count(number: int, what: str) -> str:
            return f"{number:,} {what}{'s' * (number != 1)}"

        status: dict[str, tuple[str, bool]] = {
            Node.DOMAINS.value: (count(self.domains_model.rowCount(), "domain"), False),
            Node.SESSIONS.value: (count(self.sessions_model.rowCount(), "session") if self.state in RUNNING
                                  else "Stopped", False)}
        if self.queue_model.live:
            status[Node.QUEUE.value] = (count(self.queue_model.total, "message"), False)
        if self.drop_model.loaded:
            status[Node.DROP.value] = (count(self.drop_model.rowCount(), "message"), False)
        if self.badmail_model.loaded:
            status[Node.BADMAIL.value] = (count(self.badmail_model.rowCount(), "item"),
                                          self.badmail_model.rowCount() > 0)
        self.children_model.sync(replace(row, status=status.get(row.node, ("", False))[0],
                                         alert=status.get(row.node, ("", False))[1])
                                 for row in self.children_model.rows())

    def refresh_config(self) -> None:
        config: Config = self.engine.config()
        self.domains_model.set_domains(config.effective_domains)
        self._update_server_row()
        self.shell.computer_changed(self)

    def refresh(self) -> None:
        """F5: the configuration, the state and the list shown are read again."""
        self.refresh_config()
        self.set_state(self.engine.state)
        self.ops.refresh_sessions()
        node = self.node
        if node == Node.QUEUE and (self.state in RUNNING or self.state == "stopped"):
            self.queue_feed.load()
        elif node == Node.DROP:
            self.folder_ops.load_drop()
        elif node == Node.BADMAIL:
            self.folder_ops.load_badmail()
        elif node == Node.EVENTS:
            self.load_events()
        elif node == Node.LOG:
            self.protocol_log.load()

    def shown(self, node: Node) -> None:
        """The window now shows ``node`` of this computer: load what it lists the first time."""
        if node == Node.SESSIONS:
            self.ops.refresh_sessions()
        elif node == Node.QUEUE:
            self._queue_wanted = True
            if not self.queue_model.live and (self.state in RUNNING or self.state == "stopped"):
                self.queue_feed.load()
            self.queue_loading(self.queue_feed.loading)
        elif node == Node.DROP and not self.drop_model.loaded:
            self.folder_ops.load_drop()
        elif node == Node.BADMAIL and not self.badmail_model.loaded:
            self.folder_ops.load_badmail()
        elif node == Node.EVENTS and not self.event_viewer.loaded:
            self.load_events()
        self.performance.set_active(node == Node.PERFORMANCE)
        self.protocol_log.set_active(node == Node.LOG)

    def hidden(self) -> None:
        self.performance.set_active(False)
        self.protocol_log.set_active(False)

    def load_events(self) -> None:
        async def load() -> None:
            self.event_viewer.set_entries(await self.engine.list_events(limit=MAX_SHOWN))

        self.runner.spawn(load(), "Event Viewer")

    def queue_loading(self, loading: bool) -> None:
        if self.state not in RUNNING:
            if self.queue_feed.offline and not loading:
                read = time.strftime("%H:%M:%S", time.localtime(self.queue_feed.read_at))
                self.queue_pane.set_placeholder(STOPPED_QUEUE_READ.format(read=read))
            else:
                self.queue_pane.set_placeholder(STOPPED_QUEUE)
            self.queue_pane.refresh_chart(force=True)
        elif loading and not self.queue_model.total:
            self.queue_pane.set_placeholder("Reading the queue…")
        else:
            self.queue_pane.set_placeholder("")
        if not loading and self.queue_pane.isVisible():
            self.queue_pane.refresh_chart(force=True)  # the shape of what the list now shows, not of before

    def _pickup_top(self) -> QWidget:
        """The drop hint and, under it, what sits in the Pickup folder now (refreshed while the node shows)."""
        top = QWidget()
        layout = QVBoxLayout(top)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(drop_hint())
        self.pickup_now = QLabel()
        self.pickup_now.setWordWrap(True)
        self.pickup_now.setObjectName("summary")
        layout.addWidget(self.pickup_now)
        self._pickup_listing = False
        return top

    def _refresh_pickup_now(self) -> None:
        engine = self.engine
        if self._pickup_listing or not isinstance(engine, PickupFolderFacade):
            return
        self._pickup_listing = True

        async def run() -> None:
            try:
                files = await engine.list_pickup()
            finally:
                self._pickup_listing = False
            self.pickup_now.setText(pickup_now_text(files, self.state in RUNNING))
            self.pickup.show_folder(files)

        self.runner.spawn(run(), "Pickup")

    def tick(self) -> None:
        """Once a second: sessions' durations, the queue's ages, the Pickup folder while shown."""
        node = self.shell.current_node(self)
        if node == Node.PICKUP:
            self._refresh_pickup_now()
        if self._session_events:
            self._apply_session_events()
        self.sessions_model.tick()
        if node == Node.QUEUE:
            self.queue_model.tick()
        if self.state in RUNNING and self.link in ("local", "connected") \
                and (node == Node.SESSIONS or self.sessions_model.rowCount()):
            self.ops.refresh_sessions()

    # -- items: open, follow, properties ------------------------------------------------------------------

    def activated(self, node: Node, index: QModelIndex) -> None:
        """A double-click (Enter) on a row of ``node``'s pane."""
        pane = self.panes[node]
        key = pane.model.data(index, KEY_ROLE)
        if node == Node.COMPUTER:
            self.select_node(Node.SERVER)
        elif node == Node.SERVER:
            row = self.children_model.row_at(index)
            if row is not None:
                self.select_node(Node(row.node))
        elif node == Node.DOMAINS:
            self.ops.properties()
        elif node == Node.SESSIONS and key:
            self.show_session(str(key))
        elif node == Node.PICKUP and key:
            result = self.pickup.results.get(str(key))
            if result is not None:
                self.follow_pickup(result)
        elif node == Node.QUEUE:
            self.queue_ops.show_detail(self.queue_model.id_at(index.row()))
        elif node in (Node.DROP, Node.BADMAIL) and key:
            self.mail_ops.view([MessageRef(node.value, str(key))])
        elif node == Node.EVENTS and key:
            self.event_viewer.detail(str(key), self.window())

    def message_refs(self) -> list[MessageRef]:
        """The selected messages of the Queue, Drop or Badmail pane."""
        if self.node not in MESSAGE_NODES:
            return []
        return [MessageRef(self.node.value, key) for key in self.pane.selected_keys()]

    def delete(self) -> None:
        """Action ▸ Delete for whatever the selected node lists."""
        if self.node == Node.QUEUE:
            self.queue_ops.delete()
        elif self.node in (Node.DROP, Node.BADMAIL):
            self.folder_ops.delete(self.node.value, self.pane.selected_keys())
        else:
            self.ops.delete()

    def properties(self) -> None:
        """Action ▸ Properties: a queued message's detail, a session's, or the selected node's property sheet."""
        node = self.node
        keys = self.pane.selected_keys()
        if node == Node.QUEUE:
            self.queue_ops.show_detail()
        elif node == Node.SESSIONS:
            if keys:
                self.show_session(keys[0])
        elif node == Node.BADMAIL:
            item = self.badmail_model.get(keys[0]) if keys else None
            if item is not None:
                self.show_badmail(item)
        else:
            self.ops.properties()

    def follow_pickup(self, row: PickupRow) -> None:
        """A Pickup result leads to what became of the file: the queued message, its Drop file, its Badmail."""
        if row.status == "queued" and row.queue_id:
            self.select_node(Node.QUEUE)
            self.queue_ops.show_detail(row.queue_id)
        elif row.status == "delivered" and row.queue_id:
            self.select_node(Node.DROP)
            self._select_when_listed(Node.DROP, lambda: next(
                (r.ref for r in self.drop_model.rows() if r.ref.rsplit("/", 1)[-1].startswith(row.queue_id)), None))
        elif row.status == "refused":
            self.select_node(Node.BADMAIL)
            self._select_when_listed(Node.BADMAIL, lambda: next(
                (b.name for b in self.badmail_model.rows()
                 if b.name == row.badmail or (not row.badmail and b.property("pickup-file") == row.name)), None))

    def _select_when_listed(self, node: Node, find: Callable[[], str | None], tries: int = 50) -> None:
        """Select the row ``find`` names once the list has it (the folder may still be being read)."""
        key = find()
        if key is not None and self.node == node:
            self.panes[node].select_key(key)
        elif tries > 0 and self.node == node:
            QTimer.singleShot(100, self.panes[node], lambda: self._select_when_listed(node, find, tries - 1))

    def show_badmail(self, item: BadmailItem) -> BadmailDialog:
        dialog = BadmailDialog(item, self.window())

        def act(action: str) -> None:
            if action == "view":
                self.mail_ops.view([MessageRef("badmail", item.name)])
            else:
                self.folder_ops.resend("badmail", [item.name])

        dialog.act.connect(act)
        dialog.finished.connect(dialog.deleteLater)
        dialog.show()
        return dialog

    def show_session(self, session_id: str) -> SessionDialog:
        engine = self.engine
        dialog = SessionDialog(session_id, lambda: self.sessions_model.get(session_id), time.time, self.window(),
                               runner=self.runner,
                               transcript=(lambda: engine.session_transcript(session_id))
                               if isinstance(engine, TranscriptFacade) else None)
        dialog.resize(640, 560)
        dialog.terminate.connect(self.ops.terminate_ids)
        dialog.finished.connect(dialog.deleteLater)
        dialog.show()
        return dialog

    def close(self) -> None:
        self.closed = True
        self._soon.stop()
        self.queue_feed.close()
        self.folder_ops.close()
        self.pickup.close()
        self.queue_pane.hide()  # stops its chart timer
        self.performance.set_active(False)
        self.protocol_log.set_active(False)
