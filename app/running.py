"""Which engine serves a configuration file now: `smtpsvc serve` and the window note their Mailroot beside the
file (``.NAME.engine``), so that `smtpsvc config set` and `smtpsvc queue` find an engine started with
``--mailroot`` — whose Mailroot the file does not name.

A note is only a hint: it counts while the engine it names answers on that Mailroot's control socket with
the process id it wrote (a stopped or killed engine's note, or another engine on that Mailroot, is ignored).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from engine.admin.control import request_sync, socket_path
from engine.errors import EngineError
from engine.store.mailroot import write_private

log = logging.getLogger(__name__)


def note_path(config_path: Path) -> Path:
    path = config_path.expanduser().resolve()
    return path.with_name(f".{path.name}.engine")


def write_note(config_path: Path, mailroot: Path) -> None:
    """Note that this process serves ``config_path`` on ``mailroot`` (said, not raised, when it cannot)."""
    data = json.dumps({"mailroot": str(mailroot.resolve()), "pid": os.getpid()})
    try:
        write_private(note_path(config_path), data.encode())
    except OSError as error:
        log.warning("cannot note the running engine beside %s (%s): `smtpsvc config set` finds it only through "
                    "the Mailroot the file names", config_path, error.strerror or error)


def _read(config_path: Path) -> tuple[Path, int] | None:
    try:
        data = json.loads(note_path(config_path).read_text("utf-8"))
        return Path(data["mailroot"]), int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_note(config_path: Path) -> None:
    """Remove this process's note (one written by another process since is left alone)."""
    noted = _read(config_path)
    if noted is not None and noted[1] == os.getpid():
        with contextlib.suppress(OSError):
            note_path(config_path).unlink()


def running_mailroot(config_path: Path) -> Path | None:
    """The Mailroot of the engine serving ``config_path`` now, when its note says so and it answers."""
    noted = _read(config_path)
    if noted is None:
        return None
    mailroot, pid = noted
    try:
        state = request_sync(socket_path(mailroot), "state", timeout=10)
    except (EngineError, OSError):
        return None
    return mailroot if isinstance(state, dict) and state.get("pid") == pid else None
