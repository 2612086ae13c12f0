"""The Queue's index, ``Queue/queue.idx``: every message's state record in one append-only file, read at start.

A cache, never the truth (the message files are): a line counts only while the files it describes are
the ones on disk — the same inode for ``<id>.eml`` and for ``<id>.env`` (a state record is rewritten by
rename, so each version has its own inode; 0 = no record file) — and only in the boot it was written in
(appended data is visible after a kill -9 without fsync; after a reboot its tail may be lost, so the index
is then set aside and rebuilt from the message files). Appends are not fsynced.

Format: a header line ``smtpsvc-queue-index 1 <boot id> <layout>``, then one line per change:
``<CRC-32 of the rest, 8 hex digits> <eml inode> <env inode> <size> <offset> <record's fields…>``, the
fields split by U+001F in dataclass order (recipients by U+001E, a recipient's fields by U+001D); a string
with a control character is written as JSON. Plain text is read about four times faster than JSON. A damaged
line is skipped: its message is read from its files. The last valid line of a message wins; compaction keeps
only those.

At start a message's fields stay as the bytes of its line (``take``): the queue keeps them and decodes a
record only when something needs it (``decode_record``; one field: ``record_field``), so 100,000 recovered
messages cost a few hundred bytes each, not a thousand in Python objects.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from engine.conf.addresses import domain_of
from engine.store.envelope import RecipientState, StateRecord

log = logging.getLogger(__name__)
E = TypeVar("E")

NAME = "queue.idx"
MAGIC = b"smtpsvc-queue-index 1"
BLOCK = 256 << 10  # read this much at a time while loading (few temporary objects alive at once)
_RECORD_FIELDS = dataclasses.fields(StateRecord)
_RCPT_FIELDS = dataclasses.fields(RecipientState)
# A layout change (a field added to a record) makes old indexes unusable: they are rebuilt, never misread.
LAYOUT = f"{zlib.crc32(repr([(f.name, f.type) for f in (*_RECORD_FIELDS, *_RCPT_FIELDS)]).encode()):08x}"
FIELD, RECIPIENT, RECIPIENT_FIELD = "\x1f", "\x1e", "\x1d"  # separators; never inside a plain string
SAME_ERROR = "\x00"  # a recipient's last error that is the message's (written once)
_NOT_PLAIN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_SHARED = {"sender", "source", "last_error", "status", "enhanced", "remote", "notify"}  # repeated: interned

# What recovery counts of a pending recipient (its domain, attempts and enhanced status) as bits that are or-ed
# over the message's pending recipients (``engine.qmgr.queue.counted_bits``; 0 = none pending)
BitsOf = Callable[[str, int, str], int]


@dataclass(slots=True)
class Plan:
    """What the first pass over the index found: which lines to take, and what the index does not know. Only
    this is kept for the second pass, so that the listing and the first pass's strings are gone before the
    recovered queue is built (its objects then fill their room densely: less memory, no holes)."""

    end: int  # the passes read up to here (lines appended meanwhile are the running engine's own)
    winners: bytearray  # 1 at the number of each valid line that is its message's last and matches its files
    missing: list[str]  # messages on disk that the index does not know as they are: read from their files


@dataclass(slots=True)
class Taken(Generic[E]):
    """The second pass: the recovered messages, in the order of their lines."""

    entries: list[E]
    wakes: list[tuple[float, str]]  # (next attempt, id) of each entry, for delivery's heap
    failed: list[str]  # winning lines that did not decode after all: those messages are read from their files


def boot_id() -> str:
    """This boot's identity ("" where the system does not say: then the index is never trusted at start)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def header() -> bytes:
    return b"%s %s %s\n" % (MAGIC, boot_id().encode("ascii") or b"-", LAYOUT.encode("ascii"))


# -- the record as one line of text: plain fields split by separators (JSON only for odd strings) ----------


def _shared(value: str) -> str:
    """Marks a field whose equal values are shared between records while loading (see ``_decode_line``)."""
    return _decode_str(value)


def _encode_str(value: str) -> str:
    """Plain unless it has a control character or a lone surrogate, or starts with a quote: then JSON."""
    return json.dumps(value) if value[:1] == '"' or _NOT_PLAIN.search(value) else value


