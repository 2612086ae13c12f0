"""The Protocol Log node: the newest lines of the protocol log file written now (IIS "Enable logging"), read again
every few seconds while shown, with a search across every field."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QVBoxLayout, QWidget

from engine.errors import EngineError
from engine.log.tail import LogTail
from ui.elide import ElidedLabel
from ui.facade import ProtocolLogFacade
from ui.icons import icon
from ui.models.table import Column, KeyedTableModel
from ui.result_pane import FramedPane, ResultPane, SearchBar
from ui.tasks import TaskRunner

REFRESH_MS = 2000  # how often the file is read again while the node is shown
MAX_SHOWN = 2000  # the newest entries listed; `smtpsvc log tail -f` follows the whole file
FORMAT_NAMES = {"w3c": "W3C Extended", "ncsa": "NCSA Common", "iis": "Microsoft IIS"}
OUTBOUND_NAME = "OutboundConnectionCommand"  # IIS's cs-username of the lines of outbound sessions


@dataclass(frozen=True)
class LogRow:
    key: str
    seq: int  # its place in the file: the time order (a W3C date and time are UTC, NCSA's carry their zone)
    fields: dict[str, str]

    def get(self, name: str) -> str:
        value = self.fields.get(name, "")
        return "" if value == "-" else value


def _name(row: LogRow) -> str:
    name = row.get("cs-username")
    return "(outbound)" if name == OUTBOUND_NAME else name


def _number(name: str) -> Callable[[LogRow], int]:
    return lambda row: int(row.get(name)) if row.get(name).isdigit() else -1


class LogModel(KeyedTableModel[LogRow]):
    columns = (
        Column("Date", lambda r: r.get("date"), sort=lambda r: r.seq, width=90),
        Column("Time", lambda r: r.get("time"), sort=lambda r: r.seq, width=70),
        Column("Client or Server", lambda r: r.get("c-ip"), width=110),
        Column("EHLO Name", _name, width=150),
        Column("Command", lambda r: r.get("cs-method"), width=75),
        Column("Argument", lambda r: r.get("cs-uri-query"), width=220),
        Column("Status", lambda r: r.get("sc-status"), width=55),
        Column("Bytes Sent", lambda r: r.get("sc-bytes"), sort=_number("sc-bytes"), right=True, width=75),
        Column("Bytes Received", lambda r: r.get("cs-bytes"), sort=_number("cs-bytes"), right=True, width=95),
        Column("Time Taken (ms)", lambda r: r.get("time-taken"), sort=_number("time-taken"), right=True, width=100),
    )

    def key(self, row: LogRow) -> str:
        return row.key

    def icon(self, row: LogRow) -> QIcon:
        return icon("log")

    def set_tail(self, entries: tuple[dict[str, str], ...]) -> None:
        """The newest entries read: lines already listed stay, new ones are added, those gone are removed."""
        seen: dict[str, int] = {}
        rows = []
        for seq, entry in enumerate(entries[-MAX_SHOWN:]):
            line = "\t".join(entry.values())
            seen[line] = seen.get(line, 0) + 1  # identical lines (a NOOP loop) are told apart by their count
            rows.append(LogRow(f"{line}\t{seen[line]}", seq, entry))
        self.sync(rows)


def tail_text(tail: LogTail) -> str:
    """The line over the list: which file, its format, and whether lines are written at all."""
    text = f"{tail.path} ({FORMAT_NAMES.get(tail.fmt, tail.fmt)}) — the newest {len(tail.entries):,} entries"
    if not tail.enabled:
        text = ("Logging is off (General ▸ Enable logging): nothing is written. " + tail.path)
    if tail.unreadable:
        text += f"; {tail.unreadable:,} line(s) not in the file's format were skipped"
    return text


class ProtocolLogView(QObject):
    """The pane and its reading: once when first shown, then every REFRESH_MS while shown (and on F5)."""

    def __init__(self, engine: object, runner: TaskRunner) -> None:
        super().__init__()
        self.engine = engine
        self.runner = runner
        self.model = LogModel()
        self.where = ElidedLabel("The protocol log has not been read yet.")  # a long path: cut in the middle
        self.where.setContentsMargins(0, 0, 4, 2)
        list_pane = ResultPane(self.model, "log", sort_column=0, descending=True)  # newest first
        self.search = SearchBar(list_pane, "Find a client, EHLO name, command, argument or status")
        top = QWidget()
        column = QVBoxLayout(top)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(self.where)
        column.addWidget(self.search)
        self.pane = FramedPane(top, list_pane)
        self.tail: LogTail | None = None
        self.read_at = ""  # when the entries listed were read (said when a later reading fails)
        self._reading = False
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.load)

    def set_active(self, active: bool) -> None:
        if active and not self.timer.isActive():
            self.load()
            self.timer.start()
        elif not active:
            self.timer.stop()

    def load(self) -> None:
        if self._reading:
            return
        engine = self.engine
        if not isinstance(engine, ProtocolLogFacade):
            self.where.setText("The protocol log of this computer cannot be read from here.")
            return
        self._reading = True

        async def read() -> None:
            try:
                tail = await engine.protocol_log_tail(MAX_SHOWN)
            except EngineError as error:  # read again in REFRESH_MS: said over the list, not in a box each time
                self.show_failure(error)
                return
            finally:
                self._reading = False
            self.show_tail(tail)

        self.runner.spawn(read(), "Protocol Log")

    def show_failure(self, error: EngineError) -> None:
        if self.tail is None:
            self.where.setText(f"The protocol log could not be read: {error}")
        else:
            self.where.setText(f"Not read again since {self.read_at} (the entries below are from then): {error}")

    def show_tail(self, tail: LogTail) -> None:
        self.tail = tail
        self.read_at = time.strftime("%H:%M:%S")
        self.where.setText(tail_text(tail))
        self.model.set_tail(tail.entries)
