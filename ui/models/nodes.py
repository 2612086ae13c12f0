"""Result panes of the Computer and virtual-server nodes: the servers with state and address, and child nodes."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QIcon

from ui.icons import icon, state_icon
from ui.models.table import Column, KeyedTableModel

STATE_LABELS: dict[str, str] = {
    "starting": "Starting",
    "started": "Running",
    "stopping": "Stopping",
    "stopped": "Stopped",
    "pausing": "Pausing",
    "paused": "Paused",
    "continuing": "Continuing",
}


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state.capitalize())


@dataclass(frozen=True)
class ServerRow:
    name: str
    state: str
    addresses: tuple[tuple[str, int], ...]  # bound, or configured while stopped
    mailroot: str


def _hosts(row: ServerRow) -> str:
    hosts = dict.fromkeys("All Unassigned" if host in ("", "0.0.0.0", "::") else host for host, _ in row.addresses)
    return ", ".join(hosts)


def _ports(row: ServerRow) -> str:
    return ", ".join(dict.fromkeys(str(port) for _, port in row.addresses))


class ServersModel(KeyedTableModel[ServerRow]):
    """The Computer node's pane: Description, State, IP Address, Port, Mailroot."""

    columns = (
        Column("Description", lambda r: r.name, width=200),
        Column("State", lambda r: state_label(r.state), width=90),
        Column("IP Address", _hosts, width=110),
        Column("Port", _ports, right=True, width=55),
        Column("Mailroot", lambda r: r.mailroot, width=260),
    )

    def key(self, row: ServerRow) -> str:
        return "server"

    def icon(self, row: ServerRow) -> QIcon:
        return state_icon("server", row.state)


@dataclass(frozen=True)
class NodeRow:
    node: str  # the scope node it opens (ui.scope.Node value)
    name: str
    icon_name: str
    description: str
    order: int = 0  # its place in the scope tree: the list is in tree order, as MMC's, not alphabetical
    status: str = ""  # what it holds now ("8 messages"); empty where it has not been read yet
    alert: bool = False  # the status wants attention (Badmail is not empty): shown in red


class ChildrenModel(KeyedTableModel[NodeRow]):
    """A container node's pane: its child nodes, opened with a double-click."""

    columns = (
        Column("Name", lambda r: r.name, sort=lambda r: r.order, width=160),
        Column("Description", lambda r: r.description, width=500),  # whole at the default size
        Column("Status", lambda r: r.status, width=110),
    )
    STATUS_COLUMN = 2

    def key(self, row: NodeRow) -> str:
        return row.node

    def foreground(self, row: NodeRow, column: int) -> QColor | None:
        return QColor("#a4262c") if row.alert and column == self.STATUS_COLUMN else None

    def icon(self, row: NodeRow) -> QIcon:
        return icon(row.icon_name)
