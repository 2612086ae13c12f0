"""One queued message in detail: envelope, per-recipient status, the retry schedule ahead and every attempt's
SMTP transcript. Non-modal; it follows the message's events until it leaves the queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QIcon, QSyntaxHighlighter, QTextCharFormat, QTextDocument
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from engine.cleanup.headers import first_fields, received_summary
from engine.conf.addresses import classify, domain_of
from engine.conf.config import Config
from engine.qmgr import schedule
from engine.qmgr.queue import QueueDetail, RecipientDetail
from ui.elide import ElidedLabel
from ui.icons import icon
from ui.models.queue import STATE_LABELS, countdown, display_state
from ui.models.table import Column, KeyedTableModel
from ui.units import size_exact, span
from ui.views import ItemView

SCHEDULE_LIMIT = 12  # attempts listed ahead (the delay notice and the NDR always follow)


def when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


RECIPIENT_COLORS = {"Delivered": "#2e7d32", "Failed": "#a4262c", "Deferred": "#b35900", "Held for ETRN": "#6a3d9a"}


def recipient_status(rcpt: RecipientDetail, held: tuple[str, ...] = ()) -> str:
    if rcpt.status == "delivered":
        return "Delivered"
    if rcpt.status == "failed":
        return "Failed"
    if domain_of(rcpt.address).lower() in held:
        return "Held for ETRN"
    return "Deferred" if rcpt.attempts or rcpt.last_error else "Waiting"


class RecipientsModel(KeyedTableModel[RecipientDetail]):
    def __init__(self) -> None:
        self.held: tuple[str, ...] = ()  # the message's recipient domains waiting for ETRN
        self.columns: tuple[Column[RecipientDetail], ...] = (
            Column("Recipient", lambda r: r.address, width=200),
            Column("Status", lambda r: recipient_status(r, self.held), width=95),
            Column("Attempts", lambda r: str(r.attempts), sort=lambda r: r.attempts, right=True, width=60),
            Column("Code", lambda r: r.enhanced, width=55),
            Column("Remote Host", lambda r: r.remote, width=140),
            Column("Reply or Reason", lambda r: " ".join(r.last_error.split()), width=320),
        )
        super().__init__()

    def key(self, row: RecipientDetail) -> str:
        return row.address

    def tooltip(self, row: RecipientDetail) -> str | None:
        return row.last_error or None

    def foreground(self, row: RecipientDetail, column: int) -> QColor | None:
        return QColor(RECIPIENT_COLORS[status]) if column == 1 and (status := recipient_status(row, self.held)) in \
            RECIPIENT_COLORS else None


@dataclass(frozen=True)
class Step:
    at: float
    event: str


class ScheduleModel(KeyedTableModel[Step]):
    """The schedule ahead if every attempt fails: attempts, the delay notice, the NDR."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.columns: tuple[Column[Step], ...] = (
            Column("When", lambda s: when(s.at), sort=lambda s: s.at, width=170),
            Column("In", lambda s: "now" if s.at <= self._clock() else span(s.at - self._clock()),
                   sort=lambda s: s.at, right=True, width=90),
            Column("What", lambda s: self.describe(s.event), width=330),
        )
        super().__init__()

    @staticmethod
    def describe(event: str) -> str:
        if event == schedule.NDR:
            return "Non-delivery report (NDR) to the sender, message removed"
        if event == schedule.DELAY_NOTICE:
            return "Delay notification to the sender"
        return event.replace("attempt", "Attempt", 1)

    def key(self, row: Step) -> str:
        return f"{row.at:.3f} {row.event}"

    def icon(self, row: Step) -> QIcon | None:
        if row.event == schedule.NDR:
            return icon("bounce")
        if row.event == schedule.DELAY_NOTICE:
            return icon("message")
        return icon("retry")


def schedule_ahead(detail: QueueDetail, config: Config, now: float) -> list[Step]:
    """What will happen to the message's remote recipients (local delivery has no schedule); none while frozen,
    none for recipients held for ETRN (no attempt is made for them and they do not expire until released)."""
    item = detail.item
    remote = [a for a in item.pending if classify(domain_of(a), config.effective_domains).kind == "remote"
              and domain_of(a).lower() not in item.etrn_held]
    if not remote or item.state == "frozen":
        return []
    plan = schedule.timing(config.server, local=False).plan(
        item.arrived, item.attempts, detail.last_attempt, now, delay_notice_sent=detail.delay_notice_sent,
        limit=SCHEDULE_LIMIT)
    return [Step(at, event) for at, event in plan]


def _format(color: str, bold: bool = False) -> QTextCharFormat:
    text_format = QTextCharFormat()
    text_format.setForeground(QColor(color))
    if bold:
        text_format.setFontWeight(QFont.Weight.Bold)
    return text_format


