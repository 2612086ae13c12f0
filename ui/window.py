"""The manager's main window: the scope tree of every computer, result panes, menus, toolbar and status bar.

Each computer (this one's embedded engine, remote ones over their admin servers) is a ui.computer.Computer with
its own facade, nodes, panes and operations; the window shows the panes of the selected node's computer and
sends the actions there.
"""

from __future__ import annotations

from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QByteArray, QModelIndex, QPoint, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QSplitter,
    QStackedWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.bounce.badmail import BadmailItem
from engine.events import Event
from ui.about import AboutDialog
from ui.actions import Actions
from ui.badmail_detail import BadmailDialog
from ui.columns import ColumnsDialog
from ui.computer import MESSAGE_NODES, RUNNING, Computer, Link
from ui.context import Pane
from ui.customize import CustomizeDialog
from ui.description_bar import DescriptionBar
from ui.errors import MessageBridge
from ui.event_viewer import EventViewer
from ui.facade import EngineFacade
from ui.folder_ops import FolderOperations
from ui.help import show_help
from ui.icons import state_icon
from ui.mail_ops import MailOperations, MessageRef
from ui.models.domains import DomainsModel
from ui.models.folders import BadmailModel, DropModel
from ui.models.nodes import STATE_LABELS, ChildrenModel, NodeRow, ServersModel, state_label
from ui.models.queue import QueueModel
from ui.models.sessions import SessionsModel
from ui.operations import Operations
from ui.performance import Performance
from ui.pickup_drop import PickupDrop, PickupRow
from ui.queue_feed import QueueFeed
from ui.queue_ops import QueueOperations
from ui.queue_pane import QueuePane
from ui.result_pane import ResultPane
from ui.scope import NODE_DESCRIPTIONS, ROOT_TITLE, Node, ScopeTree
from ui.session_detail import SessionDialog
from ui.tasks import TaskRunner
from ui.track_dialog import TrackDialog
from ui.tray import TrayNotices
from ui.views import ItemTable, ItemView

APP_TITLE = ROOT_TITLE
LOCAL = "local"  # the key of this computer (the embedded engine)
ExportRows = Callable[[str, list[str], list[list[str]]], None]
SESSION_REFRESH_MS = 1000
ITEM_NODES = (Node.COMPUTER, Node.DOMAINS, Node.SESSIONS, *MESSAGE_NODES, Node.PICKUP)
STATES_CHECKED_UP_TO = 5000  # a larger selection enables every queue action (checking each costs too much)

# A list whose columns changed order gets a new key: a layout saved for the old order would scramble it.
COLUMN_LAYOUTS = {Node.QUEUE: 2}


def column_key(node: Node) -> str:
    version = COLUMN_LAYOUTS.get(node)
    return f"columns/{node.value}" + (f"-v{version}" if version else "")


