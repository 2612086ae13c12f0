"""The Mailroot directory layout and the one set of rules for durable file I/O.

Invariants: a file appears under its final name only complete and fsynced (written in SortTemp,
fsynced, renamed, directory fsynced); SortTemp is on the same filesystem as the other directories.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SUBDIRS = ("Badmail", "Drop", "Pickup", "Queue", "SortTemp")


def new_id() -> str:
    """A unique, time-ordered id for queue entries and files (sorts by creation time)."""
    return f"{time.time_ns():x}{secrets.token_hex(4)}".upper()


def fsync_dir(path: Path) -> None:
    """Make renames and new entries in ``path`` durable (ext4 without a journal needs this)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write a file outside the Mailroot (configuration, certificate, key, users) atomically: a temp file
    beside it, 0600 from creation on, fsync, rename, directory fsync. A crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@dataclass(frozen=True)
class Mailroot:
    root: Path
    drop_override: Path | None = None
    badmail_override: Path | None = None

    @property
    def badmail(self) -> Path:
        return self.badmail_override or self.root / "Badmail"

    @property
    def drop(self) -> Path:
        return self.drop_override or self.root / "Drop"

    @property
    def pickup(self) -> Path:
        return self.root / "Pickup"

    @property
    def queue(self) -> Path:
        return self.root / "Queue"

    @property
    def sorttemp(self) -> Path:
        return self.root / "SortTemp"

    @property
    def corrupt(self) -> Path:
        """Unreadable queue records are moved here, never deleted."""
        return self.queue / "corrupt"

    @property
    def lock_file(self) -> Path:
        return self.root / "smtpsvc.lock"

    def create(self) -> None:
        for path in (self.badmail, self.drop, self.pickup, self.queue, self.sorttemp, self.corrupt):
            path.mkdir(parents=True, exist_ok=True)

    def temp_path(self, prefix: str = "tmp", suffix: str = "") -> Path:
        return self.sorttemp / f"{prefix}-{new_id()}{suffix}"

    def write_atomic(self, final: Path, data: bytes, *, sync: bool = True) -> int:
        """Write ``data`` to ``final`` via SortTemp + fsync + rename + directory fsync; returns its inode."""
        temp = self.temp_path("w")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if sync:
                os.fsync(fd)
            inode = os.fstat(fd).st_ino
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            os.replace(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if sync:
            fsync_dir(final.parent)
        return inode
