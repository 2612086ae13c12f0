"""The Mailroot: its directories, the one rule that places them, and the one durable file writer.

Path rule (the only copy; validation, the engine, the window and the command line all use ``Mailroot.from_config``):
``mailroot`` is absolute with ``~`` expanded (empty = the user's data directory); ``badmail_dir`` and each local
domain's ``drop_dir`` have ``~`` expanded and, when relative, are taken inside the Mailroot (empty = Mailroot/Badmail,
and for Drop the default domain's Drop).

Invariant: a file appears under its final name only complete and fsynced. It is written under a hidden temporary
name in its *destination* directory (so Drop and Badmail may live on another filesystem), fsynced, renamed, and the
directory fsynced. SortTemp holds only spools, which the Committer renames into place or, across filesystems,
hands back to the caller (``commit.TargetUnavailable``).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

SUBDIRS = ("Badmail", "Drop", "Pickup", "Queue", "SortTemp")
ENGINE_DIRS = ("Pickup", "Queue", "SortTemp")  # the directories Drop and Badmail must never be
_TEMP = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


class DomainPaths(Protocol):
    """What the path rule reads of a domain (``engine.conf.config.DomainConfig``)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def drop_dir(self) -> str: ...


class ServerPaths(Protocol):
    @property
    def badmail_dir(self) -> str: ...


class PathSettings(Protocol):
    """What the path rule reads of a configuration (``engine.conf.config.Config``; store must not import conf)."""

    @property
    def mailroot(self) -> str: ...
    @property
    def server(self) -> ServerPaths: ...
    @property
    def effective_domains(self) -> Sequence[DomainPaths]: ...


def new_id() -> str:
    """A unique, time-ordered id for queue entries and files (sorts by creation time)."""
    return f"{time.time_ns():x}{secrets.token_hex(4)}".upper()


def default_mailroot() -> Path:
    import platformdirs

    return platformdirs.user_data_path("smtpsvc") / "Mailroot"


def mailroot_root(setting: str) -> Path:
    """The Mailroot directory of a ``mailroot`` setting: ``~`` expanded; empty = the user's data directory."""
    return Path(setting).expanduser() if setting else default_mailroot()


def inside_mailroot(root: Path, setting: str, default: str) -> Path:
    """A directory setting: empty = ``root/default``; ``~`` expanded; relative = inside ``root``."""
    return root / Path(setting).expanduser() if setting else root / default


def same_dir(a: Path, b: Path) -> bool:
    """Whether two paths name one directory, following symbolic links (they need not exist yet)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return os.path.normcase(a.resolve()) == os.path.normcase(b.resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop (RuntimeError before Python 3.13), a NUL
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies strictly below ``folder`` (symbolic links followed)."""
    try:
        inner, outer = path.resolve(), folder.resolve()
    except (OSError, RuntimeError, ValueError):
        inner, outer = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return inner != outer and inner.is_relative_to(outer)


def fsync_dir(path: Path) -> None:
    """Make renames and new entries in ``path`` durable (ext4 without a journal needs this)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    """A hidden temporary name beside ``final``: Pickup, Drop, Badmail and Queue listings all skip it."""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")


@contextlib.contextmanager
def durable_file(final: Path, *, sync: bool = True, sync_dir: bool = True, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Write ``final`` durably: yields a file under a temporary name in ``final``'s own directory; on a normal
    exit it is fsynced, renamed to ``final`` and (``sync_dir``) the directory fsynced. ``sync_dir=False`` leaves
    that last fsync to the caller, who may share it between writers (``Committer.sync_directory``).
    On an error the temporary file is removed and ``final`` is untouched."""
    temp = temp_name(final)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if sync and sync_dir:
        fsync_dir(final.parent)