class ManagerWindow(QMainWindow):
    closed = Signal()
    connect_requested = Signal()  # File → Connect to Computer… (app/computers.py answers it)
    replicate_requested = Signal()  # All Tasks → Replicate Configuration…
    remove_requested = Signal(str)  # Remove Computer: the computer's key
    trust_requested = Signal(str)  # Trust New Certificate…: the key of the computer whose certificate was refused
    new_window_requested = Signal(str, str)  # New Window from Here: (computer key, "" for the root; node)

    def __init__(self, engine: EngineFacade | None, computer: str, settings: QSettings, export_rows: ExportRows,
                 messages: MessageBridge | None = None, *, primary: bool = True) -> None:
        """``engine``: this computer's (added as "NAME (local computer)"); None: computers are added later.
        ``primary``: the window of the run (its layout is remembered); New Window from Here makes others."""
        super().__init__()
        self.settings = settings
        self.export_rows = export_rows
        self.primary = primary
        self.messages = messages or MessageBridge()
        self.messages.note.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.computers: dict[str, Computer] = {}
        self._last: Computer | None = None  # the computer whose node was shown last
        self._history: list[tuple[str, Node]] = []
        self._future: list[tuple[str, Node]] = []
        self._navigating = False
        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(state_icon("computer", "started"))
        self.actions_ = Actions(self)
        self.action_menu = self.actions_.build_menus(self)
        self.toolbar = self.actions_.build_toolbar(self)
        self.message_toolbar = self.actions_.build_message_toolbar(self)
        self.runner = TaskRunner(self.messages)  # keeps the tasks of every operation object alive
        self.new_menu = QMenu("&New", self)
        self.new_menu.addAction(self.actions_.new_domain)
        self.all_tasks_menu = QMenu("All Tas&ks", self)
        self.all_tasks_menu.addAction(self.actions_.replicate)
        self.view_submenu = QMenu("&View", self)  # MMC's context menus carry View ▸ (the modes, the columns)
        self.view_submenu.addActions(self.actions_.view_modes.actions())
        self.view_submenu.addSeparator()
        self.view_submenu.addActions([self.actions_.columns, self.actions_.customize])
        self._menu_for: tuple[Node, bool] | None = None
        self.tree = ScopeTree()
        self.tray = TrayNotices(self.windowIcon(), self)
        self.tray.clicked.connect(self._raise)
        self.computers_model = ChildrenModel()
        self.root_pane = ResultPane(self.computers_model, "root")
        self.stack = QStackedWidget()
        self._add_pane(self.root_pane, None, Node.ROOT)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.tree)
        self.description_bar = DescriptionBar()  # MMC's description bar: the selected node over its contents
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(0)
        right_layout.addWidget(self.description_bar)
        right_layout.addWidget(self.stack, 1)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([280, 720])  # widened by _fit_tree for the names the tree holds
        self.setCentralWidget(self.splitter)
        self._status_widgets()
        self.setAcceptDrops(True)
        self.tree.drop_accepts = lambda mime, source: self.current.pickup.accepts(mime, source)
        self.tree.drop_to = self._drop_on_tree
        self._connect()
        self._timer = QTimer(self)
        self._timer.setInterval(SESSION_REFRESH_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self.restore_layout()
        if engine is not None:
            self.add_computer(LOCAL, f"{computer} (local computer)", engine)
            self.tree.select(Node.SERVER, LOCAL)

    # -- computers ------------------------------------------------------------------------------

    def add_computer(self, key: str, label: str, engine: EngineFacade, link: Link = "local") -> Computer:
        """The computer's nodes under the root, beside the others; its panes work against ``engine``."""
        if key in self.computers:
            raise ValueError(f"{key} is already in the window")
        computer = Computer(self, key, label, engine, link)
        computer.items = self.tree.add_computer(key, label, engine.config().name)
        a = self.actions_
        for node, pane in computer.panes.items():
            self._add_pane(pane, computer, node)
            header = self.settings.value(column_key(node))
            pane.restore_header(header if isinstance(header, QByteArray) else None)
            pane.set_mode(self.root_pane.mode)
        for node in MESSAGE_NODES:
            view = computer.panes[node].detail
            self._drag_out(computer, view)
        queue_pane = computer.queue_pane
        queue_pane.show_chart(a.show_chart.isChecked())
        queue_pane.show_preview(a.show_preview.isChecked())
        a.show_chart.toggled.connect(queue_pane.show_chart)
        a.show_preview.toggled.connect(queue_pane.show_preview)
        queue_pane.chart_button.toggled.connect(a.show_chart.setChecked)
        splitter = self.settings.value("queue/splitter")
        if isinstance(splitter, QByteArray):
            queue_pane.splitter.restoreState(splitter)
        computer.queue_feed.loading_changed.connect(computer.queue_loading)
        self.computers[key] = computer
        if self._last is None:
            self._last = computer
        computer.refresh_config()
        computer.set_state(engine.state)
        self._fit_tree()
        return computer

    def _fit_tree(self) -> None:
        """Widen the tree for a longer computer name ("mx2.example.com (https://…:8443)") or the virtual server's name
        with its state ("Default SMTP Virtual Server (Stopped)"), within reason."""
        metrics = self.tree.fontMetrics()
        step = self.tree.indentation()
        state = f" ({STATE_LABELS['stopped']})"  # the lasting one; "(Continuing)" passes, elided in the middle
        widest = 0
        for computer in self.computers.values():
            # the root is decorated: a computer starts two steps in, its virtual server three
            widest = max(widest, metrics.horizontalAdvance(computer.items[Node.COMPUTER].text(0)) + step * 2,
                         metrics.horizontalAdvance(computer.engine.config().name + state) + step * 3)
        wanted = min(460, widest + 32)  # the icon, its spacing and the frame
        left, right = self.splitter.sizes()
        if left < wanted and left + right > wanted + 400:
            self.splitter.setSizes([wanted, left + right - wanted])

    def remove_computer(self, key: str) -> None:
        """Take the computer and its nodes out of the window (this computer's cannot be)."""
        computer = self.computers.get(key)
        if computer is None or key == LOCAL:
            return
        if self.tree.key_of(self.tree.currentItem()) == key:
            self.tree.select(Node.ROOT)
        computer.close()
        del self.computers[key]
        if self._last is computer:
            self._last = next(iter(self.computers.values()), None)
        self._history = [entry for entry in self._history if entry[0] != key]
        self._future = [entry for entry in self._future if entry[0] != key]
        for pane in computer.panes.values():
            self.stack.removeWidget(pane)
            pane.deleteLater()
        self.tree.remove_computer(key)
        self._sync_root()
        self.update_actions()

    def _add_pane(self, pane: Pane, computer: Computer | None, node: Node) -> None:
        self.stack.addWidget(pane)
        if computer is None:
            pane.activated.connect(self._root_activated)
        else:
            pane.activated.connect(lambda index: computer.activated(node, index))
        pane.selection_changed.connect(self.update_actions)
        for view in pane.views():
            view.customContextMenuRequested.connect(self._result_menu)

    def _drag_out(self, computer: Computer, view: ItemView | ItemTable) -> None:
        view.enable_drag_out(lambda: computer.mail_ops.start_drag(view, computer.message_refs()))

    @property
    def current(self) -> Computer:
        """The computer of the selected node (the root selected: the computer shown last)."""
        key = self.tree.key_of(self.tree.currentItem())
        computer = self.computers.get(key) if key is not None else self._last
        if computer is None:
            computer = self._last or next(iter(self.computers.values()))
        return computer

    @property
    def local(self) -> Computer:
        return self.computers.get(LOCAL) or next(iter(self.computers.values()))

    # -- the Shell of the computers (ui.computer.Shell) ---------------------------------------------

    def current_node(self, computer: Computer) -> Node | None:
        item = self.tree.currentItem()
        if item is None or self.tree.key_of(item) != computer.key:
            return None
        return self.tree.node()

    def show_item(self, item: QTreeWidgetItem) -> None:
        self.tree.setCurrentItem(item)

    def computer_changed(self, computer: Computer) -> None:
        """A computer's state, configuration, connection or rows changed: its nodes, and the window if shown."""
        if self.computers.get(computer.key) is not computer:
            return  # still being added, or removed
        config = computer.engine.config()
        self.tree.set_server(computer.key, config.name, computer.state)
        self.tree.set_computer(computer.key, computer.label, computer.link_text)
        self._fit_tree()  # a renamed server
        self._sync_root()
        if computer is self.current:
            self._update_status(computer)
            self.update_actions()
            self._update_counts()

    def engine_events(self, computer: Computer, batch: list[Event]) -> None:
        """Every computer's events, after it took them: the tray's notices."""
        self.tray.on_events(batch)

    def _sync_root(self) -> None:
        self.computers_model.sync(
            NodeRow(key, computer.label, "computer",
                    computer.link_text.capitalize() or ("This computer" if key == LOCAL
                                                        else f"Connected: {state_label(computer.state)}"), order)
            for order, (key, computer) in enumerate(self.computers.items()))

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
        # room for the longest state ("Disconnected — retrying"): the fields never overlap when it changes
        self.state_label.setMinimumWidth(self.state_label.fontMetrics().horizontalAdvance("Disconnected — retrying")
                                         + 12)

    def _connect(self) -> None:
        a = self.actions_
        self.tree.currentItemChanged.connect(lambda *_: self._node_changed())
        self.tree.customContextMenuRequested.connect(self._tree_menu)
        a.exit.triggered.connect(self.close)
        a.connect.triggered.connect(self.connect_requested.emit)
        a.remove_computer.triggered.connect(lambda: self.remove_requested.emit(self.current.key))
        a.trust_certificate.triggered.connect(lambda: self.trust_requested.emit(self.current.key))
        a.new_window.triggered.connect(self._new_window)
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
        a.start.triggered.connect(lambda: self.current.ops.start())
        a.stop.triggered.connect(lambda: self.current.ops.stop())
        a.pause.triggered.connect(lambda: self.current.ops.pause_or_continue())
        a.new_domain.triggered.connect(lambda: self.current.ops.new_domain())
        a.set_default.triggered.connect(lambda: self.current.ops.set_default())
        a.delete.triggered.connect(self.delete)
        a.rename.triggered.connect(lambda: self.current.ops.rename())
        a.terminate.triggered.connect(lambda: self.current.ops.terminate())
        a.terminate_all.triggered.connect(lambda: self.current.ops.terminate_all())
        a.refresh.triggered.connect(self.refresh)
        a.track.triggered.connect(self.track_message)
        a.properties.triggered.connect(self.properties)
        a.about.triggered.connect(self._about)
        a.retry_now.triggered.connect(lambda: self.current.queue_ops.retry_now())
        a.retry_domain.triggered.connect(lambda: self.current.queue_ops.retry_domain())
        a.retry_all.triggered.connect(lambda: self.current.queue_ops.retry_all())
        a.release_etrn.triggered.connect(lambda: self.current.queue_ops.release_selected())
        a.freeze.triggered.connect(lambda: self.current.queue_ops.freeze())
        a.thaw.triggered.connect(lambda: self.current.queue_ops.thaw())
        a.bounce_now.triggered.connect(lambda: self.current.queue_ops.bounce_now())
        a.details.triggered.connect(lambda: self.current.queue_ops.show_detail())
        a.view_message.triggered.connect(lambda: self.current.mail_ops.view(self.current.message_refs()))
        a.save_as.triggered.connect(lambda: self.current.mail_ops.save(self.current.message_refs()))
        a.resend.triggered.connect(lambda: self.current.folder_ops.resend(self.node.value, self.pane.selected_keys()))
        a.open_folder.triggered.connect(lambda: self.current.folder_ops.open_folder(
            self.node.value if self.node in (*MESSAGE_NODES, Node.PICKUP) else "queue",
            next(iter(self.pane.selected_keys()), "") if self.node == Node.DROP else ""))  # that item's Drop
        a.show_preview.toggled.connect(lambda on: self.settings.setValue("queue/preview", on))
        a.columns.triggered.connect(self.choose_columns)
        a.help.triggered.connect(lambda: show_help(self.node.value, self))
        a.show_description.toggled.connect(self.description_bar.setVisible)
        a.put_pickup.triggered.connect(self._put_files)
        a.paste_pickup.triggered.connect(self._paste)
        a.pickup_preview.toggled.connect(lambda on: self.settings.setValue("pickup/preview", on))

    # -- navigation -----------------------------------------------------------------------------

    @property
    def node(self) -> Node:
        return self.tree.node()

    @property
    def pane(self) -> Pane:
        return self.root_pane if self.node == Node.ROOT else self.current.panes[self.node]

    def message_refs(self) -> list[MessageRef]:
        return self.current.message_refs()

    def select_node(self, node: Node, key: str | None = None) -> None:
        """Select ``node`` of the computer ``key`` (default: the computer shown now)."""
        self.tree.select(node, key if key is not None or node == Node.ROOT else self.current.key)

    def confirm(self, title: str, question: str) -> bool:
        """Asked before destructive actions (Operations.confirm, which tests replace)."""
        return self.current.confirm(title, question)

    def delete(self) -> None:
        """Action ▸ Delete for whatever the selected node lists."""
        if self.node != Node.ROOT:
            self.current.delete()

    def properties(self) -> None:
        """Action ▸ Properties: a queued message's detail, a session's, or the selected node's property sheet."""
        if self.node != Node.ROOT:
            self.current.properties()

    def node_path(self, item: QTreeWidgetItem | None = None) -> str:
        """MMC's title: the path of the selected node, "vm (local computer)\\Default SMTP Virtual Server\\Queue"."""
        item = item or self.tree.currentItem()
        parts = []
        while item is not None and item is not self.tree.root:
            parts.append(item.text(0))
            item = item.parent()
        return "\\".join(reversed(parts)) or APP_TITLE

    def _node_changed(self) -> None:
        node = self.node
        item = self.tree.currentItem()
        key = self.tree.key_of(item)
        self.setWindowTitle(f"{APP_TITLE} - [{self.node_path()}]")
        top, _, path = self.node_path().partition("\\")  # from the virtual server down (the title has it all)
        if len(self.computers) > 1 and path:  # with several computers, say whose server this is
            path = f"{top.split(' (', 1)[0]}\\{path}"
        path = path or top
        self.description_bar.set_description(path, NODE_DESCRIPTIONS.get(node, ""))
        entry = (key or "", node)
        if not self._navigating and (not self._history or self._history[-1] != entry):
            self._history.append(entry)
            self._future.clear()
        computer = self.computers.get(key) if key is not None else None
        if self._last is not None and self._last is not computer:
            self._last.hidden()
        if computer is None:
            self.stack.setCurrentWidget(self.root_pane)
        else:
            self._last = computer
            self.stack.setCurrentWidget(computer.panes[node])
            computer.shown(node)
            self._update_status(computer)
        self.message_toolbar.setVisible(node in MESSAGE_NODES and self.actions_.show_toolbar.isChecked())
        self._rebuild_action_menu()
        self.update_actions()
        self._update_counts()

    def _go(self, entry: tuple[str, Node]) -> None:
        self._navigating = True
        try:
            self.tree.select(entry[1], entry[0] or None)
        finally:
            self._navigating = False

    def _back(self) -> None:
        if len(self._history) > 1:
            self._future.append(self._history.pop())
            self._go(self._history[-1])

    def _forward(self) -> None:
        if self._future:
            entry = self._future.pop()
            self._history.append(entry)
            self._go(entry)

    def _up(self) -> None:
        item = self.tree.currentItem()
        parent = item.parent() if item is not None else None
        if parent is None or (self.tree.rootIndex().isValid()
                              and self.tree.indexFromItem(parent) == self.tree.rootIndex()):
            return  # the top of this window's tree
        self.tree.setCurrentItem(parent)

    def _root_activated(self, index: QModelIndex) -> None:
        row = self.computers_model.row_at(index)
        if row is not None and row.node in self.computers:
            self.tree.select(Node.COMPUTER, row.node)

    def set_view_mode(self, mode: str) -> None:
        self.root_pane.set_mode(mode)
        for computer in self.computers.values():
            for pane in computer.panes.values():
                pane.set_mode(mode)
        self.actions_.view_mode[mode].setChecked(True)

    def _new_window(self) -> None:
        """New Window from Here: a window whose tree starts at the selected node (app/ opens it)."""
        self.new_window_requested.emit(self.tree.key_of(self.tree.currentItem()) or "", self.node.value)

    def root_at(self, key: str, node: Node) -> None:
        """Make this window's tree start at ``node`` of computer ``key`` (a New Window from Here)."""
        item = self.tree.root if node == Node.ROOT else self.computers[key].items[node]
        self.tree.root_at(item)
        self.tree.setCurrentItem(item)
        self.setWindowTitle(f"{APP_TITLE} - [{self.node_path(item)}]")

    # -- menus and action state -----------------------------------------------------------------

    def node_actions(self, node: Node) -> list[object]:
        a = self.actions_
        new_menu = self.new_menu
        server: list[object] = [a.start, a.stop, a.pause, None, new_menu, self.all_tasks_menu, None, a.rename, None,
                                a.refresh, a.export, None, a.properties]
        actions: dict[Node, list[object]] = {
            Node.ROOT: [a.connect, None, a.refresh, a.export],
            Node.COMPUTER: [a.connect, a.remove_computer, a.trust_certificate, None, a.refresh, a.export],
            Node.SERVER: server,
            Node.DOMAINS: [new_menu, None, a.refresh, a.export],
            Node.SESSIONS: [a.terminate_all, None, a.refresh, a.export],
            Node.QUEUE: [a.retry_all, a.retry_domain, None, a.show_chart, None, a.refresh, a.export],
            Node.PICKUP: [a.put_pickup, a.paste_pickup, None, a.pickup_preview, a.open_folder, None, a.export],
            Node.DROP: [a.open_folder, None, a.refresh, a.export],
            Node.BADMAIL: [a.open_folder, None, a.refresh, a.export],
            Node.LOG: [a.refresh, a.export],
            Node.EVENTS: [a.refresh, a.export],
            Node.PERFORMANCE: [a.export],
        }
        return actions[node]

    def item_actions(self) -> list[object]:
        a = self.actions_
        items: dict[Node, list[object]] = {
            Node.COMPUTER: [a.start, a.stop, a.pause, None, a.rename, None, a.refresh, None, a.properties],
            Node.DOMAINS: [a.set_default, None, a.delete, a.rename, None, a.properties],
            Node.SESSIONS: [a.terminate, a.terminate_all, None, a.refresh, None, a.properties],
            Node.QUEUE: [a.details, a.view_message, a.save_as, None, a.retry_now, a.release_etrn, a.retry_domain,
                         a.freeze, a.thaw,
                         a.bounce_now, None, a.delete],
            Node.DROP: [a.view_message, a.save_as, a.resend, None, a.delete, None, a.open_folder],
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
        self._fill(menu, [*self.node_actions(self.node), None, self.view_submenu, self.actions_.new_window, None,
                          self.actions_.help])
        menu.popup(self.tree.viewport().mapToGlobal(point))

    def _result_menu(self, point: QPoint) -> None:
        view = self.pane.view()
        menu = QMenu(self)
        items = bool(self.pane.selected_keys())
        self._fill(menu, self.item_actions() if items else self.node_actions(self.node))
        if self.node in MESSAGE_NODES:
            self._fill(menu, [None, self.actions_.track])
        if not items:  # the empty part of the list: the node's own menu, as in MMC
            self._fill(menu, [None, self.view_submenu, None, self.actions_.help])
        menu.popup(view.viewport().mapToGlobal(point))

    def update_actions(self) -> None:
        a = self.actions_
        node = self.node
        computer = self.current
        state = computer.state if node != Node.ROOT else "stopped"
        reachable = computer.link in ("local", "connected")
        keys = self.pane.selected_keys()
        server_row = node == Node.COMPUTER and bool(keys)  # the server's row carries the server node's verbs (MMC)
        on_server = (node not in (Node.COMPUTER, Node.ROOT) or server_row) and reachable
        domains = [computer.domains_model.get(key) for key in keys] if node == Node.DOMAINS else []
        a.start.setEnabled(on_server and state == "stopped")
        a.stop.setEnabled(on_server and state in ("started", "paused"))
        a.pause.setEnabled(on_server and state in ("started", "paused"))
        a.pause.setChecked(state == "paused")
        a.pause.setText("Continue" if state == "paused" else "&Pause")
        a.new_domain.setEnabled(node in (Node.SERVER, Node.DOMAINS) and reachable)
        a.set_default.setEnabled(len(domains) == 1 and domains[0] is not None and domains[0].type == "alias")
        on_queue = node == Node.QUEUE and state in RUNNING
        messages = node in MESSAGE_NODES and bool(keys) and (node != Node.QUEUE or on_queue)
        # Del = Terminate in Current Sessions
        a.delete.setEnabled(bool(domains) or (node == Node.SESSIONS and bool(keys)) or messages)
        a.rename.setEnabled(node == Node.SERVER or server_row or len(domains) == 1)
        a.terminate.setEnabled(node == Node.SESSIONS and bool(keys))
        a.terminate_all.setEnabled(node == Node.SESSIONS and computer.sessions_model.rowCount() > 0)
        a.properties.setEnabled((node == Node.SERVER and reachable) or (server_row and reachable) or len(domains) == 1
                                or (on_queue and bool(keys))
                                or (node in (Node.SESSIONS, Node.BADMAIL) and bool(keys)))
        a.export.setEnabled(self.pane.model.rowCount() > 0)
        a.back.setEnabled(len(self._history) > 1)
        a.forward.setEnabled(bool(self._future))
        a.up.setEnabled(node != Node.ROOT)
        a.remove_computer.setEnabled(node == Node.COMPUTER and computer.key != LOCAL)
        a.trust_certificate.setVisible(node == Node.COMPUTER and computer.key != LOCAL)
        a.trust_certificate.setEnabled(node == Node.COMPUTER and computer.link == "untrusted")
        a.put_pickup.setEnabled(node != Node.ROOT)
        self._update_message_actions(computer, node, keys, on_queue, messages)
        if node in ITEM_NODES:
            self._rebuild_action_menu()

    def _update_message_actions(self, computer: Computer, node: Node, keys: list[str], on_queue: bool,
                                messages: bool) -> None:
        a = self.actions_
        queue_model = computer.queue_model
        for action in (a.retry_now, a.freeze, a.thaw, a.bounce_now):
            action.setVisible(node == Node.QUEUE)
        held = on_queue and any(queue_model.etrn_held_of(key) for key in keys[:STATES_CHECKED_UP_TO])
        a.release_etrn.setVisible(held)
        a.resend.setVisible(node in (Node.BADMAIL, Node.DROP))
        a.resend.setStatusTip("Deliver a copy of the selected Drop items again (the files stay)" if node == Node.DROP
                              else "Put the selected Badmail items back into Pickup")
        a.open_folder.setVisible(node != Node.QUEUE)
        states: set[str] = set()
        if on_queue and keys:
            if len(keys) > STATES_CHECKED_UP_TO:
                states = {"queued", "deferred", "frozen"}
            else:
                states = {state for key in keys if (state := queue_model.state_of(key)) is not None}
        idle = not computer.queue_ops.busy
        a.retry_now.setEnabled(idle and bool(states - {"frozen", "active", "etrn"}))
        a.release_etrn.setEnabled(idle and held)
        a.freeze.setEnabled(idle and bool(states - {"frozen"}))
        a.thaw.setEnabled(idle and "frozen" in states)
        a.bounce_now.setEnabled(idle and bool(states - {"active"}))
        a.retry_domain.setEnabled(on_queue and queue_model.total > 0)
        a.retry_all.setEnabled(on_queue and queue_model.total > 0)
        a.details.setEnabled(on_queue and bool(keys))
        a.view_message.setEnabled(messages)
        a.save_as.setEnabled(messages)
        a.resend.setEnabled(node in (Node.BADMAIL, Node.DROP) and bool(keys))
        a.open_folder.setEnabled(node in (Node.PICKUP, Node.DROP, Node.BADMAIL) and computer.link == "local")
        a.paste_pickup.setEnabled(node == Node.PICKUP)  # Ctrl+V elsewhere must not send mail by surprise

    # -- the status bar -------------------------------------------------------------------------

    def _update_status(self, computer: Computer) -> None:
        state = computer.state
        if computer.link_text:
            self.state_icon_label.setPixmap(state_icon("computer", "stopped").pixmap(16, 16))
            self.state_label.setText(computer.link_text.capitalize())
            self.state_label.setToolTip(computer.link_reason)
        else:
            self.state_icon_label.setPixmap(state_icon("server", state).pixmap(16, 16))
            self.state_label.setText(state_label(state))
            self.state_label.setToolTip("")
        self.address_label.setText(computer.listening_text())

    def _update_counts(self) -> None:
        computer = self.current
        sessions = computer.sessions_model.rowCount()
        domains = computer.domains_model.rowCount()
        self.count_label.setText(f"{domains} domain{'s' * (domains != 1)}, {sessions} session{'s' * (sessions != 1)}")
        self.actions_.export.setEnabled(self.pane.model.rowCount() > 0)
        self.actions_.terminate_all.setEnabled(self.node == Node.SESSIONS and sessions > 0)

    def refresh(self) -> None:
        if self.node == Node.ROOT:
            self._sync_root()
        else:
            self.current.refresh()

    def track_message(self) -> TrackDialog:
        """Track Message…, for the selected queued or dropped message when there is one."""
        computer = self.current
        keys = self.pane.selected_keys() if self.node in MESSAGE_NODES else []
        queue_id = keys[0].rpartition("/")[2].removesuffix(".eml") if len(keys) == 1 else ""  # Drop: domain/ID.eml
        if self.node == Node.BADMAIL:  # a Badmail item names the queued message it was in its .BDP
            item = computer.badmail_model.get(keys[0]) if len(keys) == 1 else None
            queue_id = item.property("queue-id") if item is not None else ""
        dialog = TrackDialog(computer.engine, self.runner, self, queue_id=queue_id)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        if queue_id:
            dialog.search()
        return dialog

    def _tick(self) -> None:
        for computer in self.computers.values():
            computer.tick()

    # -- export, about, layout ------------------------------------------------------------------

    def export_list(self, path: str) -> None:
        pane = self.pane
        if isinstance(pane, QueuePane):  # its subjects are read for the rows painted: the rest first
            self.runner.spawn(self._export_queue(pane, path), "Export List")
            return
        self._write_export(pane.export_rows(), path)

    async def _export_queue(self, pane: QueuePane, path: str) -> None:
        await pane.read_subjects()
        if shiboken6.isValid(pane):
            self._write_export(pane.export_rows(), path)

    def _write_export(self, exported: tuple[list[str], list[list[str]]], path: str) -> None:
        headers, rows = exported
        self.export_rows(path, headers, rows)
        self.messages.inform(f"Exported {len(rows)} row(s) to {path}")

    def _export(self) -> None:
        name = {Node.ROOT: "computers", Node.COMPUTER: "servers", Node.SERVER: "nodes"}.get(self.node,
                                                                                          self.node.value)
        path, _ = QFileDialog.getSaveFileName(self, "Export List", f"{name}.csv",
                                              "Comma separated values (*.csv);;All files (*)")
        if path:
            try:
                self.export_list(path)
            except OSError as error:
                self.messages.error("Export List", error)

    def _about(self) -> None:
        engine = self.current.engine
        config = getattr(engine, "config_path", None)  # the embedded engine's file (not part of the facade)
        AboutDialog(str(engine.mailroot), str(config) if config else "", self).exec()

    def restore_layout(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and self.primary:
            self.restoreGeometry(geometry)
        else:
            self.resize(1000, 600)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        splitter = s.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        header = s.value(column_key(Node.ROOT))
        self.root_pane.restore_header(header if isinstance(header, QByteArray) else None)
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
        computer = self.current
        if computer.pickup.put_files():
            computer.select_node(Node.PICKUP)  # where the files' results show

    def _paste(self) -> None:
        computer = self.current
        if computer.pickup.paste():
            computer.select_node(Node.PICKUP)

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
        computer = self.current
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        s.setValue(column_key(Node.ROOT), self.root_pane.header_state())
        for node, pane in computer.panes.items():
            s.setValue(column_key(node), pane.header_state())
        s.setValue("view/mode", self.root_pane.mode)
        s.setValue("view/tree", self.actions_.show_tree.isChecked())
        s.setValue("view/description", self.actions_.show_description.isChecked())
        s.setValue("view/toolbar", self.actions_.show_toolbar.isChecked())
        s.setValue("view/statusbar", self.actions_.show_statusbar.isChecked())
        s.setValue("view/chart", self.actions_.show_chart.isChecked())
        s.setValue("queue/splitter", computer.queue_pane.splitter.saveState())
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._timer.stop()
        for computer in self.computers.values():
            computer.close()
        self.tray.close()
        if self.primary and self.computers:
            self.save_layout()
        event.accept()
        self.closed.emit()

    # -- files dropped on the window go into the Pickup of the computer shown ----------------------

    def _drop_on_tree(self, mime: object, key: str | None) -> None:
        computer = self.computers.get(key) if key is not None else None
        (computer or self.current).pickup.drop(mime)  # type: ignore[arg-type]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.current.pickup.accepts(event.mimeData(), event.source()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self.current.pickup.accepts(event.mimeData(), event.source()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        if self.current.pickup.accepts(event.mimeData(), event.source()):
            event.acceptProposedAction()
            self.current.pickup.drop(event.mimeData())
        else:
            event.ignore()

    def sheet_parent(self) -> QWidget:
        return self

    def focus_result(self) -> None:
        self.pane.view().setFocus(Qt.FocusReason.OtherFocusReason)

    # -- the computer shown (the local one's, with one computer), as before there were several ------------

    def on_engine_events(self, batch: list[Event]) -> None:
        """This computer's engine events (app/ connects each computer's own bridge to its Computer)."""
        self.local.on_engine_events(batch)

    @property
    def engine(self) -> EngineFacade:
        return self.current.engine

    @property
    def state(self) -> str:
        return self.current.state

    def set_state(self, state: str) -> None:
        self.current.set_state(state)

    def refresh_config(self) -> None:
        self.current.refresh_config()

    @property
    def ops(self) -> Operations:
        return self.current.ops

    @property
    def queue_ops(self) -> QueueOperations:
        return self.current.queue_ops

    @property
    def mail_ops(self) -> MailOperations:
        return self.current.mail_ops

    @property
    def folder_ops(self) -> FolderOperations:
        return self.current.folder_ops

    @property
    def pickup(self) -> PickupDrop:
        return self.current.pickup

    @property
    def pickup_now(self) -> QLabel:
        return self.current.pickup_now

    @property
    def panes(self) -> dict[Node, Pane]:
        return self.current.panes

    @property
    def queue_pane(self) -> QueuePane:
        return self.current.queue_pane

    @property
    def queue_feed(self) -> QueueFeed:
        return self.current.queue_feed

    @property
    def queue_model(self) -> QueueModel:
        return self.current.queue_model

    @property
    def sessions_model(self) -> SessionsModel:
        return self.current.sessions_model

    @property
    def domains_model(self) -> DomainsModel:
        return self.current.domains_model

    @property
    def badmail_model(self) -> BadmailModel:
        return self.current.badmail_model

    @property
    def drop_model(self) -> DropModel:
        return self.current.drop_model

    @property
    def servers_model(self) -> ServersModel:
        return self.current.servers_model

    @property
    def children_model(self) -> ChildrenModel:
        return self.current.children_model

    @property
    def event_viewer(self) -> EventViewer:
        return self.current.event_viewer

    @property
    def performance(self) -> Performance:
        return self.current.performance

    @property
    def messages_received(self) -> int:
        return self.current.messages_received

    def show_session(self, session_id: str) -> SessionDialog:
        return self.current.show_session(session_id)

    def show_badmail(self, item: BadmailItem) -> BadmailDialog:
        return self.current.show_badmail(item)

    def follow_pickup(self, row: PickupRow) -> None:
        self.current.follow_pickup(row)

    def addresses(self) -> tuple[tuple[str, int], ...]:
        return self.current.addresses()

    def load_events(self) -> None:
        self.current.load_events()