def _decode_str(value: str) -> str:
    return str(json.loads(value)) if value[:1] == '"' else value


def _decode_json(value: str) -> Any:
    return {} if value == "{}" else json.loads(value)


_ENCODERS: dict[str, Callable[[Any], str]] = {
    "str": _encode_str, "float": repr, "int": str, "bool": lambda value: "1" if value else "0"}
_DECODERS: dict[str, Callable[[str], Any]] = {
    "str": _decode_str, "float": float, "int": int, "bool": lambda value: value == "1"}


def _codecs(fields: tuple[dataclasses.Field[Any], ...]) -> list[tuple[Callable[[Any], str], Callable[[str], Any]]]:
    result = []
    for item in fields:
        kind = "str" if item.type == "RecipientStatus" else str(item.type)  # a Literal of strings: written plain
        encode = _ENCODERS.get(kind, lambda value: json.dumps(value, sort_keys=True))
        decode = _DECODERS.get(kind, _decode_json)
        result.append((encode, _shared if kind == "str" and item.name in _SHARED else decode))
    return result


_RECORD_CODECS = _codecs(_RECORD_FIELDS)
_RCPT_CODECS = _codecs(_RCPT_FIELDS)
_RECIPIENTS = [f.name for f in _RECORD_FIELDS].index("recipients")
_RCPT_ERROR = [f.name for f in _RCPT_FIELDS].index("last_error")
_RCPT_ADDRESS, _RCPT_STATUS, _RCPT_ATTEMPTS, _RCPT_ENHANCED = (
    [f.name for f in _RCPT_FIELDS].index(name) for name in ("address", "status", "attempts", "enhanced"))
_RCPT_SEPARATORS = len(_RCPT_FIELDS) - 1
_RCPT_LAST_READ = max(_RCPT_ADDRESS, _RCPT_STATUS, _RCPT_ATTEMPTS, _RCPT_ENHANCED)
_FIELD_NUMBER = {f.name: number for number, f in enumerate(_RECORD_FIELDS)}
_QUEUE_ID, _SENDER, _ARRIVED, _ATTEMPTS, _NEXT_ATTEMPT, _FROZEN, _LAST_ERROR, _SOURCE = (
    _FIELD_NUMBER[name] for name in
    ("queue_id", "sender", "arrived", "attempts", "next_attempt", "frozen", "last_error", "source"))
# numbers read straight from the line's bytes (a sort over 100,000 cold messages)
_BYTES_DECODERS: dict[int, Callable[[bytes], Any]] = {
    _FIELD_NUMBER[f.name]: float if str(f.type) == "float" else int
    for f in _RECORD_FIELDS if str(f.type) in ("float", "int")}
_FIELD_BYTES, _RECIPIENT_BYTES, _RECIPIENT_FIELD_BYTES = (b"\x1f", b"\x1e", b"\x1d")
# The recipients field is split apart after the others are decoded.
_RECORD_DECODERS = [str if n == _RECIPIENTS else decode for n, (_, decode) in enumerate(_RECORD_CODECS)]
_RCPT_DECODERS = [decode for _, decode in _RCPT_CODECS]


def encode_record(record: StateRecord) -> str:
    """The record as it is now (taken on the loop; written later on a worker thread)."""
    parts = []
    for item, (encode, _) in zip(_RECORD_FIELDS, _RECORD_CODECS, strict=True):
        if item.name == "recipients":
            parts.append(RECIPIENT.join(_encode_rcpt(rcpt, record.last_error) for rcpt in record.recipients))
        else:
            parts.append(encode(getattr(record, item.name)))
    return FIELD.join(parts)


def _encode_rcpt(rcpt: RecipientState, message_error: str) -> str:
    parts = [encode(getattr(rcpt, item.name)) for item, (encode, _) in zip(_RCPT_FIELDS, _RCPT_CODECS, strict=True)]
    if rcpt.last_error and rcpt.last_error == message_error:
        parts[_RCPT_ERROR] = SAME_ERROR
    return RECIPIENT_FIELD.join(parts)


