"""What the window's operation objects may see of the window: a narrow port, so the arrows run window → ops only."""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWidget

from ui.actions import Actions
from ui.errors import MessageBridge
from ui.facade import EngineFacade
from ui.models.domains import DomainsModel
from ui.models.folders import BadmailModel, DropModel
from ui.models.queue import QueueModel
from ui.models.sessions import SessionsModel
from ui.queue_pane import QueuePane
from ui.result_pane import FramedPane, ResultPane
from ui.scope import Node
from ui.tasks import TaskRunner

Pane = ResultPane | QueuePane | FramedPane


class WindowPort(Protocol):
    """The members of ui.window.ManagerWindow that Operations, QueueOperations, FolderOperations,
    MailOperations and PickupDrop use; ``window()`` is the parent for their dialogs."""

    engine: EngineFacade
    messages: MessageBridge
    settings: QSettings
    runner: TaskRunner
    state: str
    actions_: Actions
    panes: dict[Node, Pane]
    domains_model: DomainsModel
    sessions_model: SessionsModel
    queue_model: QueueModel
    queue_pane: QueuePane
    badmail_model: BadmailModel
    drop_model: DropModel

    @property
    def node(self) -> Node: ...
    @property
    def pane(self) -> Pane: ...
    def window(self) -> QWidget: ...
    def isVisible(self) -> bool: ...
    def select_node(self, node: Node) -> None: ...
    def refresh_config(self) -> None: ...
    def update_actions(self) -> None: ...
    def confirm(self, title: str, question: str) -> bool: ...
