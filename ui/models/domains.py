"""The Domains result pane: Domain Name, Type, and where each domain's mail goes (route, relay, TLS)."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtGui import QIcon

from engine.conf.config import DomainConfig
from engine.conf.options import DOMAIN_TYPE_LABELS
from ui.icons import domain_icon
from ui.models.table import Column, KeyedTableModel

TYPE_ORDER = {"default": 0, "alias": 1, "remote": 2}


def _route(domain: DomainConfig) -> str:
    """Where its mail goes: DNS or the smart host; a local domain's Drop directory."""
    if domain.type == "remote":
        return f"Smart host {domain.smart_host}" if domain.route == "smarthost" else "DNS"
    if domain.drop_dir:
        return f"Drop directory {domain.drop_dir}"
    return "Drop directory Mailroot/Drop" if domain.type == "default" else "Drop directory of the default domain"


def _yes(flag: bool, domain: DomainConfig) -> str:
    return ("Yes" if flag else "No") if domain.type == "remote" else "—"  # not a remote domain's setting


class DomainsModel(KeyedTableModel[DomainConfig]):
    columns = (
        Column("Domain Name", lambda d: d.name, width=200),
        Column("Type", lambda d: DOMAIN_TYPE_LABELS.get(d.type, d.type),
               sort=lambda d: (TYPE_ORDER.get(d.type, 9), d.name.casefold()), width=120),
        Column("Relay", lambda d: _yes(d.relay_allowed, d), width=60),
        Column("Route", _route, width=150),
        Column("TLS Required", lambda d: _yes(d.tls_required, d), width=90),
    )

    def key(self, row: DomainConfig) -> str:
        return row.name.casefold()

    def icon(self, row: DomainConfig) -> QIcon:
        return domain_icon(row.type)

    def set_domains(self, domains: Iterable[DomainConfig]) -> None:
        self.sync(domains)
