"""One engine per Mailroot: an exclusive advisory lock on Mailroot/smtpsvc.lock holding the owner's pid."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from engine.errors import MailrootLockedError


class MailrootLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, wait: float = 3.0) -> None:
        """Take the lock; a holder that lets go within ``wait`` seconds (a `smtpsvc queue` command) is waited for."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise MailrootLockedError(
                    f"the Mailroot {self.path.parent} is in use by another smtpsvc engine (pid {owner})"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