class TranscriptHighlighter(QSyntaxHighlighter):
    """Our commands in blue, the remote's replies green / orange (4xx) / red (5xx), attempt lines bold."""

    FORMATS = (
        ("=== ", _format("#1b1b1b", bold=True)),
        ("*** ", _format("#a4262c", bold=True)),
        (">>> ", _format("#1f5fae")),
        ("<<< 2", _format("#2e7d32")),
        ("<<< 3", _format("#2e7d32")),
        ("<<< 4", _format("#b35900")),
        ("<<< 5", _format("#a4262c")),
    )

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)

    def highlightBlock(self, text: str) -> None:
        body = text[9:] if text[2:3] == ":" and text[5:6] == ":" else text  # after the "hh:mm:ss " stamp
        for prefix, text_format in self.FORMATS:
            if body.startswith(prefix):
                self.setFormat(0, len(text), text_format)
                return


def header_fields(head: bytes, queue_id: str) -> dict[str, str]:
    """The header fields the General tab shows, from the start of a queued message: From, Message-ID, and the
    Received line smtpsvc wrote for it ("from ws-017 ([192.0.2.7]) with ESMTP, …"; none for another's)."""
    end = head.find(b"\r\n\r\n")
    block = head if end < 0 else head[:end + 4]
    parsed = BytesHeaderParser(policy=default_policy).parsebytes(block)
    fields = {name: " ".join(str(parsed.get(name, "")).split()) for name in ("From", "Message-ID")}
    fields["Received"] = received_summary(first_fields(block).get("received", ""), queue_id)
    return fields


