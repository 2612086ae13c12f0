"""The scope tree (left pane): this computer → the virtual server → Domains, Current Sessions."""

from __future__ import annotations

from enum import StrEnum

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem, QWidget

from ui.icons import icon, state_icon

NODE_ROLE = Qt.ItemDataRole.UserRole


class Node(StrEnum):
    COMPUTER = "computer"
    SERVER = "server"
    DOMAINS = "domains"
    SESSIONS = "sessions"


CHILD_NODES: dict[Node, tuple[Node, ...]] = {
    Node.COMPUTER: (Node.SERVER,),
    Node.SERVER: (Node.DOMAINS, Node.SESSIONS),
    Node.DOMAINS: (),
    Node.SESSIONS: (),
}
PARENT_NODE: dict[Node, Node] = {child: parent for parent, children in CHILD_NODES.items() for child in children}
NODE_TITLES = {Node.DOMAINS: "Domains", Node.SESSIONS: "Current Sessions"}
NODE_ICONS = {Node.DOMAINS: "domains", Node.SESSIONS: "sessions"}
NODE_DESCRIPTIONS = {
    Node.DOMAINS: "Local (default and alias) and remote domains of this virtual server",
    Node.SESSIONS: "Clients connected to this virtual server now",
}


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

    def set_server(self, name: str, state: str) -> None:
        item = self.items[Node.SERVER]
        item.setText(0, name if state == "started" else f"{name} ({state_label_short(state)})")
        item.setIcon(0, state_icon("server", state))


def state_label_short(state: str) -> str:
    from ui.models.nodes import state_label

    return state_label(state)
