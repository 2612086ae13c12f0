"""Check DNS on the Advanced Delivery page (as IIS has): the FQDN looked up by the engine's resolver, told in a box."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QMessageBox, QPushButton, QWidget

from engine.smtp.dns_check import DnsReport
from ui.facade import DnsCheckFacade
from ui.tasks import TaskRunner


def report_text(report: DnsReport) -> str:
    """The box's text: the addresses, where mail for the name would go, and which DNS servers said so."""
    lines = [f"Addresses of {report.name}: {', '.join(report.addresses)}" if report.addresses
             else f"{report.name} has no address: {report.address_problem}."]
    if report.mx_problem:
        lines.append(f"MX: {report.mx_problem}.")
    elif report.mx_implicit:
        lines.append(f"MX: none; mail for {report.name} goes to its own address.")
    elif report.mx:
        lines.append(f"MX: mail for {report.name} goes to {', then '.join(report.mx)}.")
    asked = ", ".join(report.servers) if report.servers else "this computer's DNS resolver"
    lines.append(f"Asked: {asked}.")
    return "\n".join(lines)


class CheckDnsButton(QWidget):
    """``name()`` and ``servers()`` read the fields as they are now (not yet applied)."""

    def __init__(self, facade: DnsCheckFacade, runner: TaskRunner, name: Callable[[], str],
                 servers: Callable[[], tuple[str, ...]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.facade, self.runner, self.name, self.servers = facade, runner, name, servers
        self.button = QPushButton("C&heck DNS")
        self.button.setToolTip("Look up the fully qualified domain name above with the external DNS servers below "
                               "(or this computer's): its addresses and MX records, as delivery would")
        self.button.clicked.connect(self.check)
        row = QHBoxLayout(self)
        row.setContentsMargins(9, 0, 9, 0)  # under the name it checks, at its right end (as IIS's)
        row.addStretch(1)
        row.addWidget(self.button)

    def tell(self, title: str, text: str, ok: bool) -> None:
        """The result box (tests replace it)."""
        icon = QMessageBox.Icon.Information if ok else QMessageBox.Icon.Warning
        QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self.window()).exec()

    def check(self) -> None:
        name = self.name().strip()
        if not name:
            self.tell("Check DNS", "Type the fully qualified domain name first.", False)
            return
        servers = self.servers()
        self.button.setEnabled(False)

        async def run() -> None:
            try:
                report = await self.facade.check_dns(name, servers)
            finally:
                self.button.setEnabled(True)
            self.tell("Check DNS", report_text(report), report.ok)

        self.runner.spawn(run(), "Check DNS")