def line(queue_id: str, eml_ino: int, env_ino: int, size: int, offset: int, record: str) -> bytes:
    """``<crc> <eml inode> <env inode> <size> <offset> <record fields…>`` (the record starts with the id)."""
    if not record.startswith(queue_id + FIELD):
        raise ValueError(f"index line of {queue_id} with another message's record")
    payload = f"{eml_ino}{FIELD}{env_ino}{FIELD}{size}{FIELD}{offset}{FIELD}{record}".encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def decode_record(fields: bytes) -> StateRecord:
    """The record of an index line's fields (``Indexed.fields``); ValueError when they are not of this layout."""
    return _decode_fields(fields.decode("utf-8").split(FIELD), {})


def _decode_fields(parts: list[str], strings: dict[str, str]) -> StateRecord:
    """Equal repeated strings (states, errors, senders) become one object through ``strings`` (a dictionary for
    one load: interning them for good would keep every unique error for the process's life)."""
    if len(parts) != len(_RECORD_DECODERS):
        raise ValueError("not a record of this layout")
    values: list[Any] = [strings.setdefault(v, v) if decode is _shared and v[:1] != '"' else decode(v)
                         for decode, v in zip(_RECORD_DECODERS, parts, strict=True)]
    record = StateRecord(*values)
    error = record.last_error
    rcpts = []
    for text in (values[_RECIPIENTS].split(RECIPIENT) if values[_RECIPIENTS] else ()):
        fields = text.split(RECIPIENT_FIELD)
        if len(fields) != len(_RCPT_DECODERS):
            raise ValueError("not a recipient of this layout")
        decoded: list[Any] = [strings.setdefault(v, v) if decode is _shared and v[:1] != '"' else decode(v)
                              for decode, v in zip(_RCPT_DECODERS, fields, strict=True)]
        if fields[_RCPT_ERROR] == SAME_ERROR:
            decoded[_RCPT_ERROR] = error  # (already decoded)
        rcpts.append(RecipientState(*decoded))
    record.recipients = rcpts
    return record


def record_field(fields: bytes, name: str) -> Any:
    """One field of an encoded record, without decoding the others (sorting a cold queue)."""
    number = _FIELD_NUMBER[name]
    parts = fields.split(_FIELD_BYTES, number + 1)
    if len(parts) <= number:
        raise ValueError("not a record of this layout")
    decode = _BYTES_DECODERS.get(number)
    return decode(parts[number]) if decode is not None else _RECORD_DECODERS[number](parts[number].decode("utf-8"))


def recipient_rows(fields: bytes) -> list[tuple[str, str, int, str]]:
    """(address, status, attempts, enhanced status) of each recipient of an encoded record, for the counters
    and the domain sort: the recipients' part decoded alone, no objects kept."""
    parts = fields.split(_FIELD_BYTES, _RECIPIENTS + 1)
    if len(parts) <= _RECIPIENTS:
        raise ValueError("not a record of this layout")
    rows = []
    for text in (parts[_RECIPIENTS].decode("utf-8").split(RECIPIENT) if parts[_RECIPIENTS] else ()):
        rcpt = text.split(RECIPIENT_FIELD)
        if len(rcpt) != len(_RCPT_DECODERS):
            raise ValueError("not a recipient of this layout")
        rows.append((_decode_str(rcpt[_RCPT_ADDRESS]), _decode_str(rcpt[_RCPT_STATUS]), int(rcpt[_RCPT_ATTEMPTS]),
                     _decode_str(rcpt[_RCPT_ENHANCED])))
    return rows


# Senders, errors and sources of listed rows, one object for equal strings: a window that keeps 100,000 rows keeps
# a few thousand distinct ones, not 300,000 (bounded: cleared when it grows past this many).
LISTED_STRINGS = 50_000
_LISTED: dict[str, str] = {}


class Summary(NamedTuple):
    """What a queue listing shows of a message, read from its encoded record without building the record."""

    sender: str
    recipients: tuple[str, ...]
    pending: tuple[str, ...]
    arrived: float
    attempts: int
    next_attempt: float
    frozen: bool
    last_error: str
    source: str


