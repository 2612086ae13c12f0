"""The scope tree (left pane): this computer → the virtual server → Domains, Current Sessions, Queue, Pickup,
Drop, Badmail, Event Viewer, Performance. Files dragged over the Queue or Pickup node are taken there (the
window decides)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from PySide6.QtCore import QMimeData, Qt
from PySide6.QtGui import QBrush, QColor, QDragEnterEvent, QDragLeaveEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from ui.icons import icon, state_icon

NODE_ROLE = Qt.ItemDataRole.UserRole


class Node(StrEnum):
    COMPUTER = "computer"
    SERVER = "server"
    DOMAINS = "domains"
    SESSIONS = "sessions"
    QUEUE = "queue"
    PICKUP = "pickup"
    DROP = "drop"
    BADMAIL = "badmail"
    EVENTS = "events"
    PERFORMANCE = "performance"


SERVER_CHILDREN = (Node.DOMAINS, Node.SESSIONS, Node.QUEUE, Node.PICKUP, Node.DROP, Node.BADMAIL, Node.EVENTS,
                   Node.PERFORMANCE)
CHILD_NODES: dict[Node, tuple[Node, ...]] = {Node.COMPUTER: (Node.SERVER,), Node.SERVER: SERVER_CHILDREN}
CHILD_NODES.update({node: () for node in SERVER_CHILDREN})
PARENT_NODE: dict[Node, Node] = {child: parent for parent, children in CHILD_NODES.items() for child in children}
NODE_TITLES = {Node.DOMAINS: "Domains", Node.SESSIONS: "Current Sessions", Node.QUEUE: "Queue",
               Node.PICKUP: "Pickup", Node.DROP: "Drop", Node.BADMAIL: "Badmail", Node.EVENTS: "Event Viewer",
               Node.PERFORMANCE: "Performance"}
NODE_ICONS = {Node.DOMAINS: "domains", Node.SESSIONS: "sessions", Node.QUEUE: "queue", Node.PICKUP: "pickup",
              Node.DROP: "drop", Node.BADMAIL: "badmail", Node.EVENTS: "events", Node.PERFORMANCE: "performance"}
NODE_DESCRIPTIONS = {
    Node.DOMAINS: "Local (default and alias) and remote domains of this virtual server",
    Node.SESSIONS: "Clients connected to this virtual server now",
    Node.QUEUE: "Messages waiting for delivery: retry, freeze, return or delete them",
    Node.PICKUP: "Drop message files here to send them; what became of each",
    Node.DROP: "Messages delivered to the local domains",
    Node.BADMAIL: "Messages that could be neither delivered nor returned, with the reason",
    Node.EVENTS: "The event log: starts and stops, failures, lock-outs, Badmail, NDRs, configuration changes",
    Node.PERFORMANCE: "Live charts of the SMTP Server performance counters",
}
DROP_NODES = (Node.QUEUE, Node.PICKUP)  # dragged files over these nodes show where they go
DropTarget = Callable[[QMimeData, object], bool]


class ScopeTree(QTreeWidget):
    def __init__(self, computer: str, server_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderHidden(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformRowHeights(True)
        self.setMinimumWidth(180)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.items: dict[Node, QTreeWidgetItem] = {}
        self.items[Node.COMPUTER] = self._item(None, Node.COMPUTER, computer, icon("computer"))
        server = self._item(self.items[Node.COMPUTER], Node.SERVER, server_name, state_icon("server", "stopped"))
        self.items[Node.SERVER] = server
        for node in CHILD_NODES[Node.SERVER]:
            self.items[node] = self._item(server, node, NODE_TITLES[node], icon(NODE_ICONS[node]))
        self.expandAll()
        self.drop_accepts: DropTarget | None = None  # (mime, source) -> whether the window takes it
        self.drop_to: Callable[[QMimeData], object] | None = None
        self._hover: QTreeWidgetItem | None = None
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(False)

    def _item(self, parent: QTreeWidgetItem | None, node: Node, text: str, item_icon: object) -> QTreeWidgetItem:
        item = QTreeWidgetItem([text])
        item.setIcon(0, item_icon)  # type: ignore[arg-type]
        item.setData(0, NODE_ROLE, node.value)
        if parent is None:
            self.addTopLevelItem(item)
        else:
            parent.addChild(item)
        return item

    def node(self) -> Node:
        item = self.currentItem()
        return Node(item.data(0, NODE_ROLE)) if item is not None else Node.COMPUTER

    def select(self, node: Node) -> None:
        self.setCurrentItem(self.items[node])

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
            self.drop_to(event.mimeData())
        else:
            event.ignore()

    def set_server(self, name: str, state: str) -> None:
        item = self.items[Node.SERVER]
        item.setText(0, name if state == "started" else f"{name} ({state_label_short(state)})")
        item.setIcon(0, state_icon("server", state))


def state_label_short(state: str) -> str:
    from ui.models.nodes import state_label

    return state_label(state)
