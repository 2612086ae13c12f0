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
SEPARATOR = "\n"  # between the addresses of one message in a text column (an address holds no line break)
COMPACT_OVER = 1 << 20  # a text column is rewritten once its dead bytes pass this and its live ones


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
    """One string per slot, kept as UTF-8 in one growing buffer; a changed or removed text leaves dead bytes
    behind until the buffer is rewritten (when they outweigh the live ones)."""

    __slots__ = ("_data", "_dead", "_length", "_start")

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = array("Q")
        self._length = array("I")
        self._dead = 0

    def __len__(self) -> int:
        return len(self._start)

    def append(self, text: str) -> None:
        encoded = text.encode("utf-8", "surrogatepass")
        self._start.append(len(self._data))
        self._length.append(len(encoded))
        self._data += encoded

    def get(self, slot: int) -> str:
        start = self._start[slot]
        return self._data[start:start + self._length[slot]].decode("utf-8", "surrogatepass")

    def empty(self, slot: int) -> bool:
        return not self._length[slot]

    def set(self, slot: int, text: str) -> None:
        encoded = text.encode("utf-8", "surrogatepass")
        if encoded == self._data[self._start[slot]:self._start[slot] + self._length[slot]]:
            return
        self._dead += self._length[slot]
        self._start[slot] = len(self._data)
        self._length[slot] = len(encoded)
        self._data += encoded
        self._compact_if_worth_it()

    def pop_into(self, slot: int) -> None:
        """Drop ``slot``'s text and move the last slot's into its place."""
        self._dead += self._length[slot]
        last = len(self._start) - 1
        self._start[slot], self._length[slot] = self._start[last], self._length[last]
        self._start.pop()
        self._length.pop()
        self._compact_if_worth_it()

    def clear(self) -> None:
        self._data = bytearray()
        self._start = array("Q")
        self._length = array("I")
        self._dead = 0

    def _compact_if_worth_it(self) -> None:
        if self._dead <= COMPACT_OVER or self._dead <= len(self._data) - self._dead:
            return
        data, start, length = self._data, self._start, self._length
        fresh = bytearray()
        for slot in range(len(start)):
            begin = start[slot]
            start[slot] = len(fresh)
            fresh += data[begin:begin + length[slot]]
        self._data, self._dead = fresh, 0


class QueueRows:
    """Every queued message of one computer, by queue id."""

    def __init__(self) -> None:
        self.slots: dict[str, int] = {}
        self.ids: list[str] = []
        self.arrived = array("d")
        self.next_attempt = array("d")
        self.size = array("q")
        self.attempts = array("l")
        self.state = bytearray()  # index in STATES (what the pane shows)
        self.engine_state = bytearray()  # index in ENGINE_STATES
        self.count = array("l")  # recipients
        self.sender: list[str] = []
        self.domains: list[tuple[str, ...]] = []  # target domains: of the pending recipients (all once none is)
        self.etrn_held: list[tuple[str, ...]] = []
        self.source: list[str] = []
        self.recipients = TextColumn()  # every address, SEPARATOR between them
        self.pending = TextColumn()  # "" when every recipient is pending (most messages): see ``_partial``
        self.partial = bytearray()  # 1: some recipient is done, ``pending`` holds those still pending
        self.last_error = TextColumn()
        self.subject = TextColumn()
        self.has_subject = bytearray()  # 1: ``subject`` was read (it may be "")
        self._shared: dict[object, object] = {}  # one object for every equal sender, domain tuple, source

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, queue_id: object) -> bool:
        return queue_id in self.slots

    def _share(self, value: object) -> object:
        return self._shared.setdefault(value, value)

    # -- writing ---------------------------------------------------------------------------------

    def put(self, item: QueueItem) -> bool:
        """Store ``item`` (new or replacing the message's row, keeping its subject); True if it was new."""
        slot = self.slots.get(item.queue_id)
        recipients, pending = item.recipients, item.pending
        partial = pending != recipients
        domains = target_domains(pending or recipients)
        domains = tuple(sys.intern(domain) for domain in domains)  # (a few hundred domains for 100,000 messages)
        values = (item.arrived, item.next_attempt, item.size, item.attempts, _STATE_CODE[display_state(item)],
                  _ENGINE_CODE.get(item.state, 0), len(recipients), self._share(item.sender),
                  self._share(domains), self._share(item.etrn_held), self._share(item.source))
        if slot is None:
            self.slots[item.queue_id] = len(self.ids)
            self.ids.append(item.queue_id)
            for column, value in zip(self._value_columns(), values, strict=True):
                column.append(value)  # type: ignore[attr-defined]
            self.recipients.append(SEPARATOR.join(recipients))
            self.pending.append(SEPARATOR.join(pending) if partial else "")
            self.partial.append(partial)
            self.last_error.append(item.last_error)
            self.subject.append("")
            self.has_subject.append(0)
            return True
        for column, value in zip(self._value_columns(), values, strict=True):
            column[slot] = value  # type: ignore[index]
        self.recipients.set(slot, SEPARATOR.join(recipients))
        self.pending.set(slot, SEPARATOR.join(pending) if partial else "")
        self.partial[slot] = partial
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
            self.slots[moved] = slot
            self.ids[slot] = moved
            for column in (*self._value_columns(), self.partial, self.has_subject):
                column[slot] = column[last]  # type: ignore[index]
        self.ids.pop()
        for column in (*self._value_columns(), self.partial, self.has_subject):
            column.pop()  # type: ignore[attr-defined]
        for text in (self.recipients, self.pending, self.last_error, self.subject):
            text.pop_into(slot)
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
        if not self.partial[slot]:
            return self.recipients_of(slot)
        text = self.pending.get(slot)
        return tuple(text.split(SEPARATOR)) if text else ()

    def first_shown(self, slot: int) -> str:
        """The first pending recipient (the first of all once none is pending)."""
        text = self.pending.get(slot) if self.partial[slot] else ""
        text = text or self.recipients.get(slot)
        return text.split(SEPARATOR, 1)[0]

    def shown_count(self, slot: int) -> int:
        if not self.partial[slot]:
            return self.count[slot]
        text = self.pending.get(slot)
        return text.count(SEPARATOR) + 1 if text else self.count[slot]

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
