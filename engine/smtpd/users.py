"""The users file of Basic authentication: account names with salted, memory-hard password hashes (scrypt).

Format: one account per line, ``name:scrypt$N$r$p$salt$hash`` (salt and hash in unpadded base64), ``#``
comments allowed; written atomically with mode 0600. Names are compared case-insensitively. A store made with
``roles`` (the operators file) keeps each account's role between the two: ``name:role:scrypt$...``.

Invariants: no password is ever stored, logged or returned; a check of an unknown name costs what the
check of a known one costs (a dummy hash is verified), so timing does not tell which names exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError
from engine.store.mailroot import write_private

SCRYPT_N = 2**14  # 16 MiB of memory per check with r = 8
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_PASSWORD = 1024
MAX_NAME = 256
MAXMEM = 64 * 1024 * 1024


class UserError(EngineError, ValueError):
    """A bad name, password or users file; ``str`` is one sentence for the user."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$N$r$p$salt$hash`` of ``password`` with a new random salt."""
    password_problem(password)
    salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAXMEM, dklen=KEY_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; a malformed record never matches."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        actual = hashlib.scrypt(password.encode("utf-8", "surrogateescape")[:MAX_PASSWORD * 4],
                                salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=MAXMEM,
                                dklen=len(expected))
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


_DUMMY = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'smtpsvc-dummy-ss')}${_b64(bytes(KEY_BYTES))}"


def name_problem(name: str) -> None:
    if not name or len(name) > MAX_NAME:
        raise UserError(f"a user name has 1 to {MAX_NAME} characters")
    if any(c in ":#" or c.isspace() or not c.isprintable() for c in name):
        raise UserError(f"{name!r}: a user name has no spaces, control characters, ':' or '#'")


def password_problem(password: str) -> None:
    if not password:
        raise UserError("the password is empty")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password is longer than {MAX_PASSWORD} characters")
    if "\0" in password or "\n" in password or "\r" in password:
        raise UserError("the password contains NUL, CR or LF")


USERS_NAME = "smtpsvc-users"  # the users file the first `smtpsvc user add` makes beside the configuration file
Record = tuple[str, str, str]  # (name as written, encoded hash, role or "")


def parse_users(text: str, roles: tuple[str, ...] = ()) -> dict[str, Record]:
    """casefolded name -> (name as written, encoded hash, role); raises UserError naming the bad line."""
    users: dict[str, Record] = {}
    form = "name:role:scrypt$N$r$p$salt$hash" if roles else "name:scrypt$N$r$p$salt$hash"
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, encoded = line.partition(":")
        role = ""
        if roles:
            role, _, encoded = encoded.partition(":")
        if not colon or not encoded.startswith("scrypt$") or encoded.count("$") != 5 or (roles and role not in roles):
            raise UserError(f"line {number} is not '{form}'")
        users[name.casefold()] = (name, encoded, role)
    return users


@dataclass(frozen=True)
class _Snapshot:
    stamp: tuple[int, int, int] | None
    users: dict[str, Record]
    error: str


class UserStore:
    """One users file; reads it again when it changes (the command line edits it while the engine runs).

    ``roles``: the roles an account may have (the first is the default); empty = accounts without roles."""

    def __init__(self, path: Path, *, roles: tuple[str, ...] = (), kind: str = "user",
                 command: str = "smtpsvc user") -> None:
        self.path = path
        self.roles = roles
        self.kind = kind  # "user" or "operator": the word in messages
        self._command = command
        self._snapshot: _Snapshot | None = None

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _current(self) -> _Snapshot:
        stamp = self._stamp()
        snapshot = self._snapshot
        if snapshot is None or snapshot.stamp != stamp:
            try:
                users = parse_users(self.path.read_text("utf-8"), self.roles) if stamp is not None else {}
                snapshot = _Snapshot(stamp, users, "")
            except (OSError, UnicodeDecodeError, UserError) as error:
                snapshot = _Snapshot(stamp, {}, f"the {self.kind}s file {self.path} cannot be read: {error}")
            self._snapshot = snapshot
        return snapshot

    @property
    def error(self) -> str:
        return self._current().error

    def names(self) -> list[str]:
        return sorted((entry[0] for entry in self._current().users.values()), key=str.casefold)

    def record(self, name: str) -> str | None:
        entry = self._current().users.get(name.casefold())
        return entry[1] if entry else None

    def role(self, name: str) -> str | None:
        """The account's role ("" in a store without roles); None when there is no such account."""
        entry = self._current().users.get(name.casefold())
        return entry[2] if entry else None

    def canonical(self, name: str) -> str | None:
        """The account's name as written in the file."""
        entry = self._current().users.get(name.casefold())
        return entry[0] if entry else None

    def check(self, name: str, password: str) -> bool:
        """Blocking (tens of milliseconds of CPU): run it off the event loop."""
        encoded = self.record(name)
        matched = verify_password(password, encoded or _DUMMY)
        return matched and encoded is not None

    # -- changes (the command line and the facade) -----------------------------------------------------------

    def _load_for_change(self) -> dict[str, Record]:
        try:
            return parse_users(self.path.read_text("utf-8"), self.roles)
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"the {self.kind}s file {self.path} cannot be read: {error}") from error

    def _save(self, users: dict[str, Record]) -> None:
        form = "name:role:scrypt$N$r$p$salt$hash" if self.roles else "name:scrypt$N$r$p$salt$hash"
        lines = [f"# smtpsvc {self.kind}s: {form} (manage with `{self._command}`)"]
        lines += [f"{name}:{role}:{encoded}" if self.roles else f"{name}:{encoded}"
                  for name, encoded, role in sorted(users.values(), key=lambda u: u[0].casefold())]
        write_private(self.path, ("\n".join(lines) + "\n").encode("utf-8"))
        self._snapshot = None

    def add(self, name: str, password: str, role: str = "") -> None:
        name_problem(name)
        role = self._checked_role(role)
        users = self._load_for_change()
        if name.casefold() in users:
            raise UserError(f"the {self.kind} {name!r} exists already (use passwd to change the password)")
        users[name.casefold()] = (name, hash_password(password), role)
        self._save(users)

    def _checked_role(self, role: str) -> str:
        if not self.roles:
            return ""
        if not role:
            return self.roles[0]
        if role not in self.roles:
            raise UserError(f"{role!r} is not a role; use one of {', '.join(self.roles)}")
        return role

    def set_password(self, name: str, password: str) -> None:
        users = self._load_for_change()
        if name.casefold() not in users:
            raise UserError(f"there is no {self.kind} {name!r}")
        old = users[name.casefold()]
        users[name.casefold()] = (old[0], hash_password(password), old[2])
        self._save(users)

    def set_role(self, name: str, role: str) -> None:
        """Give the account another role (a store with roles: the operators file)."""
        if not self.roles:
            raise UserError(f"{self.kind}s have no roles")
        role = self._checked_role(role)
        users = self._load_for_change()
        if name.casefold() not in users:
            raise UserError(f"there is no {self.kind} {name!r}")
        old = users[name.casefold()]
        users[name.casefold()] = (old[0], old[1], role)
        self._save(users)

    def delete(self, name: str) -> None:
        users = self._load_for_change()
        if users.pop(name.casefold(), None) is None:
            raise UserError(f"there is no {self.kind} {name!r}")
        self._save(users)
