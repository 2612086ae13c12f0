"""The manager's main window: scope tree, result panes, menus, toolbar and status bar around the engine facade."""

from __future__ import annotations

import html
import time
from collections.abc import Callable

from PySide6.QtCore import QByteArray, QModelIndex, QPoint, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from engine.admin.mailroot_items import PickupFile
from engine.bounce.badmail import BadmailItem
from engine.conf.config import Config
from engine.conf.hostport import join_hostport, split_hostport
from engine.events import ConfigChanged, ErrorEvent, Event, ListenerFailed, SessionClosed, SessionOpened, StateChanged
from ui.about import AboutDialog
from ui.actions import Actions
from ui.badmail_detail import BadmailDialog
from ui.columns import ColumnsDialog
from ui.context import Pane
from ui.customize import CustomizeDialog
from ui.errors import MessageBridge
from ui.event_viewer import MAX_SHOWN, EventViewer
from ui.facade import EngineFacade, PickupFolderFacade, TranscriptFacade
from ui.folder_ops import FolderOperations
from ui.help import show_help
from ui.icons import state_icon
from ui.mail_ops import MailOperations, MessageRef
from ui.models.domains import DomainsModel
from ui.models.folders import BadmailModel, DropModel
from ui.models.nodes import ChildrenModel, NodeRow, ServerRow, ServersModel, state_label
from ui.models.queue import QueueModel, display_state
from ui.models.sessions import SessionsModel
from ui.models.table import KEY_ROLE
from ui.operations import Operations
from ui.performance import Performance
from ui.pickup_drop import PickupDrop, PickupRow, drop_hint
from ui.queue_feed import QueueFeed
from ui.queue_ops import QueueOperations
from ui.queue_pane import QueuePane
from ui.result_pane import FramedPane, ResultPane, SearchBar
from ui.scope import NODE_DESCRIPTIONS, NODE_ICONS, NODE_TITLES, PARENT_NODE, SERVER_CHILDREN, Node, ScopeTree
from ui.session_detail import SessionDialog
from ui.tasks import TaskRunner
from ui.track_dialog import TrackDialog
from ui.tray import TrayNotices
from ui.views import ItemTable, ItemView

APP_TITLE = "SMTP Service Manager"
ExportRows = Callable[[str, list[str], list[list[str]]], None]
SESSION_REFRESH_MS = 1000
RUNNING = ("started", "paused", "pausing", "continuing")
MESSAGE_NODES = (Node.QUEUE, Node.DROP, Node.BADMAIL)
ITEM_NODES = (Node.DOMAINS, Node.SESSIONS, *MESSAGE_NODES, Node.PICKUP)
SESSION_BURST = 50  # more session events than this waiting: they are shown with the next second's refresh
STATES_CHECKED_UP_TO = 5000  # a larger selection enables every queue action (checking each costs too much)
STOPPED_QUEUE = "The virtual server is stopped: reading its Queue folder…"
STOPPED_QUEUE_READ = ("The virtual server is stopped. This is what its Queue folder held at {read} (read-only; F5 "
                      "reads it again). Start the server (Action ▸ Start) to deliver or change these messages.")


# A list whose columns changed order gets a new key: a layout saved for the old order would scramble it.
COLUMN_LAYOUTS = {Node.QUEUE: 2}


