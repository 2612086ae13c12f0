"""Reading the Queue back at start: one directory listing, then each message's head and state record, in chunks.

Pure reading (no file is changed here): the caller decides what to do with unreadable files and orphan
records. Chunks run on worker threads while the engine already serves; a file that vanished meanwhile
(delivered or deleted by the running engine) is simply skipped.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.store.envelope import MAX_ENVELOPE_BYTES, EnvelopeError, RecipientState, StateRecord, split_envelope

HEAD_READ = 64 << 10  # the first read of a message file; more only when its envelope lines go on beyond it
RECORD_READ = 1 << 20


@dataclass(slots=True)
class Listing:
    """What one pass over Queue/ found: messages and state records (id → inode), ids oldest first."""

    messages: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # message ids, sorted (ids sort by arrival)
    hidden: list[str] = field(default_factory=list)  # names starting with "." (temporary files, see remove_temps)

    def orphans(self) -> list[str]:
        """State records whose message is gone (delivered, its record not yet removed when it crashed)."""
        return sorted(self.records.keys() - self.messages.keys())


@dataclass(slots=True)
class Loaded:
    queue_id: str
    record: StateRecord
    size: int
    offset: int
    eml_ino: int
    env_ino: int  # 0: no state record file (or an unreadable one)
    bad_record: str = ""  # why the .env was unreadable ("" = fine or absent); the record then comes from the head
    fields: bytes = b""  # the record encoded as in the index (set by the reader that indexes it), kept cold


@dataclass(slots=True)
class Unreadable:
    queue_id: str
    reason: str


def scan(queue_dir: Path) -> Listing:
    listing = Listing()
    with os.scandir(queue_dir) as entries:
        messages, records, hidden = listing.messages, listing.records, listing.hidden
        for entry in entries:  # (100,000s of files: as little as possible per name)
            name = entry.name
            suffix = name[-4:]
            if suffix == ".eml":
                messages[name[:-4]] = entry.inode()
            elif suffix == ".env":
                records[name[:-4]] = entry.inode()
            elif name[:1] == ".":
                hidden.append(name)
    listing.order = sorted(listing.messages)
    return listing


def read_chunk(queue_dir: Path, ids: Iterable[str], records: Container[str]) -> list[Loaded | Unreadable]:
    """Read these messages (heads and, where ``records`` has them, state records); vanished ones are left out."""
    results: list[Loaded | Unreadable] = []
    dir_fd = os.open(queue_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for queue_id in ids:
            try:
                results.append(_read_one(dir_fd, queue_id, queue_id in records))
            except FileNotFoundError:
                continue
            except (OSError, EnvelopeError) as error:
                results.append(Unreadable(queue_id, str(error)))
    finally:
        os.close(dir_fd)
    return results


def _open_regular(name: str, dir_fd: int) -> int:
    """Open a queue file for reading: never through a symbolic link, never blocking on a FIFO (either is
    someone else's file in the queue: an OSError, so it goes to Queue/corrupt)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", name)
    return fd


def _read_one(dir_fd: int, queue_id: str, has_record: bool) -> Loaded:
    fd = _open_regular(queue_id + ".eml", dir_fd)
    try:
        status = os.fstat(fd)
        head = os.read(fd, HEAD_READ)
        sender, recipients, offset = split_envelope(head)
        if len(head) == HEAD_READ and head.find(b"\n", offset) < 0:
            # The envelope lines may go on past the first read: parse again with all of them.
            head += os.read(fd, MAX_ENVELOPE_BYTES - len(head))
            sender, recipients, offset = split_envelope(head)
    finally:
        os.close(fd)
    size = status.st_size - offset
    bad = ""
    if has_record:
        try:
            data, env_ino = _read_all(dir_fd, queue_id + ".env")
            record = _parse_record(data)
            if record.queue_id == queue_id:
                return Loaded(queue_id, record, size, offset, status.st_ino, env_ino)
        except FileNotFoundError:
            pass
        except (OSError, EnvelopeError) as error:  # a bad record never costs the message: it is rebuilt
            bad = str(error)
    record = StateRecord(queue_id, sys.intern(sender), [RecipientState(r) for r in recipients], status.st_mtime)
    return Loaded(queue_id, record, size, offset, status.st_ino, 0, bad)


def _read_all(dir_fd: int, name: str) -> tuple[bytes, int]:
    """The file's bytes and its inode."""
    fd = _open_regular(name, dir_fd)
    try:
        ino = os.fstat(fd).st_ino
        data = os.read(fd, RECORD_READ)
        while len(data) % RECORD_READ == 0 and data:
            more = os.read(fd, RECORD_READ)
            if not more:
                break
            data += more
        return data, ino
    finally:
        os.close(fd)


def _parse_record(data: bytes) -> StateRecord:
    """The state record, with its repeated strings (sender, states, errors, hosts) shared between messages."""
    record = StateRecord.from_bytes(data)
    intern = sys.intern
    record.sender = intern(record.sender)
    record.source = intern(record.source)
    record.last_error = intern(record.last_error)
    for rcpt in record.recipients:
        rcpt.last_error = intern(rcpt.last_error)
        rcpt.enhanced = intern(rcpt.enhanced)
        rcpt.remote = intern(rcpt.remote)
        rcpt.notify = intern(rcpt.notify)
    return record
