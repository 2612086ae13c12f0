"""One engine per Mailroot: an exclusive advisory lock on the Mailroot directory itself, with the owner's pid
in Mailroot/smtpsvc.lock. (Locking the directory, not the file, means a lock file deleted under a running
engine cannot let a second engine in.)"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from engine.errors import MailrootLockedError


class MailrootLock:
    def __init__(self, path: Path) -> None:
        self.path = path  # the pid file, inside the Mailroot that is locked
        self._fd: int | None = None  # the Mailroot directory, locked

    def acquire(self, wait: float = 3.0) -> None:
        """Take the lock; a holder that lets go within ``wait`` seconds (a `smtpsvc queue` command) is waited for."""
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(fd)
                raise MailrootLockedError(
                    f"the Mailroot {self.path.parent} is in use by another smtpsvc engine (pid {self._owner()})"
                ) from None
        try:
            pid_fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(pid_fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(pid_fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def _owner(self) -> str:
        try:
            return self.path.read_text("ascii", "replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
