"""Operating-system errors as sentences a person can act on: a port in use, a Mailroot that cannot be made."""

from __future__ import annotations

import errno
import os
from pathlib import Path

_BIND: dict[int, str] = {
    errno.EADDRINUSE: "the address is already in use: another program (or another smtpsvc) listens there. "
                      "Stop it, or choose another port with --listen HOST:PORT or `smtpsvc config set listen`",
    errno.EADDRNOTAVAIL: "this computer has no such IP address. Use one of its own addresses, 127.0.0.1, "
                         "or 0.0.0.0 for all of them",
    errno.EACCES: "permission denied: ports below 1024 need administrator rights (or the "
                  "CAP_NET_BIND_SERVICE capability). Use a port above 1023, such as 2525",
}
_PATH: dict[int, str] = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the filesystem is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.ENAMETOOLONG: "the path is too long",
    errno.ELOOP: "too many symbolic links in the path",
}


def bind_failure(address: str, error: OSError) -> str:
    """Why listening on ``address`` failed, e.g. "cannot listen on 127.0.0.1:25: the address is in use…"."""
    why = _BIND.get(error.errno or 0) or _plain(error)
    return f"cannot listen on {address}: {why}"


def mailroot_failure(path: Path, error: OSError) -> str:
    """Why the Mailroot directory ``path`` (or one inside it) cannot be created or used."""
    return f"cannot use the Mailroot {path}: {_path_reason(path, error)}. " \
           "Choose another place with --mailroot DIR or `smtpsvc config set mailroot DIR`"


def _path_reason(path: Path, error: OSError) -> str:
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = _first_non_directory(path)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    if error.errno == errno.ENOENT:
        missing = _first_missing(path)
        if missing is not None:
            return f"{missing.parent} does not allow creating {missing.name!r} in it"
    return _PATH.get(error.errno or 0) or _plain(error)


def _first_non_directory(path: Path) -> Path | None:
    for candidate in (*reversed(path.parents), path):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def _first_missing(path: Path) -> Path | None:
    for candidate in (*reversed(path.parents), path):
        if not candidate.exists():
            return candidate
    return None


def _plain(error: OSError) -> str:
    """The system's own short text ("No such device"), without the Python decoration around it."""
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__
