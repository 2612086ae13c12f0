"""What the window's actions do: server state, domains, sessions and property sheets, through the facade."""

from __future__ import annotations

from dataclasses import replace

import shiboken6
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMessageBox, QWidget

from engine.conf.config import Config, delete_domain, rename_domain, set_default_domain
from engine.conf.config_file import validate_config
from engine.errors import DomainError, EngineError, NotFoundError
from ui.context import WindowPort
from ui.domain_sheet import DomainSheet
from ui.domain_wizard import DomainWizard
from ui.facade import AccountsFacade, CertificateFacade, DnsCheckFacade, OperatorsFacade
from ui.scope import Node
from ui.server_sheet import ServerSheet
from ui.users_dialog import UsersDialog


class Operations:
    def __init__(self, window: WindowPort) -> None:
        self.w = window
        self.engine = window.engine
        self.messages = window.messages
        self.runner = window.runner
        self._sessions_pending = False
        self.sheet: ServerSheet | DomainSheet | None = None
        self.wizard: DomainWizard | None = None

    # -- server state ---------------------------------------------------------------------------

    def start(self) -> None:
        self.runner.spawn(self.engine.start(), "Start the virtual server")

    def stop(self) -> None:
        self.runner.spawn(self.engine.stop(), "Stop the virtual server")

    def pause_or_continue(self) -> None:
        if self.w.state == "paused":
            self.runner.spawn(self.engine.resume(), "Continue the virtual server")
        else:
            self.runner.spawn(self.engine.pause(), "Pause the virtual server")

    # -- configuration --------------------------------------------------------------------------

    async def apply(self, config: Config) -> None:
        await self.engine.apply_config(config)
        self.w.refresh_config()

    def _apply_domains(self, config: Config, title: str, select: str | None = None,
                       then_properties: bool = False) -> None:
        async def run() -> None:
            await self.apply(config)
            if select:
                self.w.panes[Node.DOMAINS].select_key(select.casefold())
                if then_properties and self.w.node == Node.DOMAINS:
                    self.properties()

        self.runner.spawn(run(), title)

    def _domains(self) -> list[str]:
        if self.w.node != Node.DOMAINS:
            return []
        return [domain.name for key in self.w.pane.selected_keys()
                if (domain := self.w.domains_model.get(key)) is not None]

    def new_domain(self) -> None:
        wizard = DomainWizard(self.engine.config, self.w.window())
        wizard.finished_config.connect(lambda config: self._domain_added(wizard, config))
        self.wizard = wizard
        wizard.finished.connect(wizard.deleteLater)
        wizard.open()

    def _domain_added(self, wizard: DomainWizard, config: Config) -> None:
        name = wizard.names.domain().name
        self.w.select_node(Node.DOMAINS)
        self._apply_domains(config, "New Domain", select=name,
                            then_properties=wizard.names.open_properties.isChecked())

    def set_default(self) -> None:
        names = self._domains()
        if len(names) != 1:
            return
        try:
            config = set_default_domain(self.engine.config(), names[0])
        except DomainError as error:
            self.messages.refuse("Set as Default", str(error))
            return
        self._apply_domains(config, "Set as Default", select=names[0])

    def delete(self) -> None:
        if self.w.node == Node.SESSIONS:
            self.terminate()
            return
        names = self._domains()
        if not names:
            return
        config = self.engine.config()
        try:
            for name in names:
                config = delete_domain(config, name)
        except DomainError as error:
            self.messages.refuse("Delete", f"{error}. Make another local domain the default first "
                                 "(select an alias domain, then Set as Default).")
            return
        question = f"Delete the domain {names[0]}?" if len(names) == 1 else f"Delete these {len(names)} domains?"
        if self.confirm("Delete", question):
            self._apply_domains(config, "Delete")

    def confirm(self, title: str, question: str) -> bool:
        """Asked before destructive actions; tests replace it."""
        answer = QMessageBox.question(self.w.window(), title, question)
        return answer == QMessageBox.StandardButton.Yes

    def ask_text(self, title: str, label: str, text: str) -> str | None:
        """Asked for a new name; tests replace it."""
        value, ok = QInputDialog.getText(self.w.window(), title, label, QLineEdit.EchoMode.Normal, text)
        return value.strip() if ok and value.strip() and value.strip() != text else None

    def rename(self) -> None:
        if self.w.node in (Node.SERVER, Node.COMPUTER):
            config = self.engine.config()
            name = self.ask_text("Rename", "Name of the virtual server:", config.name)
            if name:
                self.runner.spawn(self._validated_apply(replace(config, name=name)), "Rename")
            return
        names = self._domains()
        if len(names) != 1:
            return
        new = self.ask_text("Rename", "Domain name:", names[0])
        if not new:
            return
        try:
            config = rename_domain(self.engine.config(), names[0], new.lower())
        except DomainError as error:
            self.messages.refuse("Rename", str(error))
            return
        self._apply_domains(config, "Rename", select=new)

    async def _validated_apply(self, config: Config) -> None:
        validate_config(config)
        await self.apply(config)

    def properties(self) -> None:
        if self.sheet is not None and shiboken6.isValid(self.sheet) and self.sheet.isVisible():
            self.sheet.raise_()
            return
        if self.w.node == Node.DOMAINS:
            names = self._domains()
            domain = self.w.domains_model.get(names[0].casefold()) if len(names) == 1 else None
            if domain is None:
                return
            self.sheet = DomainSheet(self.engine.config, domain, self.apply, self.runner, self.messages,
                                     self.w.window())
        elif self.w.node in (Node.SERVER, Node.COMPUTER):  # the server node, or its row in the Computer node
            self.sheet = ServerSheet(self.engine.config, self.w.state, self.apply, self.runner, self.messages,
                                     self.w.window(),
                                     open_users=self.open_users if isinstance(self.engine, AccountsFacade) else None,
                                     certificates=self.engine if isinstance(self.engine, CertificateFacade) else None,
                                     operators=self.engine if isinstance(self.engine, OperatorsFacade) else None,
                                     dns=self.engine if isinstance(self.engine, DnsCheckFacade) else None)
        else:
            return
        self.sheet.finished.connect(self.sheet.deleteLater)
        self.sheet.open()

    def open_users(self, parent: QWidget) -> UsersDialog:
        assert isinstance(self.engine, AccountsFacade)
        dialog = UsersDialog(self.engine, self.runner, self.messages, parent)
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    # -- sessions -------------------------------------------------------------------------------

    def refresh_sessions(self) -> None:
        if self._sessions_pending or self.w.state not in ("started", "paused", "pausing", "continuing"):
            return
        self._sessions_pending = True
        generation = self.w.sessions_model.snapshot_started()

        async def run() -> None:
            try:
                sessions = await self.engine.list_sessions()
            except EngineError as error:  # a refresh (a remote link dropping, a restart): the next one reads again
                self.messages.note.emit(f"Current Sessions not read: {error}")
                return
            finally:
                self._sessions_pending = False
            self.w.sessions_model.apply_snapshot(generation, sessions)

        self.runner.spawn(run(), "Current Sessions")

    def terminate(self) -> None:
        if self.w.node != Node.SESSIONS:
            return
        self.terminate_ids(self.w.pane.selected_keys())

    def terminate_ids(self, *ids: str | list[str]) -> None:
        """Terminate these sessions (a list, or ids as arguments: the Session Properties signal gives one)."""
        keys = [key for item in ids for key in ([item] if isinstance(item, str) else item)]

        async def run() -> None:
            for key in keys:
                try:
                    await self.engine.terminate_session(key)
                except NotFoundError:  # it ended by itself meanwhile
                    continue

        if keys:
            self.runner.spawn(run(), "Terminate")

    def terminate_all(self) -> None:
        if self.confirm("Terminate All", "Close every current session?"):
            self.runner.spawn(self.engine.terminate_all_sessions(), "Terminate All")
