"""What the Queue actions do: Retry Now, Freeze, Thaw, Delete, Bounce Now, Retry Domain Now, the detail dialog.

Actions on many messages run as a Batch (progress after a moment, Cancel between messages); what was done
is said in the status bar, and what failed in one box.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import shiboken6
from PySide6.QtWidgets import QInputDialog

from engine.errors import EngineError, NotFoundError
from engine.events import Event, MessageRemoved, QueueChanged
from ui.batch import Batch
from ui.context import WindowPort
from ui.mail_ops import MessageRef
from ui.models.queue import target_domains
from ui.queue_detail import QueueDetailDialog

RETRY_CHUNK = 500  # ids per retry_now call
HEADER_BYTES = 16 * 1024  # read of a message's start for the detail's From, Message-ID and Received


def domain_choices(domains: list[str], counts: dict[str, int]) -> list[str]:
    """Retry Domain Now's list: each domain with its message count where the queue-shape chart knows it."""
    return [f"{domain} ({counts[domain]:,} message{'s' * (counts[domain] != 1)})" if domain in counts else domain
            for domain in domains]
CONCURRENCY = 8  # engine calls in flight for one batch (state records are fsynced: they overlap well)


class QueueOperations:
    def __init__(self, window: WindowPort, view: Callable[[list[MessageRef]], None]) -> None:
        self.w = window
        self.view = view  # opens messages in the viewer (MailOperations.view)
        self.engine = window.engine
        self.messages = window.messages
        self.runner = window.runner
        self.details: dict[str, QueueDetailDialog] = {}
        self.busy = False

    # -- asked of the user (tests replace these) -------------------------------------------------

    def confirm(self, title: str, question: str) -> bool:
        return self.w.confirm(title, question)

    def ask_domain(self, domains: list[str]) -> str | None:
        choices = domain_choices(domains, dict(self.w.queue_pane.domain_counts or []))
        chosen, ok = QInputDialog.getItem(self.w.window(), "Retry Domain Now",
                                          "Retry every message queued for the domain:", choices, 0, True)
        domain = domains[choices.index(chosen)] if chosen in choices else chosen  # or one typed in
        return domain.strip().lower() if ok and domain.strip() else None

    # -- selection ------------------------------------------------------------------------------

    def selected(self) -> list[str]:
        return self.w.queue_pane.selected_keys()

    def _states(self, ids: list[str]) -> dict[str, str]:
        model = self.w.queue_model
        return {queue_id: state for queue_id in ids if (state := model.state_of(queue_id)) is not None}

    # -- actions --------------------------------------------------------------------------------

    def retry_now(self) -> None:
        ids = [queue_id for queue_id, state in self._states(self.selected()).items() if state != "frozen"]
        if not ids:
            self.messages.inform("Retry Now: frozen messages are not retried; thaw them first")
            return
        chunks = [ids[start:start + RETRY_CHUNK] for start in range(0, len(ids), RETRY_CHUNK)]
        scheduled = [0]

        async def step(chunk: list[str]) -> None:
            scheduled[0] += await self.engine.retry_now(chunk)

        async def run() -> None:
            batch: Batch[list[str]] = Batch("Retry Now", f"Scheduling {len(ids):,} messages for delivery now…",
                                            self.w.window(), concurrency=1)
            result = await batch.run(chunks, step)
            result.report(self.messages, "Retry Now", f"Retry Now: {scheduled[0]:,} message"
                         f"{'s' * (scheduled[0] != 1)} due for delivery now" + (" (cancelled)" if result.cancelled
                                                                                else ""))

        self._spawn(run(), "Retry Now")

    def retry_domain(self) -> None:
        domains: list[str] = []
        for queue_id in self.selected()[:1000]:
            item = self.w.queue_model.get(queue_id)
            if item is not None:
                domains += [d for d in target_domains(item) if d not in domains]
        if not domains:  # nothing selected: the queue's domains, busiest first
            pane = self.w.queue_pane
            if pane.domain_counts is None:
                pane.refresh_chart(force=True)
            domains = [domain for domain, _ in (pane.domain_counts or [])[:200]]
        domain = self.ask_domain(domains or [""])
        if not domain:
            return

        async def run() -> None:
            count = await self.engine.retry_now(None, domain)
            self.messages.inform(f"Retry Domain Now: {count:,} message{'s' * (count != 1)} for {domain} due now")

        self.runner.spawn(run(), "Retry Domain Now")

    def retry_all(self) -> None:
        """Retry All Now (postqueue -f): every queued message is due now; frozen and held ones stay."""
        async def run() -> None:
            count = await self.engine.retry_now()
            self.messages.inform(f"Retry All Now: {count:,} message{'s' * (count != 1)} due for delivery now")

        self.runner.spawn(run(), "Retry All Now")

    def release_selected(self) -> None:
        """Release for ETRN: the domains the selected messages wait for, as if each had sent ETRN."""
        domains: list[str] = []
        for queue_id in self.selected()[:1000]:
            item = self.w.queue_model.get(queue_id)
            if item is not None:
                domains += [d for d in item.etrn_held if d not in domains]
        if not domains:
            self.messages.inform("Release for ETRN: none of the selected messages waits for ETRN")
            return
        self.release_etrn(domains)

    def release_etrn(self, domains: list[str]) -> None:
        if not domains:
            return

        async def run() -> None:
            count = 0
            for domain in domains:
                count += await self.engine.release_etrn(domain)
            self.messages.inform(f"Released for ETRN: {count:,} message{'s' * (count != 1)} for "
                                 f"{', '.join(domains)} due now")

        self._spawn(run(), "Release for ETRN")

    def freeze(self) -> None:
        ids = [queue_id for queue_id, state in self._states(self.selected()).items() if state != "frozen"]
        self._each("Freeze", "Freezing", "Froze", ids, self.engine.freeze)

    def thaw(self) -> None:
        ids = [queue_id for queue_id, state in self._states(self.selected()).items() if state == "frozen"]
        self._each("Thaw", "Thawing", "Thawed", ids, self.engine.thaw)

    def delete(self) -> None:
        ids = self.selected()
        if not ids:
            return
        question = (f"Delete {self.describe(ids[0])} from the queue?" if len(ids) == 1 else
                    f"Delete these {len(ids):,} messages from the queue?") + \
            "\n\nNobody is notified: the sender gets no non-delivery report."
        if self.confirm("Delete", question):
            self._each("Delete", "Deleting", "Deleted", ids, self.engine.delete_message, gone_ok=True)

    def describe(self, queue_id: str) -> str:
        """A message as people know it: "'[ALERT] Disk C:' from alerts@contoso.example" (its id otherwise)."""
        item = self.w.queue_model.get(queue_id)
        subject = self.w.queue_model.subject_of(queue_id)
        if item is None:
            return f"the message {queue_id}"
        return (f"'{subject}'" if subject else f"the message {queue_id}") + f" from {item.sender or '<>'}"

    def bounce_now(self) -> None:
        ids = [queue_id for queue_id, state in self._states(self.selected()).items() if state != "active"]
        if not ids:
            self.messages.inform("Bounce Now: the message is being delivered right now; try again in a moment")
            return
        question = (f"Return the message {ids[0]} to its sender now?" if len(ids) == 1 else
                    f"Return these {len(ids):,} messages to their senders now?") + \
            "\n\nEach sender gets a non-delivery report for every recipient not yet delivered."
        if self.confirm("Bounce Now", question):
            self._each("Bounce Now", "Returning", "Returned", ids, self.engine.bounce_now)

    def _each(self, title: str, doing: str, done: str, ids: list[str],
              call: Callable[[str], Awaitable[object]], *, gone_ok: bool = False) -> None:
        if not ids:
            return

        async def step(queue_id: str) -> None:
            try:
                await call(queue_id)
            except NotFoundError:
                if not gone_ok:
                    raise

        async def run() -> None:
            batch: Batch[str] = Batch(title, f"{doing} {len(ids):,} message{'s' * (len(ids) != 1)}…", self.w.window(),
                                      concurrency=CONCURRENCY)
            result = await batch.run(ids, step)
            result.report(self.messages, title, result.summary(done))

        self._spawn(run(), title)

    def _spawn(self, coro: Awaitable[None], title: str) -> None:
        async def guarded() -> None:
            self.busy = True
            try:
                await coro
            finally:
                self.busy = False
                self.w.update_actions()

        self.runner.spawn(guarded(), title)

    # -- detail dialog --------------------------------------------------------------------------

    def show_detail(self, queue_id: str | None = None) -> None:
        if queue_id is None:
            current = self.w.queue_pane.detail.currentIndex()
            queue_id = self.w.queue_model.id_at(current.row()) if current.isValid() else None
            if queue_id is None or queue_id not in self.selected():
                selected = self.selected()
                queue_id = selected[0] if selected else None
        if queue_id is None:
            return
        dialog = self.details.get(queue_id)
        if dialog is not None and shiboken6.isValid(dialog):
            dialog.raise_()
            dialog.activateWindow()
            return
        dialog = QueueDetailDialog(queue_id, self.engine.config, self.w.window())
        dialog.finished.connect(lambda _: self._detail_closed(queue_id))
        dialog.act.connect(lambda action: self._detail_action(queue_id, action))
        self.details[queue_id] = dialog
        self.refresh_detail(queue_id)
        self._read_header(queue_id)
        dialog.show()

    def _read_header(self, queue_id: str) -> None:
        async def run() -> None:
            try:
                head = await self.engine.read_queued(queue_id, HEADER_BYTES)
            except (EngineError, OSError):
                return  # gone or unreadable: refresh_detail says so; the rows stay "—"
            dialog = self.details.get(queue_id)
            if dialog is not None and shiboken6.isValid(dialog):
                dialog.set_header(head)

        self.runner.spawn(run(), "Queued Message")

    def step_detail(self, queue_id: str, step: int) -> None:
        """▲/▼ in the detail: the message above or below in the list as sorted and filtered now."""
        model = self.w.queue_model
        row = model.row_of(queue_id)
        neighbour = model.id_at(row + step) if row >= 0 and 0 <= row + step < model.rowCount() else None
        if neighbour is None:
            return
        dialog = self.details.get(queue_id)
        where = dialog.pos() if dialog is not None and shiboken6.isValid(dialog) else None
        self.w.queue_pane.select_key(neighbour)
        if dialog is not None and shiboken6.isValid(dialog):
            dialog.close()
        self.show_detail(neighbour)
        following = self.details.get(neighbour)
        if following is not None and where is not None:
            following.move(where)

    def _detail_closed(self, queue_id: str) -> None:
        dialog = self.details.pop(queue_id, None)
        if dialog is not None and shiboken6.isValid(dialog):
            dialog.deleteLater()

    def refresh_detail(self, queue_id: str) -> None:
        async def run() -> None:
            try:
                detail = await self.engine.queue_detail(queue_id)
            except NotFoundError:
                self._detail_gone(queue_id, "delivered, returned or deleted")
                return
            dialog = self.details.get(queue_id)
            if dialog is not None and shiboken6.isValid(dialog):
                dialog.show_detail(detail)
                dialog.set_subject(self.w.queue_model.subject_of(queue_id) or "")

        self.runner.spawn(run(), "Queued Message")

    def _detail_gone(self, queue_id: str, reason: str) -> None:
        dialog = self.details.get(queue_id)
        if dialog is not None and shiboken6.isValid(dialog):
            dialog.show_gone(reason)

    def on_events(self, batch: list[Event]) -> None:
        """Open detail dialogs follow their message."""
        if not self.details:
            return
        for queue_id in {e.queue_id for e in batch if isinstance(e, QueueChanged) and e.queue_id in self.details}:
            self.refresh_detail(queue_id)
        for event in batch:
            if isinstance(event, MessageRemoved) and event.queue_id in self.details:
                self._detail_gone(event.queue_id, event.reason)

    def _detail_action(self, queue_id: str, action: str) -> None:

        single: dict[str, Callable[[str], Awaitable[object]]] = {
            "freeze": self.engine.freeze, "thaw": self.engine.thaw, "bounce": self.engine.bounce_now}
        if action in ("previous", "next"):
            self.step_detail(queue_id, -1 if action == "previous" else 1)
        elif action == "view":
            self.view([MessageRef("queue", queue_id)])
        elif action == "retry":
            self.runner.spawn(self.engine.retry_now([queue_id]), "Retry Now")
        elif action == "release":
            item = self.w.queue_model.get(queue_id)
            dialog = self.details.get(queue_id)
            held = dialog.detail.item.etrn_held if dialog is not None and dialog.detail is not None else \
                item.etrn_held if item is not None else ()
            self.release_etrn(list(held))
        elif action == "bounce" and not self.confirm("Bounce Now", f"Return {self.describe(queue_id)} to its sender "
                                                     "now?\n\nThe sender gets a non-delivery report."):
            return
        elif action == "delete":
            if self.confirm("Delete", f"Delete {self.describe(queue_id)} from the queue?\n\nNobody is notified: "
                            "the sender gets no non-delivery report."):
                self.runner.spawn(_ignore_gone(self.engine.delete_message(queue_id)), "Delete")
            return
        elif action in single:
            self.runner.spawn(_ignore_gone(single[action](queue_id)), action.capitalize())


async def _ignore_gone(call: Awaitable[object]) -> None:
    with contextlib.suppress(NotFoundError):  # it left the queue meanwhile
        await call
