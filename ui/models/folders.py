"""Badmail and Drop panes: one row per item, filled by a listing once, then kept by engine events and our actions.

Invariant (as Current Sessions): a listing never brings back an item whose removal was already handled, and
never removes a row that appeared after the listing was asked for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TypeVar

from PySide6.QtGui import QIcon

from engine.admin.mailroot_items import DropItem
from engine.bounce.badmail import BadmailItem
from ui.icons import icon
from ui.models.table import Column, KeyedTableModel
from ui.units import size_text

R = TypeVar("R", BadmailItem, DropItem)
GONE_MEMORY = 20_000


def date(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else ""


def addresses(recipients: tuple[str, ...]) -> str:
    if not recipients:
        return ""
    return recipients[0] + (f" (+{len(recipients) - 1})" if len(recipients) > 1 else "")


class FolderModel(KeyedTableModel[R]):
    """A listed folder: ``snapshot_started``/``apply_snapshot`` for listings, ``upsert``/``gone`` for news."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False
        self._generation = 0
        self._born: dict[str, int] = {}
        self._gone: dict[str, None] = {}

    def snapshot_started(self) -> int:
        self._generation += 1
        return self._generation

    def apply_snapshot(self, generation: int, items: Iterable[R]) -> None:
        fresh = [item for item in items if self.key(item) not in self._gone]
        self.sync(fresh, keep=lambda key: self._born.get(key, 0) >= generation)
        self.loaded = True

    def arrived(self, items: Iterable[R]) -> None:
        """Items an event announced (read after the event): added or updated, unless already gone."""
        for item in items:
            key = self.key(item)
            if key in self._gone:
                continue
            self._born[key] = self._generation
            self.upsert(item)

    def gone(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._gone[key] = None
            if len(self._gone) > GONE_MEMORY:
                del self._gone[next(iter(self._gone))]
            self._born.pop(key, None)
            self.remove(key)

    def clear(self) -> None:
        self.beginResetModel()
        self._keys.clear()
        self._rows.clear()
        self.endResetModel()
        self._born.clear()
        self.loaded = False


SOURCE_LABELS = {"pickup": "Pickup directory", "delivery": "Delivery"}


def source_label(item: BadmailItem) -> str:
    return SOURCE_LABELS.get(item.source, item.source or "—")


def origin(item: BadmailItem) -> str:
    """Which file or message it was: the Pickup file's name, or the queued message's id."""
    return item.property("pickup-file") or item.property("queue-id")


class BadmailModel(FolderModel[BadmailItem]):
    columns = (
        Column("Date", lambda b: date(b.at), sort=lambda b: b.at, width=160),
        Column("Original File or Message", origin, width=190),
        Column("Reason", lambda b: " ".join(b.reason.split()), width=380),
        Column("Sender", lambda b: b.sender or ("" if b.source == "pickup" else "<>"), width=170),
        Column("Recipients", lambda b: addresses(b.recipients), width=180),
        Column("Source", source_label, width=120),
        Column("Name", lambda b: b.name, width=190),
    )

    def key(self, row: BadmailItem) -> str:
        return row.name

    def icon(self, row: BadmailItem) -> QIcon:
        return icon("badmail")

    def tooltip(self, row: BadmailItem) -> str | None:
        return row.reason


class DropModel(FolderModel[DropItem]):
    columns = (
        Column("Date", lambda d: date(d.at), sort=lambda d: d.at, width=160),
        Column("Sender", lambda d: d.sender or "<>", width=180),
        Column("Recipients", lambda d: addresses(d.recipients), width=190),
        Column("Domain", lambda d: d.domain, width=110),  # whose Drop directory holds it
        Column("Subject", lambda d: d.subject, width=260),
        Column("Size", lambda d: size_text(d.size), sort=lambda d: d.size, right=True, width=75),
        Column("File", lambda d: d.name, width=200),
    )

    def key(self, row: DropItem) -> str:
        return row.ref

    def icon(self, row: DropItem) -> QIcon:
        return icon("message")

    def tooltip(self, row: DropItem) -> str | None:
        return "\n".join(row.recipients) if len(row.recipients) > 1 else None
