"""Linux inotify through ctypes: a non-blocking descriptor for ``loop.add_reader``, a pure event decoder."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from dataclasses import dataclass
from functools import cache
from types import TracebackType

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name
_READ_SIZE = 64 * 1024  # many events per read; always more than one event with a 255-byte name


@dataclass(frozen=True)
class InotifyEvent:
    wd: int  # -1 for IN_Q_OVERFLOW
    mask: int
    cookie: int
    name: str  # "" for events on the watched directory itself


def decode_events(buffer: bytes) -> list[InotifyEvent]:
    """Decode the events of one read(); the kernel returns whole events only."""
    events: list[InotifyEvent] = []
    offset = 0
    while offset + _HEADER.size <= len(buffer):
        wd, mask, cookie, length = _HEADER.unpack_from(buffer, offset)
        offset += _HEADER.size
        raw = buffer[offset : offset + length].split(b"\0", 1)[0]  # the name is NUL-padded
        offset += length
        events.append(InotifyEvent(wd, mask, cookie, os.fsdecode(raw)))
    return events


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library this interpreter already uses
        init1, add_watch, rm_watch = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
    except (OSError, AttributeError):
        return None
    init1.argtypes, init1.restype = [ctypes.c_int], ctypes.c_int
    add_watch.argtypes, add_watch.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    rm_watch.argtypes, rm_watch.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


def _os_error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def available() -> bool:
    """Whether an inotify instance can be made here and now (Linux, and under the per-user limit)."""
    try:
        Inotify().close()
    except OSError:
        return False
    return True


class Inotify:
    """One inotify instance; its descriptor is non-blocking and close-on-exec."""

    def __init__(self) -> None:
        libc = _libc()
        if libc is None:
            raise OSError(errno.ENOSYS, "inotify is not available on this system")
        self._libc = libc
        fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0:
            raise _os_error("inotify_init1")
        self._fd = fd

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("inotify instance is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        """Watch ``path`` for the events in ``mask``; returns the watch descriptor."""
        wd = int(self._libc.inotify_add_watch(self.fileno(), os.fsencode(path), mask))
        if wd < 0:
            raise _os_error(f"inotify_add_watch {os.fspath(path)!r}")
        return wd

    def rm_watch(self, wd: int) -> None:
        if self._libc.inotify_rm_watch(self.fileno(), wd) < 0:
            raise _os_error("inotify_rm_watch")

    def read_events(self) -> list[InotifyEvent]:
        """The events ready now; [] when there are none (never blocks)."""
        try:
            buffer = os.read(self.fileno(), _READ_SIZE)
        except BlockingIOError:
            return []
        return decode_events(buffer)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