def write_durable(final: Path, data: bytes, *, sync: bool = True, sync_dir: bool = True) -> int:
    """``data`` becomes ``final`` whole or not at all (see ``durable_file``); returns the file's inode."""
    with durable_file(final, sync=sync, sync_dir=sync_dir) as handle:
        handle.write(data)
        inode = os.fstat(handle.fileno()).st_ino
    return inode


def copy_durable(source: Path, final: Path, *, sync: bool = True) -> None:
    """Copy ``source`` to ``final`` (another filesystem is fine) with the same guarantee as ``write_durable``."""
    with source.open("rb") as src, durable_file(final, sync=sync) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def move_durable(source: Path, final: Path) -> None:
    """Move ``source`` to ``final`` durably: a rename on the same filesystem, else ``copy_durable`` and then
    ``source`` removed. Either way ``final`` is complete from the moment its name appears."""
    try:
        os.replace(source, final)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        copy_durable(source, final)
        source.unlink()
    else:
        fsync_dir(final.parent)


def write_private(path: Path, data: bytes) -> None:
    """Write a file outside the Mailroot (configuration, certificate, key, users) atomically: 0600 from creation
    on, in a directory created 0700. A crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_durable(path, data)


@dataclass
class Mailroot:
    """Where every directory of one virtual server is. ``root`` is fixed for the server's life; Badmail and the
    Drops follow the configuration (``reconfigure``), and every part holding this object sees the change."""

    root: Path
    badmail_dir: Path | None = None  # None = root/Badmail
    drops: tuple[tuple[str, Path], ...] = field(default=())  # (local domain, lower case; its Drop), default first
    _folders: tuple[tuple[Path, tuple[str, ...]], ...] = field(default=(), repr=False, compare=False)
    _by_domain: dict[str, Path] = field(default_factory=dict, repr=False, compare=False)  # drops, for lookups

    @classmethod
    def from_config(cls, config: PathSettings) -> Mailroot:
        mailroot = cls(mailroot_root(config.mailroot))
        mailroot.reconfigure(config)
        return mailroot

    def reconfigure(self, config: PathSettings) -> None:
        """Take Badmail and the Drops of ``config`` (its ``mailroot`` is not read: that needs a restart)."""
        root = self.root
        domains = sorted((d for d in config.effective_domains if d.type in ("default", "alias")),
                         key=lambda d: d.type != "default")
        default = next((d for d in domains if d.type == "default"), None)
        default_drop = inside_mailroot(root, default.drop_dir if default else "", "Drop")
        drops = tuple((d.name.lower(), inside_mailroot(root, d.drop_dir, "Drop") if d.drop_dir else default_drop)
                      for d in domains)
        folders: dict[Path, list[str]] = {}
        for domain, path in drops:
            key = next((known for known in folders if same_dir(known, path)), path)
            folders.setdefault(key, []).append(domain)
        badmail = config.server.badmail_dir
        self.badmail_dir = inside_mailroot(root, badmail, "Badmail") if badmail else None
        self.drops = tuple((domain, next(k for k, names in folders.items() if domain in names)) for domain, _ in drops)
        self._folders = tuple((path, tuple(names)) for path, names in folders.items())
        self._by_domain = dict(self.drops)

    @property
    def badmail(self) -> Path:
        return self.badmail_dir or self.root / "Badmail"

    @property
    def drop(self) -> Path:
        """The default domain's Drop (also every local domain's without a ``drop_dir`` of its own)."""
        return self.drops[0][1] if self.drops else self.root / "Drop"

    def drop_for(self, domain: str) -> Path:
        """The Drop of local domain ``domain`` (a name as configured, any case)."""
        return self._by_domain.get(domain.lower(), self.drop)

    def drop_folders(self) -> tuple[tuple[Path, tuple[str, ...]], ...]:
        """Every Drop directory in use, once, with the local domains delivering into it (the default's first).
        The first domain names the directory in listings (``drop_label``)."""
        return self._folders or ((self.drop, ("",)),)

    def drop_label(self, folder: Path) -> str:
        """The domain that names Drop directory ``folder`` (a path ``drop_for`` gave); "" when unknown."""
        return next((names[0] for path, names in self._folders if path == folder), "")

    def conflicts(self) -> list[tuple[str, str]]:
        """Why Badmail or a Drop is misplaced, as (``badmail_dir`` or the domain's name, sentence).

        A Badmail or Drop that is Pickup would loop forever (each file picked up and written there again);
        Queue and SortTemp would be read as queue entries or swept. A Drop inside another domain's Drop would
        mix two domains' listings."""
        engine = [(name, self.root / name) for name in ENGINE_DIRS]
        problems: list[tuple[str, str]] = []
        clash = next((name for name, path in engine if same_dir(self.badmail, path)), None)
        if clash:
            problems.append(("badmail_dir", f"must not be the Mailroot's {clash} directory"))
        for domain, path in self.drops:
            clash = next((name for name, path_ in [*engine, ("Badmail", self.badmail)] if same_dir(path, path_)),
                         None)
            if clash:
                problems.append((domain, f"the Drop directory must not be the Mailroot's {clash} directory"
                                 if clash != "Badmail" else "the Drop directory must not be the Badmail directory"))
            outer = next((other for other, path_ in self.drops if other != domain and is_inside(path, path_)), None)
            if outer:
                problems.append((domain, f"the Drop directory must not be inside the Drop directory of {outer}"))
        return problems

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
        folders = (self.badmail, *(path for _, path in self.drops), self.drop, self.pickup, self.queue,
                   self.sorttemp, self.corrupt)
        for path in folders:
            # Mail is private: new directories 0700 (an existing one keeps the mode its owner gave it, e.g.
            # a Drop opened to a reader's group).
            path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def sweep_temps(self, *, queue: bool = True) -> list[Path]:
        """Remove the temporary files a crash left in Badmail, the Drops and (unless ``queue`` is false: the
        queue's recovery does it from its own listing, see ``remove_temps``) Queue; none is ever referenced."""
        removed: list[Path] = []
        folders = {self.badmail, *(path for path, _ in self.drop_folders())} | ({self.queue} if queue else set())
        for folder in folders:
            try:  # names only (a Queue of 100,000 messages: no object per file), the hidden ones looked at
                hidden = [name for name in os.listdir(folder) if name[:1] == "."]
            except OSError:
                continue
            removed += remove_temps(folder, hidden)
        return removed

    def write_atomic(self, final: Path, data: bytes, *, sync: bool = True) -> int:
        """Write ``data`` to ``final`` durably, wherever ``final`` is (``write_durable``); returns its inode."""
        return write_durable(final, data, sync=sync)


def remove_temps(folder: Path, names: Iterable[str], before: float = math.inf) -> list[Path]:
    """Remove the temporary files among ``names`` (of ``folder``) last written before ``before`` (``time.time()``):
    with the engine's start as ``before``, only what a crash left, never a write of the running engine."""
    removed: list[Path] = []
    for name in names:
        if not _TEMP.fullmatch(name):
            continue
        path = folder / name
        with contextlib.suppress(OSError):
            status = os.lstat(path)
            if stat.S_ISREG(status.st_mode) and status.st_mtime < before:
                os.unlink(path)
                removed.append(path)
    return removed


def join_drop_ref(domain: str, name: str) -> str:
    """How the window and the facade name a Drop file: ``domain/file``; a bare ``file`` is in the default Drop."""
    return f"{domain}/{name}" if domain else name


def split_drop_ref(ref: str) -> tuple[str, str]:
    """(domain, file name) of a Drop reference; the domain is "" for a bare file name (the default Drop)."""
    domain, _, name = ref.rpartition("/")
    return domain, name


def drop_ref(mailroot: Mailroot, path: Path) -> str:
    """The reference of Drop file ``path`` (in a directory ``drop_for`` gave)."""
    return join_drop_ref(mailroot.drop_label(path.parent), path.name)
