"""The Queue model's rows in compact columns (100,000 messages in a few tens of MB) — pure, no Qt.

One slot per message; each field is a column: numbers in typed arrays, repeated strings (senders, domains, ETRN
holds, sources) shared, and the per-message texts (recipients, last error, subject) as UTF-8 in one buffer per
column. No object per message is kept but its queue id (the key); a ``QueueItem`` is made again only when one is
asked for. A removed message's slot is filled by the last one (the order of slots means nothing: the view keeps
its own order of ids).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator

from engine.conf.addresses import domain_of
from engine.qmgr.queue import QueueItem

STATES = ("queued", "active", "deferred", "etrn", "frozen")  # the states the pane shows
ENGINE_STATES = ("queued", "active", "frozen")  # QueueItem.state
_ENGINE_CODE = {state: number for number, state in enumerate(ENGINE_STATES)}
_STATE_CODE = {state: number for number, state in enumerate(STATES)}
NUMBERS_RUN = 16384  # slot numbers made at a time
SEPARATOR = "\n"  # between the addresses of one message in a text column (an address holds no line break)


def display_state(item: QueueItem) -> str:
    """The engine's queued / active / frozen, with "deferred" for a queued message that has failed before and
    "etrn" for one whose every pending recipient waits for ETRN (no attempt is made until then)."""
    if item.state in ("frozen", "active"):
        return item.state
    if item.etrn_held and all_held(item.pending, item.etrn_held):
        return "etrn"
    return "deferred" if item.attempts > 0 else "queued"


def all_held(pending: tuple[str, ...], held: tuple[str, ...]) -> bool:
    return all(domain_of(address).lower() in held for address in pending)


def target_domains(addresses: tuple[str, ...]) -> tuple[str, ...]:
    """The domains of these recipients, in order, each once."""
    if len(addresses) == 1:
        return (domain_of(addresses[0]),)
    return tuple(dict.fromkeys(domain_of(address) for address in addresses))


class TextColumn:
    """One string per slot, kept as UTF-8 in one growing buffer. A text equal to one of the last ``RECENT`` texts
    stored points at the same bytes (the same error for a domain's messages, the same subject of a mailing); a
    changed or removed text leaves its bytes behind until the buffer is rewritten, once as many texts changed
    as there are slots (so each change costs O(1) in the long run and the buffer stays within a few times its
    live bytes)."""

    __slots__ = ("_changes", "_data", "_length", "_recent", "_start")

    RECENT = 1024

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = array("I")
        self._length = array("I")
        self._recent: dict[bytes, int] = {}  # text → where its bytes start
        self._changes = 0

    def __len__(self) -> int:
        return len(self._start)

    def _place(self, text: str) -> tuple[int, int]:
        encoded = text.encode("utf-8", "surrogatepass")
        if not encoded:
            return 0, 0
        start = self._recent.get(encoded)
        if start is None:
            start = len(self._data)
            self._data += encoded
            self._recent[encoded] = start
            if len(self._recent) > self.RECENT:
                del self._recent[next(iter(self._recent))]
        return start, len(encoded)

    def append(self, text: str) -> None:
        start, length = self._place(text)
        self._start.append(start)
        self._length.append(length)

    def get(self, slot: int) -> str:
        start = self._start[slot]
        return self._data[start:start + self._length[slot]].decode("utf-8", "surrogatepass")

    def empty(self, slot: int) -> bool:
        return not self._length[slot]

    def set(self, slot: int, text: str) -> None:
        if self.get(slot) == text:
            return
        self._start[slot], self._length[slot] = self._place(text)
        self._changed()

    def pop_into(self, slot: int) -> None:
        """Drop ``slot``'s text and move the last slot's into its place."""
        last = len(self._start) - 1
        self._start[slot], self._length[slot] = self._start[last], self._length[last]
        self._start.pop()
        self._length.pop()
        self._changed()

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    def _changed(self) -> None:
        self._changes += 1
        if self._changes > max(len(self._start), 1000):
            self.compact()

    def compact(self) -> None:
        """Rewrite the buffer with only the bytes some slot points at (each shared run once)."""
        data, start, length = self._data, self._start, self._length
        fresh = bytearray()
        moved: dict[int, int] = {}
        for slot in range(len(start)):
            if not length[slot]:
                continue
            begin = start[slot]
            new = moved.get(begin)
            if new is None:
                new = moved[begin] = len(fresh)
                fresh += data[begin:begin + length[slot]]
            start[slot] = new
        self._data, self._changes, self._recent = fresh, 0, {}

    @property
    def buffer_size(self) -> int:
        return len(self._data)


class QueueRows:
    """Every queued message of one computer, by queue id."""

    def __init__(self) -> None:
        self.slots: dict[str, int] = {}
        self.ids: list[str] = []
        self.arrived = array("d")
        self.next_attempt = array("d")
        self.size = array("q")
        self.attempts = array("i")
        self.state = bytearray()  # index in STATES (what the pane shows)
        self.engine_state = bytearray()  # index in ENGINE_STATES
        self.count = array("i")  # recipients
        self.sender: list[str] = []
        self.domains: list[tuple[str, ...]] = []  # target domains: of the pending recipients (all once none is)
        self.etrn_held: list[tuple[str, ...]] = []
        self.source: list[str] = []
        self.recipients = TextColumn()  # every address, SEPARATOR between them
        self.partial: dict[str, tuple[str, ...]] = {}  # the pending recipients where some are done (few messages)
        self.last_error = TextColumn()
        self.subject = TextColumn()
        self.has_subject = bytearray()  # 1: ``subject`` was read (it may be "")
        self._shared: dict[object, object] = {}  # one object for every equal sender, domain tuple, source
        # The slot numbers as int objects made in runs, not one by one between a page's transient objects
        # (which would keep the page's memory from being reused for anything but small objects).
        self._numbers: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, queue_id: object) -> bool:
        return queue_id in self.slots

    def _share(self, value: object) -> object:
        return self._shared.setdefault(value, value)

    def _forget_unused(self) -> None:
        """Keep only the shared values some row still has (senders of messages long gone are dropped)."""
        self._shared = {}
        for column in (self.sender, self.domains, self.etrn_held, self.source):
            for value in column:
                self._shared.setdefault(value, value)

    # -- writing ---------------------------------------------------------------------------------

    def put(self, item: QueueItem) -> bool:
        """Store ``item`` (new or replacing the message's row, keeping its subject); True if it was new."""
        slot = self.slots.get(item.queue_id)
        if len(self._shared) > 2 * len(self.ids) + 1000:
            self._forget_unused()
        recipients, pending = item.recipients, item.pending
        if pending != recipients:
            self.partial[item.queue_id] = pending
        else:
            self.partial.pop(item.queue_id, None)
        domains = target_domains(pending or recipients)
        domains = tuple(sys.intern(domain) for domain in domains)  # (a few hundred domains for 100,000 messages)
        values = (item.arrived, item.next_attempt, item.size, item.attempts, _STATE_CODE[display_state(item)],
                  _ENGINE_CODE.get(item.state, 0), len(recipients), self._share(item.sender),
                  self._share(domains), self._share(item.etrn_held), self._share(item.source))
        if slot is None:
            if len(self._numbers) <= len(self.ids):
                self._numbers.extend(range(len(self._numbers), len(self._numbers) + NUMBERS_RUN))
            self.slots[item.queue_id] = self._numbers[len(self.ids)]
            self.ids.append(item.queue_id)
            for column, value in zip(self._value_columns(), values, strict=True):
                column.append(value)  # type: ignore[attr-defined]
            self.recipients.append(SEPARATOR.join(recipients))
            self.last_error.append(item.last_error)
            self.subject.append("")
            self.has_subject.append(0)
            return True
        for column, value in zip(self._value_columns(), values, strict=True):
            column[slot] = value  # type: ignore[index]
        self.recipients.set(slot, SEPARATOR.join(recipients))
        self.last_error.set(slot, item.last_error)
        return False

    def _value_columns(self) -> tuple[object, ...]:
        return (self.arrived, self.next_attempt, self.size, self.attempts, self.state, self.engine_state, self.count,
                self.sender, self.domains, self.etrn_held, self.source)

    def remove(self, queue_id: str) -> bool:
        slot = self.slots.pop(queue_id, None)
        if slot is None:
            return False
        last = len(self.ids) - 1
        if slot != last:
            moved = self.ids[last]
            self.slots[moved] = self._numbers[slot]
            self.ids[slot] = moved
            for column in (*self._value_columns(), self.has_subject):
                column[slot] = column[last]  # type: ignore[index]
        self.ids.pop()
        for column in (*self._value_columns(), self.has_subject):
            column.pop()  # type: ignore[attr-defined]
        for text in (self.recipients, self.last_error, self.subject):
            text.pop_into(slot)
        self.partial.pop(queue_id, None)
        return True

    def set_subject(self, queue_id: str, subject: str) -> bool:
        """True if it changed what is known."""
        slot = self.slots.get(queue_id)
        if slot is None or (self.has_subject[slot] and self.subject.get(slot) == subject):
            return False
        self.subject.set(slot, subject)
        self.has_subject[slot] = 1
        return True

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    # -- reading ---------------------------------------------------------------------------------

    def slot(self, queue_id: str) -> int | None:
        return self.slots.get(queue_id)

    def recipients_of(self, slot: int) -> tuple[str, ...]:
        text = self.recipients.get(slot)
        return tuple(text.split(SEPARATOR)) if text else ()

    def pending_of(self, slot: int) -> tuple[str, ...]:
        pending = self.partial.get(self.ids[slot])
        return self.recipients_of(slot) if pending is None else pending

    def first_shown(self, slot: int) -> str:
        """The first pending recipient (the first of all once none is pending)."""
        pending = self.partial.get(self.ids[slot])
        return pending[0] if pending else self.recipients.get(slot).split(SEPARATOR, 1)[0]

    def has_pending(self, slot: int) -> bool:
        pending = self.partial.get(self.ids[slot])
        return bool(pending) if pending is not None else self.count[slot] > 0

    def shown_count(self, slot: int) -> int:
        """Pending recipients (all of them once none is pending)."""
        pending = self.partial.get(self.ids[slot])
        return len(pending) if pending else self.count[slot]

    def state_of(self, slot: int) -> str:
        return STATES[self.state[slot]]

    def subject_of(self, slot: int) -> str | None:
        """None: not read yet."""
        return self.subject.get(slot) if self.has_subject[slot] else None

    def item(self, slot: int) -> QueueItem:
        """The message as the engine's snapshot had it (a new object)."""
        return QueueItem(self.ids[slot], self.sender[slot], self.recipients_of(slot), self.pending_of(slot),
                         self.size[slot], self.arrived[slot], self.attempts[slot], self.next_attempt[slot],
                         ENGINE_STATES[self.engine_state[slot]], self.last_error.get(slot), self.source[slot],
                         self.etrn_held[slot])

    def get(self, queue_id: str) -> QueueItem | None:
        slot = self.slots.get(queue_id)
        return self.item(slot) if slot is not None else None

    def same(self, item: QueueItem) -> bool:
        """The stored row is this item (nothing to change)."""
        slot = self.slots.get(item.queue_id)
        return slot is not None and self.item(slot) == item

    def items(self) -> Iterator[QueueItem]:
        return (self.item(slot) for slot in range(len(self.ids)))

    def shape_pairs(self) -> Iterable[tuple[tuple[str, ...], float]]:
        """(target domains, arrived) of every message: what the queue-shape chart counts."""
        return zip(self.domains, self.arrived, strict=True)
