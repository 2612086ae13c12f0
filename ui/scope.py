"""The scope tree (left pane): SMTP Service Manager → each computer (this one, remote ones) → its virtual server
→ Domains, Current Sessions, Queue, Pickup, Drop, Badmail, Event Viewer, Performance. Every item knows its node
and its computer's key. Files dragged over a node are taken into the Pickup of that node's computer (the window
decides)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QBrush, QColor, QDragEnterEvent, QDragLeaveEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from ui.icons import icon, state_icon

NODE_ROLE = Qt.ItemDataRole.UserRole


class Node(StrEnum):
    ROOT = "root"
    COMPUTER = "computer"
    SERVER = "server"
    DOMAINS = "domains"
    SESSIONS = "sessions"
    QUEUE = "queue"
    PICKUP = "pickup"
    DROP = "drop"
    BADMAIL = "badmail"
    LOG = "log"
    EVENTS = "events"
    PERFORMANCE = "performance"


SERVER_CHILDREN = (Node.DOMAINS, Node.SESSIONS, Node.QUEUE, Node.PICKUP, Node.DROP, Node.BADMAIL, Node.LOG,
                   Node.EVENTS, Node.PERFORMANCE)
CHILD_NODES: dict[Node, tuple[Node, ...]] = {Node.ROOT: (Node.COMPUTER,), Node.COMPUTER: (Node.SERVER,),
                                            Node.SERVER: SERVER_CHILDREN}
CHILD_NODES.update({node: () for node in SERVER_CHILDREN})
PARENT_NODE: dict[Node, Node] = {child: parent for parent, children in CHILD_NODES.items() for child in children}
NODE_TITLES = {Node.DOMAINS: "Domains", Node.SESSIONS: "Current Sessions", Node.QUEUE: "Queue",
               Node.PICKUP: "Pickup", Node.DROP: "Drop", Node.BADMAIL: "Badmail", Node.LOG: "Protocol Log",
               Node.EVENTS: "Event Viewer", Node.PERFORMANCE: "Performance"}
NODE_ICONS = {Node.DOMAINS: "domains", Node.SESSIONS: "sessions", Node.QUEUE: "queue", Node.PICKUP: "pickup",
              Node.DROP: "drop", Node.BADMAIL: "badmail", Node.LOG: "log", Node.EVENTS: "events",
              Node.PERFORMANCE: "performance"}
NODE_DESCRIPTIONS = {
    Node.ROOT: "The computers administered from this window: File ▸ Connect to Computer… adds one",
    Node.DOMAINS: "Local (default and alias) and remote domains of this virtual server",
    Node.SESSIONS: "Clients connected to this virtual server now",
    Node.QUEUE: "Messages waiting for delivery: retry, freeze, return or delete them",
    Node.PICKUP: "Drop message files here to send them; what became of each",
    Node.DROP: "Messages delivered to the local domains",
    Node.BADMAIL: "Messages that could be neither delivered nor returned, with the reason",
    Node.LOG: "Today's protocol log: one line per SMTP command, inbound and outbound",
    Node.EVENTS: "The event log: starts, stops, failures, lock-outs, Badmail, NDRs, configuration changes",
    Node.PERFORMANCE: "Live charts of the SMTP Server performance counters",
}
DROP_NODES = (Node.QUEUE, Node.PICKUP)  # dragged files over these nodes show where they go
DropTarget = Callable[[QMimeData, object], bool]
COMPUTER_ROLE = Qt.ItemDataRole.UserRole + 1  # the key of the computer an item sits under
ROOT_TITLE = "SMTP Service Manager"


class ScopeTree(QTreeWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderHidden(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformRowHeights(True)
        self.setMinimumWidth(180)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # a narrowed tree still shows "… (Stopped)"
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.root = self._item(None, Node.ROOT, ROOT_TITLE, icon("computer"), "")
        self.computers: dict[str, dict[Node, QTreeWidgetItem]] = {}
        self.drop_accepts: DropTarget | None = None  # (mime, source) -> whether the window takes it
        self.drop_to: Callable[[QMimeData, str | None], object] | None = None  # (mime, computer key)
        self._hover: QTreeWidgetItem | None = None
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(False)

    def add_computer(self, key: str, label: str, server_name: str) -> dict[Node, QTreeWidgetItem]:
        """The computer's node, its virtual server and the server's children, under the root."""
        items: dict[Node, QTreeWidgetItem] = {}
        items[Node.COMPUTER] = self._item(self.root, Node.COMPUTER, label, state_icon("computer", "started"), key)
        server = self._item(items[Node.COMPUTER], Node.SERVER, server_name, state_icon("server", "stopped"), key)
        items[Node.SERVER] = server
        for node in CHILD_NODES[Node.SERVER]:
            items[node] = self._item(server, node, NODE_TITLES[node], icon(NODE_ICONS[node]), key)
        self.computers[key] = items
        self.expandItem(self.root)
        self.expandItem(items[Node.COMPUTER])
        self.expandItem(server)
        return items

    def remove_computer(self, key: str) -> None:
        items = self.computers.pop(key, None)
        if items is not None:
            if self._hover is not None and self._hover in items.values():
                self._hover = None
            self.root.removeChild(items[Node.COMPUTER])

    @property
    def items(self) -> dict[Node, QTreeWidgetItem]:
        """The first computer's items (this computer's, in the main window)."""
        return next(iter(self.computers.values()), {Node.ROOT: self.root})

    def _item(self, parent: QTreeWidgetItem | None, node: Node, text: str, item_icon: object,
              key: str) -> QTreeWidgetItem:
        item = QTreeWidgetItem([text])
        item.setIcon(0, item_icon)  # type: ignore[arg-type]
        item.setData(0, NODE_ROLE, node.value)
        item.setData(0, COMPUTER_ROLE, key)
        if parent is None:
            self.addTopLevelItem(item)
        else:
            parent.addChild(item)
        return item

    def node(self) -> Node:
        item = self.currentItem()
        return Node(item.data(0, NODE_ROLE)) if item is not None else Node.ROOT

    @staticmethod
    def key_of(item: QTreeWidgetItem | None) -> str | None:
        """The key of the computer ``item`` sits under (None: the root)."""
        key = item.data(0, COMPUTER_ROLE) if item is not None else None
        return str(key) if key else None

    def select(self, node: Node, key: str | None = None) -> None:
        """Select ``node`` of the computer ``key`` (the first computer's by default)."""
        if node == Node.ROOT:
            self.setCurrentItem(self.root)
            return
        items = self.computers[key] if key is not None else self.items
        self.setCurrentItem(items[node])

    def root_at(self, item: QTreeWidgetItem) -> None:
        """MMC's New Window from Here: only ``item`` and what is under it shows, ``item`` at the top."""
        parent = item.parent()
        if parent is None:
            return
        for index in range(parent.childCount()):
            sibling = parent.child(index)
            if sibling is not None:
                sibling.setHidden(sibling is not item)
        self.setRootIndex(self.indexFromItem(parent))
        self.expandItem(item)

    # -- files dropped on the tree: they go into Pickup (the whole window takes them too) ---------

    def _takes(self, mime: QMimeData, source: object) -> bool:
        return self.drop_accepts is not None and self.drop_accepts(mime, source)

    def _highlight(self, item: QTreeWidgetItem | None) -> None:
        if self._hover is not None and self._hover is not item:
            self._hover.setBackground(0, QBrush())
        if item is not None and Node(item.data(0, NODE_ROLE)) in DROP_NODES:
            item.setBackground(0, QBrush(QColor("#cde3f9")))
            self._hover = item
        else:
            self._hover = None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._takes(event.mimeData(), event.source()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if self._takes(event.mimeData(), event.source()):
            self._highlight(self.itemAt(event.position().toPoint()))
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self._highlight(None)

    def dropEvent(self, event: QDropEvent) -> None:
        self._highlight(None)
        if self._takes(event.mimeData(), event.source()) and self.drop_to is not None:
            event.acceptProposedAction()
            self.drop_to(event.mimeData(), self.key_of(self.itemAt(event.position().toPoint())))
        else:
            event.ignore()

    def set_server(self, key: str, name: str, state: str) -> None:
        item = self.computers[key][Node.SERVER]
        item.setText(0, name if state == "started" else f"{name} ({state_label_short(state)})")
        item.setToolTip(0, item.text(0))
        item.setIcon(0, state_icon("server", state))

    def set_computer(self, key: str, label: str, link_text: str) -> None:
        """The computer's node: its name, and the state of the connection when it is not simply up."""
        item = self.computers[key][Node.COMPUTER]
        item.setText(0, f"{label} — {link_text}" if link_text else label)
        item.setToolTip(0, item.text(0))
        item.setIcon(0, state_icon("computer", "stopped" if link_text else "started"))


def state_label_short(state: str) -> str:
    from ui.models.nodes import state_label

    return state_label(state)
