"""The Queue's index, ``Queue/queue.idx``: every message's state record in one append-only file, read at start.

A cache, never the truth (the message files are): a line counts only while the files it describes are
the ones on disk — the same inode for ``<id>.eml`` and for ``<id>.env`` (a state record is rewritten by
rename, so each version has its own inode; 0 = no record file) — and only in the boot it was written in
(appended data is visible after a kill -9 without fsync; after a reboot its tail may be lost, so the index
is then set aside and rebuilt from the message files). Appends are not fsynced.

Format: a header line ``smtpsvc-queue-index 1 <boot id> <layout>``, then one line per change:
``<CRC-32 of the rest, 8 hex digits> <JSON array>``: ``[id, eml inode, env inode, size, offset, record]``
with the record's fields in dataclass order (recipients as arrays too). A damaged line is skipped: its
message is read from its files. The last valid line of a message wins; compaction keeps only those.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from engine.store.envelope import RecipientState, StateRecord

log = logging.getLogger(__name__)

NAME = "queue.idx"
MAGIC = b"smtpsvc-queue-index 1"
BLOCK = 4 << 20  # read this much at a time while loading
_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(StateRecord))
_RCPT_FIELDS = tuple(f.name for f in dataclasses.fields(RecipientState))
_RECIPIENTS = _RECORD_FIELDS.index("recipients")
_LAST_ERROR = _RECORD_FIELDS.index("last_error")
_RCPT_ERROR = _RCPT_FIELDS.index("last_error")
# A layout change (a field added to a record) makes old indexes unusable: they are rebuilt, never misread.
LAYOUT = f"{zlib.crc32(','.join((*_RECORD_FIELDS, '|', *_RCPT_FIELDS)).encode()):08x}"

Indexed = tuple[StateRecord, int, int]  # record, size, offset


def boot_id() -> str:
    """This boot's identity ("" where the system does not say: then the index is never trusted at start)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def header() -> bytes:
    return b"%s %s %s\n" % (MAGIC, boot_id().encode("ascii") or b"-", LAYOUT.encode("ascii"))


def fields_of(record: StateRecord) -> list[Any]:
    """The record's values as they are now (taken on the loop; encoded later on a worker thread)."""
    fields: list[Any] = [getattr(record, name) for name in _RECORD_FIELDS]
    rcpts = fields[_RECIPIENTS] = [[getattr(r, name) for name in _RCPT_FIELDS] for r in record.recipients]
    for rcpt in rcpts:
        if rcpt[_RCPT_ERROR] == record.last_error and rcpt[_RCPT_ERROR]:
            rcpt[_RCPT_ERROR] = None  # the message's last error, written once (it is usually the same)
    fields[_RECORD_FIELDS.index("extra")] = dict(record.extra)
    return fields


def line(queue_id: str, eml_ino: int, env_ino: int, size: int, offset: int, fields: list[Any]) -> bytes:
    payload = json.dumps([queue_id, eml_ino, env_ino, size, offset, fields], separators=(",", ":")).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _record(fields: list[Any]) -> StateRecord:
    intern = sys.intern
    error = fields[_LAST_ERROR] = intern(fields[_LAST_ERROR])
    for rcpt in fields[_RECIPIENTS]:
        if rcpt[_RCPT_ERROR] is None:
            rcpt[_RCPT_ERROR] = error
    rcpts = [RecipientState(*r) for r in fields[_RECIPIENTS]]
    fields[_RECIPIENTS] = rcpts
    record = StateRecord(*fields)
    if not (isinstance(record.queue_id, str) and isinstance(record.sender, str)
            and all(isinstance(r.address, str) for r in rcpts)):
        raise TypeError("bad field types")
    record.sender = intern(record.sender)
    record.source = intern(record.source)
    for rcpt in rcpts:
        rcpt.status, rcpt.last_error = intern(rcpt.status), intern(rcpt.last_error)
        rcpt.enhanced, rcpt.remote, rcpt.notify = intern(rcpt.enhanced), intern(rcpt.remote), intern(rcpt.notify)
    return record


def _payloads(data: bytes) -> Iterator[bytes]:
    """The JSON of every line whose checksum is right."""
    for raw in data.split(b"\n"):
        if len(raw) > 9 and raw[8:9] == b" ":
            payload = raw[9:]
            try:
                good = int(raw[:8], 16) == zlib.crc32(payload)
            except ValueError:
                continue
            if good:
                yield payload


def _decode(payloads: list[bytes]) -> list[Any]:
    try:
        return list(json.loads(b"[" + b",".join(payloads) + b"]"))
    except ValueError:  # a line with a right checksum but bad JSON: take the others one by one
        items = []
        for payload in payloads:
            try:
                items.append(json.loads(payload))
            except ValueError:
                continue
        return items


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

    def load(self, messages: dict[str, int], records: dict[str, int]) -> dict[str, Indexed]:
        """The records whose files are still those on disk (``messages``/``records``: id → inode)."""
        found: dict[str, Indexed] = {}
        count = 0
        with self.path.open("rb") as handle:
            handle.readline()
            for block in _blocks(handle):
                payloads = list(_payloads(block))
                count += len(payloads)
                for item in _decode(payloads):
                    try:
                        queue_id, eml_ino, env_ino, size, offset, fields = item
                        if messages.get(queue_id) != eml_ino or records.get(queue_id, 0) != env_ino:
                            found.pop(queue_id, None)  # an older line of a file since replaced
                            continue
                        record = _record(fields)
                        if record.queue_id != queue_id or not isinstance(size, int) or not isinstance(offset, int):
                            continue
                    except (TypeError, ValueError):
                        continue
                    found[queue_id] = (record, size, offset)
        self.lines = max(self.lines, count)
        return found

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

    def compact(self, live: set[str]) -> None:
        """Rewrite the file with only the last line of each message in ``live`` (on a worker thread).

        Lines appended meanwhile are carried over under the lock, so nothing written is left behind.
        """
        with self._lock:
            end = os.fstat(self._fd).st_size if self._fd >= 0 else 0
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
    """The queue id, the array's first element (ids are plain letters and digits)."""
    start = payload.find(b'"') + 1
    return payload[start:payload.find(b'"', start)].decode("ascii", "replace")