EMPTY_TEXTS = {
    Node.DROP: "No message has been delivered to a local domain yet.",
    Node.BADMAIL: "Badmail is empty: everything could be delivered or returned.",
    Node.PICKUP: "No file has been put into Pickup from this window yet.",
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


def column_key(node: Node) -> str:
    version = COLUMN_LAYOUTS.get(node)
    return f"columns/{node.value}" + (f"-v{version}" if version else "")


class ManagerWindow(QMainWindow):
    closed = Signal()
    connect_requested = Signal()  # File → Connect to Computer… (app/remote_window.py answers it)
    replicate_requested = Signal()  # All Tasks → Replicate Configuration…

    def __init__(self, engine: EngineFacade, computer: str, settings: QSettings, export_rows: ExportRows,
                 messages: MessageBridge | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.settings = settings
        self.export_rows = export_rows
        self.messages = messages or MessageBridge()
        self.messages.note.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.state = engine.state
        self.messages_received = 0
        self._history: list[Node] = []
        self._future: list[Node] = []
        self._navigating = False
        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(state_icon("computer", "started"))
        self.actions_ = Actions(self)
        self.action_menu = self.actions_.build_menus(self)
        self.toolbar = self.actions_.build_toolbar(self)
        self.message_toolbar = self.actions_.build_message_toolbar(self)
        self.runner = TaskRunner(self.messages)  # keeps the tasks of every operation object alive
        self.ops = Operations(self)
        self.new_menu = QMenu("&New", self)
        self.new_menu.addAction(self.actions_.new_domain)
        self.all_tasks_menu = QMenu("All Tas&ks", self)
        self.all_tasks_menu.addAction(self.actions_.replicate)
        self._menu_for: tuple[Node, bool] | None = None
        self.servers_model = ServersModel()
        self.children_model = ChildrenModel()
        self.domains_model = DomainsModel()
        self.sessions_model = SessionsModel()
        self.queue_model = QueueModel()
        self.badmail_model = BadmailModel()
        self.drop_model = DropModel()
        self.pickup = PickupDrop(self)
        self.tree = ScopeTree(f"{computer} (local computer)", engine.config().name)
        self.queue_pane = QueuePane(self.queue_model)
        self.queue_pane.set_source(engine, self.runner)
        self.tray = TrayNotices(self.windowIcon(), self)
        self.tray.clicked.connect(self._raise)
        self.event_viewer = EventViewer()
        self.performance = Performance(engine, self.runner)
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
            Node.EVENTS: self.event_viewer.pane,
            Node.PERFORMANCE: self.performance.pane,
        }
        self.stack = QStackedWidget()
        for pane in self.panes.values():
            self.stack.addWidget(pane)
            pane.activated.connect(self._activated)
            pane.selection_changed.connect(self.update_actions)
            for view in pane.views():
                view.customContextMenuRequested.connect(self._result_menu)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.tree)
        self.description_bar = QLabel()  # MMC's description bar: the selected node over its contents
        self.description_bar.setObjectName("descriptionBar")
        self.description_bar.setContentsMargins(6, 3, 6, 3)
        self.description_bar.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(0)
        right_layout.addWidget(self.description_bar)
        right_layout.addWidget(self.stack, 1)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([280, 720])  # room for "Default SMTP Virtual Server (Stopped)"
        self.setCentralWidget(self.splitter)
        self._status_widgets()
        self.queue_feed = QueueFeed(engine, self.queue_model, self.runner)
        self.mail_ops = MailOperations(self)
        self.queue_ops = QueueOperations(self, view=self.mail_ops.view)
        self.folder_ops = FolderOperations(self)
        self._queue_wanted = False  # the Queue node was shown: keep its model live from then on
        self._session_events: list[SessionOpened | SessionClosed] = []
        self.setAcceptDrops(True)
        self.tree.drop_accepts = self.pickup.accepts
        self.tree.drop_to = self.pickup.drop
        for node in MESSAGE_NODES:
            self._drag_out(self.panes[node].detail)
        for node, why in EMPTY_TEXTS.items():  # an empty list says why (not a blank page)
            view = self.panes[node].detail
            if isinstance(view, ItemView):
                view.set_empty_text(why)
        self._connect()
        self.children_model.sync(NodeRow(node.value, NODE_TITLES[node], NODE_ICONS[node], NODE_DESCRIPTIONS[node],
                                         order) for order, node in enumerate(SERVER_CHILDREN))
        self.refresh_config()
        self.set_state(engine.state)
        self.tree.select(Node.SERVER)
        self._soon = QTimer(self)  # coalesces action/count updates after row changes
        self._soon.setSingleShot(True)
        self._soon.timeout.connect(self._rows_changed)
        for model in (self.domains_model, self.sessions_model, self.queue_model, self.drop_model,
                      self.badmail_model):
            model.rowsInserted.connect(self._soon.start)
            model.rowsRemoved.connect(self._soon.start)
            model.modelReset.connect(self._soon.start)
        # a message's state can change by a snapshot too, not only by an event: the actions follow it
        self.queue_model.dataChanged.connect(lambda *_: self._soon.start())
        self._timer = QTimer(self)
        self._timer.setInterval(SESSION_REFRESH_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self.restore_layout()

    # -- building -------------------------------------------------------------------------------

    def _status_widgets(self) -> None:
        bar = self.statusBar()
        self.state_icon_label = QLabel()
        self.state_label = QLabel()
        self.address_label = QLabel()
        self.count_label = QLabel()
        for widget in (self.state_label, self.address_label, self.count_label):
            widget.setFrameShape(QLabel.Shape.Panel)  # MMC's sunken status-bar fields
            widget.setFrameShadow(QLabel.Shadow.Sunken)
            widget.setContentsMargins(4, 0, 4, 0)
        for widget in (self.state_icon_label, self.state_label, self.address_label, self.count_label):
            bar.addPermanentWidget(widget)

    def _connect(self) -> None:
        a = self.actions_
        ops = self.ops
        self.tree.currentItemChanged.connect(lambda *_: self._node_changed())
        self.tree.customContextMenuRequested.connect(self._tree_menu)
        a.exit.triggered.connect(self.close)
        a.connect.triggered.connect(self.connect_requested.emit)
        a.replicate.triggered.connect(self.replicate_requested.emit)
        a.export.triggered.connect(self._export)
        a.back.triggered.connect(self._back)
        a.forward.triggered.connect(self._forward)
        a.up.triggered.connect(self._up)
        a.show_tree.toggled.connect(self.tree.setVisible)
        a.show_toolbar.toggled.connect(self.toolbar.setVisible)
        a.show_toolbar.toggled.connect(lambda on: self.message_toolbar.setVisible(on and self.node in MESSAGE_NODES))
        a.show_statusbar.toggled.connect(self.statusBar().setVisible)
        a.customize.triggered.connect(self.customize)
        a.tray_notices.toggled.connect(self.tray.set_enabled)
        a.tray_notices.toggled.connect(lambda on: self.settings.setValue("view/tray", on))
        if not self.tray.available():
            a.tray_notices.setEnabled(False)
            a.tray_notices.setStatusTip("Tray notices: this desktop has no system tray")
        a.view_modes.triggered.connect(lambda action: self.set_view_mode(str(action.data())))
        a.start.triggered.connect(ops.start)
        a.stop.triggered.connect(ops.stop)
        a.pause.triggered.connect(ops.pause_or_continue)
        a.new_domain.triggered.connect(ops.new_domain)
        a.set_default.triggered.connect(ops.set_default)
        a.delete.triggered.connect(self.delete)
        a.rename.triggered.connect(ops.rename)
        a.terminate.triggered.connect(ops.terminate)
        a.terminate_all.triggered.connect(ops.terminate_all)
        a.refresh.triggered.connect(self.refresh)
        a.track.triggered.connect(self.track_message)
        a.properties.triggered.connect(self.properties)
        a.about.triggered.connect(self._about)
        q, m = self.queue_ops, self.mail_ops
        a.retry_now.triggered.connect(q.retry_now)
        a.retry_domain.triggered.connect(q.retry_domain)
        a.release_etrn.triggered.connect(q.release_selected)
        a.freeze.triggered.connect(q.freeze)
        a.thaw.triggered.connect(q.thaw)
        a.bounce_now.triggered.connect(q.bounce_now)
        a.details.triggered.connect(lambda: q.show_detail())
        a.view_message.triggered.connect(lambda: m.view(self.message_refs()))
        a.save_as.triggered.connect(lambda: m.save(self.message_refs()))
        a.resend.triggered.connect(lambda: self.folder_ops.resend(self.pane.selected_keys()))
        a.open_folder.triggered.connect(lambda: self.folder_ops.open_folder(
            self.node.value if self.node in (*MESSAGE_NODES, Node.PICKUP) else "queue",
            next(iter(self.pane.selected_keys()), "") if self.node == Node.DROP else ""))  # that item's Drop
        a.show_chart.toggled.connect(self.queue_pane.show_chart)
        a.show_preview.toggled.connect(self.queue_pane.show_preview)
        a.show_preview.toggled.connect(lambda on: self.settings.setValue("queue/preview", on))
        a.columns.triggered.connect(self.choose_columns)
        a.help.triggered.connect(lambda: show_help(self.node.value, self))
        a.show_description.toggled.connect(self.description_bar.setVisible)
        a.put_pickup.triggered.connect(self._put_files)
        a.paste_pickup.triggered.connect(self._paste)
        self.queue_pane.chart_button.toggled.connect(a.show_chart.setChecked)
        a.pickup_preview.toggled.connect(lambda on: self.settings.setValue("pickup/preview", on))
        self.queue_feed.loading_changed.connect(self._queue_loading)

    # -- navigation -----------------------------------------------------------------------------

    @property
    def node(self) -> Node:
        return self.tree.node()

    def _drag_out(self, view: ItemView | ItemTable) -> None:
        view.enable_drag_out(lambda: self.mail_ops.start_drag(view, self.message_refs()))

    @property
    def pane(self) -> Pane:
        return self.panes[self.node]

    def message_refs(self) -> list[MessageRef]:
        """The selected messages of the Queue, Drop or Badmail pane."""
        if self.node not in MESSAGE_NODES:
            return []
        return [MessageRef(self.node.value, key) for key in self.pane.selected_keys()]

    def select_node(self, node: Node) -> None:
        self.tree.select(node)

    def confirm(self, title: str, question: str) -> bool:
        """Asked before destructive actions (Operations.confirm, which tests replace)."""
        return self.ops.confirm(title, question)

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
        if self.node == Node.QUEUE:
            self.queue_ops.show_detail()
        elif self.node == Node.SESSIONS:
            keys = self.pane.selected_keys()
            if keys:
                self.show_session(keys[0])
        elif self.node == Node.BADMAIL:
            keys = self.pane.selected_keys()
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
            QTimer.singleShot(100, lambda: self._select_when_listed(node, find, tries - 1))

    def node_path(self, node: Node) -> str:
        """MMC's title: the path of the selected node, "vm\\Default SMTP Virtual Server\\Queue"."""
        parts = []
        current: Node | None = node
        while current is not None:
            item = self.tree.items.get(current)
            parts.append(item.text(0) if item is not None else current.value)
            current = PARENT_NODE.get(current)
        return "\\".join(reversed(parts))

    def show_badmail(self, item: BadmailItem) -> BadmailDialog:
        dialog = BadmailDialog(item, self)

        def act(action: str) -> None:
            if action == "view":
                self.mail_ops.view([MessageRef("badmail", item.name)])
            else:
                self.folder_ops.resend([item.name])

        dialog.act.connect(act)
        dialog.finished.connect(dialog.deleteLater)
        dialog.show()
        return dialog

    def show_session(self, session_id: str) -> SessionDialog:
        engine = self.engine
        dialog = SessionDialog(session_id, lambda: self.sessions_model.get(session_id), time.time, self,
                               runner=self.runner,
                               transcript=(lambda: engine.session_transcript(session_id))
                               if isinstance(engine, TranscriptFacade) else None)
        dialog.resize(640, 560)
        dialog.terminate.connect(self.ops.terminate_ids)
        dialog.finished.connect(dialog.deleteLater)
        dialog.show()
        return dialog

    def _node_changed(self) -> None:
        node = self.node
        self.setWindowTitle(f"{APP_TITLE} - [{self.node_path(node)}]")
        path = self.node_path(node).split("\\", 1)[-1]  # from the virtual server down (the title has the computer)
        self.description_bar.setText(f"<b>{html.escape(path)}</b>"
                                     + (f" — {html.escape(NODE_DESCRIPTIONS[node])}" if node in NODE_DESCRIPTIONS
                                        else ""))
        if not self._navigating and (not self._history or self._history[-1] != node):
            self._history.append(node)
            self._future.clear()
        self.stack.setCurrentWidget(self.panes[node])
        if node == Node.SESSIONS:
            self.ops.refresh_sessions()
        elif node == Node.QUEUE:
            self._queue_wanted = True
            if not self.queue_model.live and (self.state in RUNNING or self.state == "stopped"):
                self.queue_feed.load()
            self._queue_loading(self.queue_feed.loading)
        elif node == Node.DROP and not self.drop_model.loaded:
            self.folder_ops.load_drop()
        elif node == Node.BADMAIL and not self.badmail_model.loaded:
            self.folder_ops.load_badmail()
        elif node == Node.EVENTS and not self.event_viewer.loaded:
            self.load_events()
        self.performance.set_active(node == Node.PERFORMANCE)
        self.message_toolbar.setVisible(node in MESSAGE_NODES and self.actions_.show_toolbar.isChecked())
        self._rebuild_action_menu()
        self.update_actions()
        self._update_counts()

    def _go(self, node: Node) -> None:
        self._navigating = True
        try:
            self.tree.select(node)
        finally:
            self._navigating = False

    def _back(self) -> None:
        if len(self._history) > 1:
            self._future.append(self._history.pop())
            self._go(self._history[-1])

    def _forward(self) -> None:
        if self._future:
            node = self._future.pop()
            self._history.append(node)
            self._go(node)

    def _up(self) -> None:
        parent = PARENT_NODE.get(self.node)
        if parent is not None:
            self.tree.select(parent)

    def _activated(self, index: QModelIndex) -> None:
        if self.node == Node.COMPUTER:
            self.tree.select(Node.SERVER)
        elif self.node == Node.SERVER:
            row = self.children_model.row_at(index)
            if row is not None:
                self.tree.select(Node(row.node))
        elif self.node == Node.DOMAINS:
            self.ops.properties()
        elif self.node == Node.SESSIONS:
            key = self.pane.model.data(index, KEY_ROLE)
            if key:
                self.show_session(str(key))
        elif self.node == Node.PICKUP:
            key = self.pane.model.data(index, KEY_ROLE)
            result = self.pickup.results.get(str(key)) if key else None
            if result is not None:
                self.follow_pickup(result)
        elif self.node == Node.QUEUE:
            self.queue_ops.show_detail(self.queue_model.id_at(index.row()))
        elif self.node in (Node.DROP, Node.BADMAIL):
            key = self.pane.model.data(index, KEY_ROLE)
            if key:
                self.mail_ops.view([MessageRef(self.node.value, str(key))])
        elif self.node == Node.EVENTS:
            key = self.pane.model.data(index, KEY_ROLE)
            if key:
                self.event_viewer.detail(str(key), self)

    def set_view_mode(self, mode: str) -> None:
        for pane in self.panes.values():
            pane.set_mode(mode)
        self.actions_.view_mode[mode].setChecked(True)

    # -- menus and action state -----------------------------------------------------------------

    def node_actions(self, node: Node) -> list[object]:
        a = self.actions_
        new_menu = self.new_menu
        server: list[object] = [a.start, a.stop, a.pause, None, new_menu, self.all_tasks_menu, None, a.rename, None,
                                a.refresh, a.export, None, a.properties]
        actions: dict[Node, list[object]] = {
            Node.COMPUTER: [a.connect, None, a.refresh, a.export],
            Node.SERVER: server,
            Node.DOMAINS: [new_menu, None, a.refresh, a.export],
            Node.SESSIONS: [a.terminate_all, None, a.refresh, a.export],
            Node.QUEUE: [a.retry_domain, None, a.show_chart, None, a.refresh, a.export],
            Node.PICKUP: [a.put_pickup, a.paste_pickup, None, a.pickup_preview, a.open_folder, None, a.export],
            Node.DROP: [a.open_folder, None, a.refresh, a.export],
            Node.BADMAIL: [a.open_folder, None, a.refresh, a.export],
            Node.EVENTS: [a.refresh, a.export],
            Node.PERFORMANCE: [a.export],
        }
        return actions[node]

    def item_actions(self) -> list[object]:
        a = self.actions_
        items: dict[Node, list[object]] = {
            Node.DOMAINS: [a.set_default, None, a.delete, a.rename, None, a.properties],
            Node.SESSIONS: [a.terminate, a.terminate_all, None, a.refresh, None, a.properties],
            Node.QUEUE: [a.details, a.view_message, a.save_as, None, a.retry_now, a.release_etrn, a.retry_domain,
                         a.freeze, a.thaw,
                         a.bounce_now, None, a.delete],
            Node.DROP: [a.view_message, a.save_as, None, a.delete, None, a.open_folder],
            Node.BADMAIL: [a.view_message, a.save_as, a.resend, None, a.delete, None, a.open_folder, None,
                           a.properties],
        }
        return items.get(self.node) or self.node_actions(self.node)

    def _fill(self, menu: QMenu, entries: list[object]) -> None:
        for entry in entries:
            if entry is None:
                menu.addSeparator()
            elif isinstance(entry, QMenu):
                menu.addMenu(entry)
            else:
                menu.addAction(entry)  # type: ignore[call-overload]

    def _rebuild_action_menu(self) -> None:
        """The Action menu lists the selected items' actions, else the node's; rebuilt only when that changes."""
        items = self.node in ITEM_NODES and bool(self.pane.selected_keys())
        if self._menu_for == (self.node, items):
            return
        self._menu_for = (self.node, items)
        self.action_menu.clear()
        self._fill(self.action_menu, self.item_actions() if items else self.node_actions(self.node))
        self._fill(self.action_menu, [None, self.actions_.track])

    def _tree_menu(self, point: QPoint) -> None:
        item = self.tree.itemAt(point)
        if item is None:
            return
        self.tree.setCurrentItem(item)
        menu = QMenu(self)
        self._fill(menu, self.node_actions(self.node))
        menu.popup(self.tree.viewport().mapToGlobal(point))

    def _result_menu(self, point: QPoint) -> None:
        view = self.pane.view()
        menu = QMenu(self)
        self._fill(menu, self.item_actions() if self.pane.selected_keys() else self.node_actions(self.node))
        if self.node in MESSAGE_NODES:
            self._fill(menu, [None, self.actions_.track])
        menu.popup(view.viewport().mapToGlobal(point))

    def update_actions(self) -> None:
        a = self.actions_
        node, state = self.node, self.state
        on_server = node != Node.COMPUTER
        keys = self.pane.selected_keys()
        domains = [self.domains_model.get(key) for key in keys] if node == Node.DOMAINS else []
        a.start.setEnabled(on_server and state == "stopped")
        a.stop.setEnabled(on_server and state in ("started", "paused"))
        a.pause.setEnabled(on_server and state in ("started", "paused"))
        a.pause.setChecked(state == "paused")
        a.pause.setText("Continue" if state == "paused" else "&Pause")
        a.new_domain.setEnabled(node in (Node.SERVER, Node.DOMAINS))
        a.set_default.setEnabled(len(domains) == 1 and domains[0] is not None and domains[0].type == "alias")
        on_queue = node == Node.QUEUE and state in RUNNING
        messages = node in MESSAGE_NODES and bool(keys) and (node != Node.QUEUE or on_queue)
        # Del = Terminate in Current Sessions
        a.delete.setEnabled(bool(domains) or (node == Node.SESSIONS and bool(keys)) or messages)
        a.rename.setEnabled(node == Node.SERVER or len(domains) == 1)
        a.terminate.setEnabled(node == Node.SESSIONS and bool(keys))
        a.terminate_all.setEnabled(node == Node.SESSIONS and self.sessions_model.rowCount() > 0)
        a.properties.setEnabled(node == Node.SERVER or len(domains) == 1 or (on_queue and bool(keys))
                                or (node in (Node.SESSIONS, Node.BADMAIL) and bool(keys)))
        a.export.setEnabled(self.pane.model.rowCount() > 0)
        a.back.setEnabled(len(self._history) > 1)
        a.forward.setEnabled(bool(self._future))
        a.up.setEnabled(node in PARENT_NODE)
        self._update_message_actions(node, keys, on_queue, messages)
        if node in ITEM_NODES:
            self._rebuild_action_menu()

    def _update_message_actions(self, node: Node, keys: list[str], on_queue: bool, messages: bool) -> None:
        a = self.actions_
        for action in (a.retry_now, a.freeze, a.thaw, a.bounce_now):
            action.setVisible(node == Node.QUEUE)
        held = on_queue and any(item.etrn_held for key in keys[:STATES_CHECKED_UP_TO]
                                if (item := self.queue_model.get(key)) is not None)
        a.release_etrn.setVisible(held)
        a.resend.setVisible(node == Node.BADMAIL)
        a.open_folder.setVisible(node != Node.QUEUE)
        states: set[str] = set()
        if on_queue and keys:
            if len(keys) > STATES_CHECKED_UP_TO:
                states = {"queued", "deferred", "frozen"}
            else:
                states = {display_state(item) for key in keys if (item := self.queue_model.get(key)) is not None}
        idle = not self.queue_ops.busy
        a.retry_now.setEnabled(idle and bool(states - {"frozen", "active", "etrn"}))
        a.release_etrn.setEnabled(idle and held)
        a.freeze.setEnabled(idle and bool(states - {"frozen"}))
        a.thaw.setEnabled(idle and "frozen" in states)
        a.bounce_now.setEnabled(idle and bool(states - {"active"}))
        a.retry_domain.setEnabled(on_queue and self.queue_model.total > 0)
        a.details.setEnabled(on_queue and bool(keys))
        a.view_message.setEnabled(messages)
        a.save_as.setEnabled(messages)
        a.resend.setEnabled(node == Node.BADMAIL and bool(keys))
        a.open_folder.setEnabled(node in (Node.PICKUP, Node.DROP, Node.BADMAIL))
        a.paste_pickup.setEnabled(node == Node.PICKUP)  # Ctrl+V elsewhere must not send mail by surprise

    # -- engine state ---------------------------------------------------------------------------

    def on_engine_events(self, batch: list[Event]) -> None:
        """Engine events, in order, delivered on the GUI thread (the bridge's queued signal)."""
        self.queue_feed.on_events(batch)
        self.queue_ops.on_events(batch)
        self.folder_ops.on_events(batch)
        self.pickup.on_events(batch)
        self.tray.on_events(batch)
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
                self.messages.inform(f"Cannot listen on {event.address}: {event.reason}")
            elif isinstance(event, ErrorEvent):
                self.messages.inform(f"{event.source}: {event.message}")
        self._rows_changed()

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
        config = self.engine.config()
        self.tree.set_server(config.name, state)
        self.state_icon_label.setPixmap(state_icon("server", state).pixmap(16, 16))
        self.state_label.setText(state_label(state))
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
        self._queue_loading(self.queue_feed.loading)
        self._update_server_row()
        self.update_actions()

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

    def _update_server_row(self) -> None:
        config = self.engine.config()
        addresses = self.addresses()
        self.servers_model.sync([ServerRow(config.name, self.state, addresses, str(self.engine.mailroot))])
        listening = ", ".join(join_hostport(host, port) for host, port in addresses)
        self.address_label.setText(f"Listening on {listening}" if self.state in RUNNING else f"Configured: {listening}")

    def _rows_changed(self) -> None:
        self._update_counts()
        self.update_actions()

    def _update_counts(self) -> None:
        sessions = self.sessions_model.rowCount()
        domains = self.domains_model.rowCount()
        self.count_label.setText(f"{domains} domain{'s' * (domains != 1)}, {sessions} session{'s' * (sessions != 1)}")
        self.actions_.export.setEnabled(self.pane.model.rowCount() > 0)
        self.actions_.terminate_all.setEnabled(self.node == Node.SESSIONS and sessions > 0)

    def refresh_config(self) -> None:
        config: Config = self.engine.config()
        self.domains_model.set_domains(config.effective_domains)
        self.tree.set_server(config.name, self.state)
        self._update_server_row()
        self._update_counts()

    def refresh(self) -> None:
        self.refresh_config()
        self.set_state(self.engine.state)
        self.ops.refresh_sessions()
        if self.node == Node.QUEUE and (self.state in RUNNING or self.state == "stopped"):
            self.queue_feed.load()
        elif self.node == Node.DROP:
            self.folder_ops.load_drop()
        elif self.node == Node.BADMAIL:
            self.folder_ops.load_badmail()
        elif self.node == Node.EVENTS:
            self.load_events()

    def track_message(self) -> TrackDialog:
        """Track Message…, for the selected queued or dropped message when there is one."""
        keys = self.pane.selected_keys() if self.node in MESSAGE_NODES else []
        queue_id = keys[0].rpartition("/")[2].removesuffix(".eml") if len(keys) == 1 else ""  # Drop: domain/ID.eml
        if self.node == Node.BADMAIL:  # a Badmail item names the queued message it was in its .BDP
            item = self.badmail_model.get(keys[0]) if len(keys) == 1 else None
            queue_id = item.property("queue-id") if item is not None else ""
        dialog = TrackDialog(self.engine, self.runner, self, queue_id=queue_id)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        if queue_id:
            dialog.search()
        return dialog

    def load_events(self) -> None:
        async def load() -> None:
            self.event_viewer.set_entries(await self.engine.list_events(limit=MAX_SHOWN))

        self.runner.spawn(load(), "Event Viewer")

    def _queue_loading(self, loading: bool) -> None:
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

    def _tick(self) -> None:
        if self.node == Node.PICKUP:
            self._refresh_pickup_now()
        if self._session_events:
            self._apply_session_events()
        self.sessions_model.tick()
        if self.node == Node.QUEUE:
            self.queue_model.tick()
        if self.state in RUNNING and (self.node == Node.SESSIONS or self.sessions_model.rowCount()):
            self.ops.refresh_sessions()

    # -- export, about, layout ------------------------------------------------------------------

    def export_list(self, path: str) -> None:
        headers, rows = self.pane.export_rows()
        self.export_rows(path, headers, rows)
        self.messages.inform(f"Exported {len(rows)} row(s) to {path}")

    def _export(self) -> None:
        name = {Node.COMPUTER: "servers", Node.SERVER: "nodes"}.get(self.node, self.node.value)
        path, _ = QFileDialog.getSaveFileName(self, "Export List", f"{name}.csv",
                                              "Comma separated values (*.csv);;All files (*)")
        if path:
            try:
                self.export_list(path)
            except OSError as error:
                self.messages.error("Export List", error)

    def _about(self) -> None:
        config = getattr(self.engine, "config_path", None)  # the embedded engine's file (not part of the facade)
        AboutDialog(str(self.engine.mailroot), str(config) if config else "", self).exec()

    def restore_layout(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1000, 600)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = s.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        for node, pane in self.panes.items():
            header = s.value(column_key(node))
            pane.restore_header(header if isinstance(header, QByteArray) else None)
        splitter = s.value("queue/splitter")
        if isinstance(splitter, QByteArray):
            self.queue_pane.splitter.restoreState(splitter)
        self.actions_.show_chart.setChecked(bool(s.value("view/chart", True, type=bool)))
        self.actions_.pickup_preview.setChecked(bool(s.value("pickup/preview", True, type=bool)))
        self.actions_.show_preview.setChecked(bool(s.value("queue/preview", False, type=bool)))
        self.actions_.tray_notices.setChecked(bool(s.value("view/tray", False, type=bool)))
        mode = s.value("view/mode", "detail")
        self.set_view_mode(mode if mode in self.actions_.view_mode else "detail")
        for key, action in (("view/tree", self.actions_.show_tree),
                            ("view/description", self.actions_.show_description),
                            ("view/toolbar", self.actions_.show_toolbar),
                            ("view/statusbar", self.actions_.show_statusbar)):
            action.setChecked(bool(s.value(key, True, type=bool)))

    def _put_files(self) -> None:
        if self.pickup.put_files():
            self.select_node(Node.PICKUP)  # where the files' results show

    def _paste(self) -> None:
        if self.pickup.paste():
            self.select_node(Node.PICKUP)

    def _raise(self) -> None:
        self.showNormal()
        self.raise_()
        self.activateWindow()

    def customize(self) -> CustomizeDialog:
        """View ▸ Customize…: MMC's Customize View, bound to the View menu's own items."""
        a = self.actions_
        dialog = CustomizeDialog([("Console &tree", a.show_tree), ("&Description bar", a.show_description),
                                  ("&Status bar", a.show_statusbar), ("Standard t&oolbar", a.show_toolbar)], self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def choose_columns(self) -> None:
        """View ▸ Add/Remove Columns… for the list in the result pane."""
        view = self.pane.views()[0]
        header = view.header() if isinstance(view, ItemView | ItemTable) else None
        if header is not None:
            ColumnsDialog(header, self).exec()

    def save_layout(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        for node, pane in self.panes.items():
            s.setValue(column_key(node), pane.header_state())
        s.setValue("view/mode", self.panes[Node.SERVER].mode)
        s.setValue("view/tree", self.actions_.show_tree.isChecked())
        s.setValue("view/description", self.actions_.show_description.isChecked())
        s.setValue("view/toolbar", self.actions_.show_toolbar.isChecked())
        s.setValue("view/statusbar", self.actions_.show_statusbar.isChecked())
        s.setValue("view/chart", self.actions_.show_chart.isChecked())
        s.setValue("queue/splitter", self.queue_pane.splitter.saveState())
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._timer.stop()
        self._soon.stop()
        self.queue_feed.close()
        self.folder_ops.close()
        self.pickup.close()
        self.tray.close()
        self.queue_pane.hide()  # stops its chart timer
        self.save_layout()
        event.accept()
        self.closed.emit()

    # -- files dropped on the window go into Pickup -----------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.pickup.accepts(event.mimeData(), event.source()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self.pickup.accepts(event.mimeData(), event.source()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        if self.pickup.accepts(event.mimeData(), event.source()):
            event.acceptProposedAction()
            self.pickup.drop(event.mimeData())
        else:
            event.ignore()

    def sheet_parent(self) -> QWidget:
        return self

    def focus_result(self) -> None:
        self.pane.view().setFocus(Qt.FocusReason.OtherFocusReason)