def summary(fields: bytes) -> Summary:
    """The listing's view of an encoded record (a page of 100,000 cold messages: no objects kept)."""
    parts = fields.decode("utf-8").split(FIELD)
    if len(parts) != len(_RECORD_DECODERS):
        raise ValueError("not a record of this layout")
    recipients, pending = [], []
    for text in (parts[_RECIPIENTS].split(RECIPIENT) if parts[_RECIPIENTS] else ()):
        rcpt = text.split(RECIPIENT_FIELD)
        if len(rcpt) != len(_RCPT_DECODERS):
            raise ValueError("not a recipient of this layout")
        address = rcpt[_RCPT_ADDRESS]
        if address[:1] == '"':
            address = _decode_str(address)
        recipients.append(address)
        if rcpt[_RCPT_STATUS] == "pending":  # (a status is never written as JSON: no quote, no control)
            pending.append(address)
    listed = _LISTED
    if len(listed) > LISTED_STRINGS:
        listed.clear()
    sender, error, source = parts[_SENDER], parts[_LAST_ERROR], parts[_SOURCE]
    # (inline: 100,000 rows a listing; a field starting with a quote is JSON)
    sender = listed.setdefault(sender, sender) if sender[:1] != '"' else _listed(sender)
    error = listed.setdefault(error, error) if error[:1] != '"' else _listed(error)
    source = listed.setdefault(source, source) if source[:1] != '"' else _listed(source)
    everyone = tuple(recipients)
    return Summary(sender, everyone, everyone if len(pending) == len(everyone) else tuple(pending),
                   float(parts[_ARRIVED]), int(parts[_ATTEMPTS]), float(parts[_NEXT_ATTEMPT]), parts[_FROZEN] == "1",
                   error, source)


def _listed(field: str) -> str:
    text = _decode_str(field)
    return _LISTED.setdefault(text, text)


def _head(raw: bytes) -> tuple[str, int, int] | None:
    """(queue id, eml inode, env inode) of a line as read (checksum and all), nothing else decoded or checked;
    None when it has not even that shape. Both passes read lines only through this, so they agree."""
    parts = raw.split(_FIELD_BYTES, 5)
    if len(parts) != 6 or parts[0][8:9] != b" ":
        return None
    try:
        return parts[4].decode("ascii"), int(parts[0][9:]), int(parts[1])
    except ValueError:  # (UnicodeDecodeError is one)
        return None


_LINE_SEPARATORS = 4 + len(_RECORD_FIELDS) - 1  # the line's four numbers, then the record's fields
_PENDING = b"pending"


class _Parser:
    """The second pass's reading of one winning line: checks its checksum and layout, decodes only what
    recovery needs (a record's fields stay bytes). What a pending recipient counts as is asked of ``bits_of``
    once per distinct (domain, attempts, enhanced status) of the load, by their bytes."""

    def __init__(self, bits_of: BitsOf) -> None:
        self._bits_of = bits_of
        self._known: dict[tuple[bytes, bytes, bytes], int] = {}

    def parse(self, raw: bytes) -> tuple[str, bytes, int, int, float, int] | None:
        """(queue id, the record's fields, size, offset, next attempt, counted bits), or None."""
        payload = raw[9:]
        if raw[8:9] != b" " or payload.count(_FIELD_BYTES) != _LINE_SEPARATORS:
            return None
        try:
            if int(raw[:8], 16) != zlib.crc32(payload):
                return None
            numbers = payload.split(_FIELD_BYTES, 4)
            fields = numbers[4]
            parts = fields.split(_FIELD_BYTES, _NEXT_ATTEMPT + 1)
            bits = 0
            if parts[_RECIPIENTS]:
                for text in parts[_RECIPIENTS].split(_RECIPIENT_BYTES):
                    if text.count(_RECIPIENT_FIELD_BYTES) != _RCPT_SEPARATORS:
                        return None
                    rcpt = text.split(_RECIPIENT_FIELD_BYTES, _RCPT_LAST_READ + 1)
                    if rcpt[_RCPT_STATUS] == _PENDING:
                        address = rcpt[_RCPT_ADDRESS]
                        key = (address[address.rfind(b"@") + 1:] if address[:1] != b'"' else address,
                               rcpt[_RCPT_ATTEMPTS], rcpt[_RCPT_ENHANCED])
                        counted = self._known.get(key)
                        if counted is None:
                            counted = self._known[key] = self._bits_of(
                                domain_of(_decode_str(address.decode("utf-8"))), int(key[1]),
                                _decode_str(key[2].decode("utf-8")))
                        bits |= counted
            return (parts[_QUEUE_ID].decode("ascii"), fields, int(numbers[2]), int(numbers[3]),
                    float(parts[_NEXT_ATTEMPT]), bits)
        except ValueError:  # (UnicodeDecodeError is one)
            return None


