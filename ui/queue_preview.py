"""The Queue list's preview pane: the selected message's envelope, state, last error and the start of its header."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

from PySide6.QtWidgets import QFrame, QTextBrowser, QVBoxLayout, QWidget

from engine.qmgr.queue import QueueDetail, QueueItem
from ui.models.queue import STATE_LABELS, countdown, display_state
from ui.queue_detail import recipient_status
from ui.units import moment, size_exact, span

HEAD_LINES = 30  # header lines shown (a long Received chain is cut: the whole message is View Message)
HEAD_BYTES = 8192  # read no further than this for the header
LINE_CHARS = 240  # a header line is cut here
SOURCE_LABELS = {"smtp": "SMTP", "pickup": "Pickup directory", "dsn": "Delivery notification made by this server"}


def header_start(message: bytes, lines: int = HEAD_LINES) -> str:
    """The first ``lines`` lines of the message's header as text (never its body), each cut at LINE_CHARS."""
    head = message[:HEAD_BYTES]
    end = min((at for at in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if at >= 0), default=len(head))
    shown = head[:end].decode("utf-8", "replace").splitlines()
    cut = [line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…" for line in shown[:lines]]
    more = len(shown) > lines or (end == len(head) and len(message) > HEAD_BYTES)
    return "\n".join(cut) + ("\n…" if more else "")


@dataclass
class Shown:
    """What the pane shows now: the row (at once, from the list), then what the engine tells (on selection)."""

    item: QueueItem | None = None
    detail: QueueDetail | None = None
    head: str = ""
    note: str = ""  # why the recipients or the header are not shown (stopped, gone, unreadable)
    now: float = 0.0  # the moment countdowns are written for: the list's, so both say the same


class QueuePreview(QFrame):
    """Read-only; ``show_item`` is instant (no I/O), ``show_loaded`` adds what was read for that message."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queuePreview")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        self.browser.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.browser)
        self.shown = Shown()
        self.setMinimumWidth(220)
        self.clear("Select a message to see its envelope, state and header here.")

    @property
    def queue_id(self) -> str | None:
        return self.shown.item.queue_id if self.shown.item is not None else None

    def clear(self, text: str) -> None:
        self.shown = Shown(note=text)
        self.browser.setHtml(f"<p style='color:gray'>{html.escape(text)}</p>")

    def show_item(self, item: QueueItem, now: float | None = None) -> None:
        """The row's own fields; what was loaded for the same message stays (its recipients, its header)."""
        if self.shown.item is None or self.shown.item.queue_id != item.queue_id:
            self.shown = Shown(item=item, note="Reading…")
        else:
            self.shown.item = item
        self.shown.now = time.time() if now is None else now
        self._render(self.shown.now)

    def show_loaded(self, queue_id: str, detail: QueueDetail | None, head: str, note: str = "") -> None:
        if self.queue_id != queue_id:
            return  # the selection moved on meanwhile
        self.shown.detail, self.shown.head, self.shown.note = detail, head, note
        if detail is not None:
            self.shown.item = detail.item
        self._render(self.shown.now or time.time())

    def _render(self, now: float) -> None:
        shown = self.shown
        item = shown.item
        if item is None:
            return
        state = display_state(item)
        state_text = STATE_LABELS[state] + (f" ({', '.join(item.etrn_held)})" if state == "etrn" else "")
        rows = [("Queue ID", item.queue_id), ("State", state_text),
                ("From", item.sender or "<> (null sender: a notification)"),
                ("To", ", ".join(item.recipients)),
                ("Arrived", f"{moment(item.arrived)} ({span(now - item.arrived)} ago)"),
                ("Size", size_exact(item.size)), ("Source", SOURCE_LABELS.get(item.source, item.source)),
                ("Attempts", str(item.attempts)), ("Next retry", countdown(item, now))]
        if shown.detail is not None and shown.detail.last_attempt:
            rows.insert(8, ("Last attempt", moment(shown.detail.last_attempt)))
        table = "".join(f"<tr><td style='color:gray;padding-right:8px' valign='top'>{html.escape(label)}</td>"
                        f"<td>{html.escape(value)}</td></tr>" for label, value in rows)
        parts = [f"<table cellspacing='0' cellpadding='1'>{table}</table>"]
        error = " ".join(item.last_error.split())
        if error:
            parts.append(f"<p><b>Last error</b><br><span style='color:#a4262c'>{html.escape(error)}</span></p>")
        if shown.detail is not None and len(shown.detail.recipients) > 1:
            lines = "".join(f"<tr><td style='padding-right:8px'>{html.escape(r.address)}</td>"
                            f"<td>{html.escape(recipient_status(r, item.etrn_held))}</td></tr>"
                            for r in shown.detail.recipients)
            parts.append(f"<p><b>Recipients</b></p><table cellspacing='0' cellpadding='1'>{lines}</table>")
        if shown.head:
            parts.append(f"<p><b>Header</b></p><pre style='font-size:small; white-space:pre-wrap'>"
                         f"{html.escape(shown.head)}</pre>")  # wrapped: no sideways scrolling
        if shown.note:
            parts.append(f"<p style='color:gray'>{html.escape(shown.note)}</p>")
        bar = self.browser.verticalScrollBar()
        keep = bar.value()
        self.browser.setHtml("".join(parts))
        bar.setValue(keep)  # a tick or an attempt redraws in place, not back at the top
