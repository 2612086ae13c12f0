"""Long actions over many items: one async step per item, a progress dialog after a moment, and Cancel.

Invariant: Cancel stops new steps from starting; a step already sent to the engine is awaited and counted,
never abandoned half-way, so the result tells exactly which items were acted on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from ui.errors import MessageBridge, describe

T = TypeVar("T")
SHOW_AFTER_MS = 400  # quicker actions never show the dialog
FAILURES_SHOWN = 8  # failures named in the report; the rest are counted


@dataclass
class BatchResult(Generic[T]):
    done: list[T] = field(default_factory=list)
    failed: list[tuple[T, BaseException]] = field(default_factory=list)
    skipped: list[T] = field(default_factory=list)  # not started: cancelled
    cancelled: bool = False

    def summary(self, verb: str, noun: str = "message") -> str:
        """"Froze 3 messages." / "Deleted 120 of 500 messages (cancelled); 2 failed." """
        total = len(self.done) + len(self.failed) + len(self.skipped)
        count = len(self.done)
        plural = noun if total == 1 else f"{noun}s"
        text = f"{verb} {count:,} of {total:,} {plural}" if count != total else f"{verb} {count:,} {plural}"
        if self.cancelled:
            text += " (cancelled)"
        if self.failed:
            text += f"; {len(self.failed):,} failed"
        return text + "."

    def report(self, messages: MessageBridge, title: str, summary: str) -> None:
        """The summary in the status bar; failures (the first few, each with its reason) in one dialog."""
        messages.inform(summary)
        if self.failed:
            lines = [f"{item if isinstance(item, str) else f'{len(item)} messages'}: {describe(error)}"  # type: ignore[arg-type]
                     for item, error in self.failed[:FAILURES_SHOWN]]
            more = len(self.failed) - FAILURES_SHOWN
            messages.refuse(title, summary + "\n\n" + "\n".join(lines) + (f"\n… and {more} more" if more > 0
                                                                         else ""))


class Batch(QObject, Generic[T]):
    """``await Batch(...).run(items, step)``; ``progressed(done, total)`` after every finished step."""

    progressed = Signal(int, int)

    def __init__(self, title: str, label: str, parent: QWidget | None, concurrency: int = 4) -> None:
        super().__init__()
        self.title = title
        self.label = label
        self.parent_widget = parent
        self.concurrency = max(1, concurrency)
        self.cancelled = False
        self.dialog: QProgressDialog | None = None

    def cancel(self) -> None:
        self.cancelled = True

    async def run(self, items: Sequence[T], step: Callable[[T], Awaitable[object]],
                  on_done: Callable[[T, BaseException | None], None] | None = None) -> BatchResult[T]:
        result: BatchResult[T] = BatchResult()
        total = len(items)
        if total > 1:
            self._dialog(total)
        pending = iter(items)
        finished = 0

        async def worker() -> None:
            nonlocal finished
            while not self.cancelled:
                try:
                    item = next(pending)
                except StopIteration:
                    return
                error: BaseException | None = None
                try:
                    await step(item)
                except Exception as failure:  # this item only (the reason is in the result); the others go on
                    error = failure
                if error is None:
                    result.done.append(item)
                else:
                    result.failed.append((item, error))
                if on_done is not None:
                    on_done(item, error)
                finished += 1
                self.progressed.emit(finished, total)
                if self.dialog is not None:
                    self.dialog.setValue(finished)

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, max(total, 1)))))
        finally:
            if self.dialog is not None:
                self.dialog.reset()
                self.dialog.hide()
                self.dialog.deleteLater()
                self.dialog = None
        result.skipped = list(pending)
        result.cancelled = self.cancelled and bool(result.skipped)
        return result

    def _dialog(self, total: int) -> None:
        dialog = QProgressDialog(self.label, "Cancel", 0, total, self.parent_widget)
        dialog.setWindowTitle(self.title)
        # Not modal: a modal QProgressDialog runs processEvents() in setValue(), which would re-enter the
        # asyncio loop from inside this coroutine. The actions it could collide with are disabled meanwhile.
        dialog.setWindowModality(Qt.WindowModality.NonModal)
        dialog.setMinimumDuration(SHOW_AFTER_MS)
        dialog.setAutoClose(False)
        dialog.setAutoReset(False)
        dialog.canceled.connect(self.cancel)
        dialog.setValue(0)
        self.dialog = dialog