def _payloads(data: bytes) -> Iterator[bytes]:
    """The payload of every line whose checksum is right."""
    for raw in data.split(b"\n"):
        if len(raw) > 9 and raw[8:9] == b" ":
            payload = raw[9:]
            try:
                good = int(raw[:8], 16) == zlib.crc32(payload)
            except ValueError:
                continue
            if good:
                yield payload


def _blocks(handle: Any) -> Iterator[bytes]:
    """Whole lines, about BLOCK bytes at a time."""
    rest = b""
    while True:
        chunk = handle.read(BLOCK)
        if not chunk:
            if rest:
                yield rest
            return
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            yield data[:cut]


class QueueIndex:
    """The open index of one Queue directory; appends come from the loop and from worker threads."""

    def __init__(self, queue_dir: Path) -> None:
        self.path = queue_dir / NAME
        self._lock = threading.Lock()
        self._fd = -1
        self.lines = 0  # lines in the file: compaction is due when far more than the messages queued

    # -- start ----------------------------------------------------------------------------------

    def open(self) -> bool:
        """Open for appending; True when the existing file may be loaded (else it was started afresh).

        False too when it cannot be written: the queue is then read from the message files, as without it."""
        try:
            return self._open()
        except OSError as error:
            log.warning("queue index %s not used: %s", self.path, error)
            return False

    def _open(self) -> bool:
        with self._lock:
            usable = False
            try:
                with self.path.open("rb") as handle:
                    first = handle.readline()
                usable = first == header() and boot_id() != ""
            except OSError:
                pass
            if not usable:
                self._write_fresh([])
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            end = os.fstat(self._fd).st_size
            if end and os.pread(self._fd, 1, end - 1) != b"\n":
                os.write(self._fd, b"\n")  # end a line torn by a crash: the next one must not be glued to it
            return usable

    def plan(self, messages: dict[str, int], records: dict[str, int], order: list[str]) -> Plan:
        """First pass: the last line of each message whose files are still those on disk (``messages``/
        ``records``: id → inode; ``order``: the ids on disk, oldest first). Only each line's head is read here:
        a winner that turns out damaged (checksum, layout) is read from its files by the second pass's caller."""
        last: dict[str, int] = {}
        number = 0  # lines are numbered as both passes see them: every non-empty one
        with self.path.open("rb") as handle:
            end = os.fstat(handle.fileno()).st_size
            handle.readline()
            for block in _blocks(_Bounded(handle, end)):
                for raw in block.split(b"\n"):
                    if not raw:
                        continue
                    head = _head(raw)
                    if head is not None:
                        queue_id, eml_ino, env_ino = head
                        if messages.get(queue_id) == eml_ino and records.get(queue_id, 0) == env_ino:
                            last[queue_id] = number
                        else:
                            last.pop(queue_id, None)  # an older line of a file since replaced
                    number += 1
        self.lines = max(self.lines, number)
        winners = bytearray(number)
        for line_number in last.values():
            winners[line_number] = 1
        # (every id in ``last`` is on disk: when as many, none is missing)
        missing = [] if len(last) == len(order) else [queue_id for queue_id in order if queue_id not in last]
        return Plan(end, winners, missing)

    def take(self, plan: Plan, make: Callable[[str, bytes, int, int, int], E], bits_of: BitsOf) -> Taken[E]:
        """Second pass: ``make(id, fields, size, offset, bits)`` for each winning line of ``plan``, in line order
        (``bits``: ``bits_of`` of its pending recipients, or-ed); a winner that is damaged after all goes to
        ``failed``."""
        taken: Taken[E] = Taken([], [], [])
        entries, wakes, failed = taken.entries, taken.wakes, taken.failed
        winners, count = plan.winners, len(plan.winners)
        parse = _Parser(bits_of).parse
        number = 0
        with self.path.open("rb") as handle:
            handle.readline()
            for block in _blocks(_Bounded(handle, plan.end)):
                for raw in block.split(b"\n"):
                    if not raw:
                        continue
                    if number < count and winners[number]:
                        parsed = parse(raw)
                        if parsed is None:
                            head = _head(raw)
                            if head is not None:  # (a winner's head was read in the first pass)
                                failed.append(head[0])
                        else:
                            queue_id, fields, size, offset, next_attempt, bits = parsed
                            entries.append(make(queue_id, fields, size, offset, bits))
                            wakes.append((next_attempt, queue_id))
                    number += 1
        return taken

    # -- changes --------------------------------------------------------------------------------

    def append(self, lines: Iterable[bytes]) -> None:
        data = b"".join(lines)
        if not data:
            return
        with self._lock:
            if self._fd < 0:
                return
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as error:  # a full disk, say: the next start reads those messages from their files
                log.warning("cannot append to %s: %s", self.path, error)
                return
            self.lines += data.count(b"\n")

    def size(self) -> int:
        """Where the file ends now (compaction keeps what lies beyond as it is)."""
        with self._lock:
            return os.fstat(self._fd).st_size if self._fd >= 0 else 0

    def compact(self, live: set[str], end: int) -> None:
        """Rewrite the file with only the last line of each message in ``live`` up to ``end`` (taken together
        with ``live``: a message added later has its lines beyond), then everything after ``end``; on a
        worker thread. Lines appended meanwhile are carried over under the lock: nothing written is lost."""
        last: dict[str, int] = {}
        with self.path.open("rb") as handle:
            handle.readline()
            number = 0
            for block in _blocks(_Bounded(handle, end)):
                for payload in _payloads(block):
                    last[_id_of(payload)] = number
                    number += 1
            handle.seek(0)
            handle.readline()
            kept: list[bytes] = []
            number = 0
            for block in _blocks(_Bounded(handle, end)):
                for payload in _payloads(block):
                    queue_id = _id_of(payload)
                    if queue_id in live and last.get(queue_id) == number:
                        kept.append(b"%08x %s\n" % (zlib.crc32(payload), payload))
                    number += 1
        with self._lock:
            if self._fd < 0:
                return
            with self.path.open("rb") as handle:
                handle.seek(end)
                tail = handle.read()
            os.close(self._fd)
            self._fd = -1
            if tail and not tail.endswith(b"\n"):
                tail = tail[: tail.rfind(b"\n") + 1]  # (only appends of whole lines: cannot happen)
            self._write_fresh(kept, tail)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self.lines = len(kept) + tail.count(b"\n")

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _write_fresh(self, lines: list[bytes], tail: bytes = b"") -> None:
        """Replace the file by rename (a crash leaves the old one or the new one, either only a cache)."""
        temp = self.path.with_name(f".{NAME}.tmp")
        with temp.open("wb") as handle:
            handle.write(header())
            handle.writelines(lines)
            handle.write(tail)
        os.replace(temp, self.path)
        self.lines = len(lines) + tail.count(b"\n")


class _Bounded:
    """A reader that stops at ``end`` (lines appended after compaction began are carried over separately)."""

    def __init__(self, handle: Any, end: int) -> None:
        self._handle = handle
        self._end = end

    def read(self, size: int) -> bytes:
        left = self._end - self._handle.tell()
        return self._handle.read(min(size, left)) if left > 0 else b""


def _id_of(payload: bytes) -> str:
    """The queue id, the record's first field (ids are plain letters and digits)."""
    parts = payload.split(FIELD.encode(), 5)
    return parts[4].decode("ascii", "replace") if len(parts) > 5 else ""