class QueueDetailDialog(QDialog):
    """Shows one message; ``act(name)`` asks the window to run an action (retry, freeze, thaw, bounce, view)."""

    act = Signal(str)

    def __init__(self, queue_id: str, config: Callable[[], Config], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue_id = queue_id
        self._config = config
        self.detail: QueueDetail | None = None
        self.setWindowTitle(f"Queued Message {queue_id}")
        self.setObjectName("queueDetail")
        self.resize(820, 560)
        self.tabs = QTabWidget()
        self.general = QWidget()
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.labels: dict[str, QLabel] = {}
        for name in ("Queue ID", "Subject", "From", "Message-ID", "State", "Sender", "Arrived", "Size", "Source",
                     "Received", "Attempts", "Next attempt", "Delay notice", "Last error"):
            # one address or id: never wrapped
            label = ElidedLabel() if name in ("Queue ID", "Sender", "From", "Message-ID") else QLabel()
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(not isinstance(label, ElidedLabel))
            self.labels[name] = label
            self.form.addRow(f"{name}:", label)
        self.recipients = RecipientsModel()
        self.recipient_view = ItemView()
        self.recipient_view.setModel(self.recipients)
        for column, spec in enumerate(self.recipients.columns):
            self.recipient_view.setColumnWidth(column, spec.width)
        general_layout = QVBoxLayout(self.general)
        general_layout.addLayout(self.form)
        general_layout.addWidget(QLabel("Recipients:"))
        general_layout.addWidget(self.recipient_view, 1)
        self.schedule = ScheduleModel()
        self.schedule_view = ItemView()
        self.schedule_view.setModel(self.schedule)
        for column, step_column in enumerate(self.schedule.columns):
            self.schedule_view.setColumnWidth(column, step_column.width)
        self.schedule_note = QLabel()
        self.schedule_note.setWordWrap(True)
        schedule_page = QWidget()
        schedule_layout = QVBoxLayout(schedule_page)
        schedule_layout.addWidget(self.schedule_note)
        schedule_layout.addWidget(self.schedule_view, 1)
        self.transcript = QPlainTextEdit()
        self.transcript.setReadOnly(True)
        self.transcript.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.transcript.setFont(mono)
        self.highlighter = TranscriptHighlighter(self.transcript.document())
        self.tabs.addTab(self.general, "General")
        self.tabs.addTab(schedule_page, "Schedule Ahead")
        transcript_page = QWidget()
        transcript_layout = QVBoxLayout(transcript_page)
        transcript_layout.addWidget(self.transcript, 1)
        copy = QPushButton("&Copy Transcript")
        copy.setAutoDefault(False)
        copy.clicked.connect(lambda: QApplication.clipboard().setText(self.transcript.toPlainText()))
        copy_row = QHBoxLayout()
        copy_row.addStretch(1)
        copy_row.addWidget(copy)
        transcript_layout.addLayout(copy_row)
        self.tabs.addTab(transcript_page, "Transcript")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        self.action_buttons: dict[str, QPushButton] = {}
        for name, text, icon_name in (("previous", "▲ Pre&vious", ""), ("next", "▼ Ne&xt", ""),
                                      ("retry", "&Retry Now", "retry"), ("release", "Re&lease for ETRN", "start"),
                                      ("freeze", "&Freeze", "freeze"),
                                      ("thaw", "T&haw", "thaw"), ("bounce", "&Bounce Now", "bounce"),
                                      ("delete", "&Delete", "delete"), ("view", "&View Message", "view")):
            button = QPushButton(icon(icon_name), text) if icon_name else QPushButton(text)
            button.setAutoDefault(False)
            button.clicked.connect(lambda _=False, action=name: self.act.emit(action))
            self.buttons.addButton(button, QDialogButtonBox.ButtonRole.ActionRole)
            self.action_buttons[name] = button
        self.gone = QLabel()
        self.gone.setObjectName("problem")
        self.gone.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.gone)
        layout.addWidget(self.buttons)

    def show_detail(self, detail: QueueDetail, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.detail = detail
        item = detail.item
        state = display_state(item)
        labels = self.labels
        labels["Queue ID"].setText(item.queue_id)
        labels["State"].setText(STATE_LABELS[state] + (" — being delivered now" if state == "active" else
                                                       f" ({', '.join(item.etrn_held)})" if state == "etrn" else ""))
        labels["Sender"].setText(item.sender or "<> (null sender: a notification)")
        labels["Arrived"].setText(f"{when(item.arrived)}  ({span(now - item.arrived)} ago)")
        labels["Size"].setText(size_exact(item.size))
        labels["Source"].setText({"smtp": "SMTP", "pickup": "Pickup directory", "dsn": "Delivery notification "
                                  "made by this server"}.get(item.source, item.source))
        last = f", the last at {when(detail.last_attempt)}" if detail.last_attempt else ""
        labels["Attempts"].setText(f"{item.attempts}{last}")
        next_text = countdown(item, now)
        if item.pending and state in ("queued", "deferred") and item.next_attempt > now:
            next_text = f"{when(item.next_attempt)}  ({next_text})"
        labels["Next attempt"].setText(next_text)
        steps = schedule_ahead(detail, self._config(), now)
        notice = next((s for s in steps if s.event == schedule.DELAY_NOTICE), None)
        labels["Delay notice"].setText("Sent" if detail.delay_notice_sent else
                                       f"Due {when(notice.at)}" if notice else "Not sent")
        labels["Last error"].setText(" ".join(item.last_error.split()) or "—")
        self.recipients.held = item.etrn_held
        self.recipients.sync(detail.recipients)
        self.schedule.sync(steps)
        held = ", ".join(item.etrn_held)
        if state == "frozen":
            self.schedule_note.setText("The message is frozen: nothing happens to it until it is thawed.")
        elif state == "etrn":
            self.schedule_note.setText(
                f"Held for ETRN: the message waits until {held} asks for its mail with ETRN, or until you "
                "release it (Release for ETRN). No delivery attempt is made meanwhile, and it does not expire: "
                "no delay notification, no NDR.")
        elif item.etrn_held:
            self.schedule_note.setText(f"Recipients at {held} wait for ETRN (no schedule for them); for the "
                                       "others, if every attempt fails, this is what happens next:")
        elif not steps:
            self.schedule_note.setText("No retry schedule: the recipients still pending are local (Drop).")
        else:
            self.schedule_note.setText("If every attempt fails, this is what happens next (from the server's "
                                       "retry intervals, delay notification and expiration settings):")
        text = detail.transcript.rstrip("\n")
        if self.transcript.toPlainText() != text:
            self.transcript.setPlainText(text or "(no delivery attempt yet)")
        self.action_buttons["freeze"].setEnabled(state != "frozen")
        self.action_buttons["thaw"].setEnabled(state == "frozen")
        self.action_buttons["retry"].setEnabled(state in ("queued", "deferred"))
        self.action_buttons["release"].setVisible(bool(item.etrn_held))
        self.action_buttons["release"].setEnabled(bool(item.etrn_held) and state != "frozen")
        self.action_buttons["release"].setToolTip(f"Deliver the mail held for {held} now, as an ETRN from it would")
        self.action_buttons["bounce"].setEnabled(state != "active")
        self.action_buttons["delete"].setEnabled(state != "active")

    def set_subject(self, subject: str) -> None:
        self.labels["Subject"].setText(subject or "—")

    def set_header(self, head: bytes) -> None:
        """From, Message-ID and how it came (our Received line: the client, its EHLO name, the protocol), from the
        start of the message."""
        fields = header_fields(head, self.queue_id)
        for name in ("From", "Message-ID", "Received"):
            self.labels[name].setText(fields.get(name) or "—")

    def show_gone(self, reason: str) -> None:
        """The message left the queue: say so, keep what was shown, disable the actions."""
        self.gone.setText(f"This message is no longer in the queue ({reason}).")
        self.gone.show()
        for button in self.action_buttons.values():
            button.setEnabled(False)
