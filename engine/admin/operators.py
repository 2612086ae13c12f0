"""The Operators: accounts allowed to administer remotely, their roles, and what each role may do.

The operators file has the users file's format and code (engine.smtpd.users) with a role per account:
``name:role:scrypt$...``, mode 0600. ``admin`` may run every op; ``viewer`` only the ops the op table marks
"read" (lists, counters, logs); ``poster`` no op at all: it may only post messages (``POST /post``, the
Posting Acceptor) and see the upload page — the IIS Posting Acceptor's "account allowed to post".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from engine.admin.control_ops import OPS, Access
from engine.errors import StateError
from engine.smtpd.users import UserStore

Role = Literal["admin", "viewer", "poster"]
ROLES: tuple[Role, ...] = ("admin", "viewer", "poster")  # the first is the default of `smtpsvc operator add`
OPERATORS_NAME = "smtpsvc-operators"

_ALLOWED: dict[str, frozenset[Access]] = {"admin": frozenset({"read", "change"}), "viewer": frozenset({"read"}),
                                          "poster": frozenset()}
_POSTERS = frozenset({"admin", "poster"})  # who may post messages (a viewer changes nothing, mail included)
# The only paths of the admin server a poster may reach (beside /login and /static/, which need no login).
_POSTER_PATHS = frozenset({"/post", "/upload", "/logout"})


def operator_store(path: Path) -> UserStore:
    return UserStore(path, roles=ROLES, kind="operator", command="smtpsvc operator")


def may(role: str, access: Access) -> bool:
    """Whether an operator of ``role`` may run an op of ``access``; an unknown role may do nothing."""
    return access in _ALLOWED.get(role, frozenset())


def may_run(role: str, op: str) -> bool:
    spec = OPS.get(op)
    return spec is not None and may(role, spec.access)


def may_post(role: str) -> bool:
    """Whether an operator of ``role`` may post messages (the Posting Acceptor)."""
    return role in _POSTERS


def may_visit(role: str, path: str) -> bool:
    """Whether an operator of ``role`` may reach ``path`` of the admin server at all (before any op check):
    a poster only the Posting Acceptor and its upload page; an unknown role nothing."""
    if role == "poster":
        return path in _POSTER_PATHS
    return role in _ALLOWED


def home(role: str) -> str:
    """The page an operator lands on after logging in."""
    return "/upload" if role == "poster" else "/"


def _keep_an_admin(store: UserStore, name: str) -> None:
    """StateError when ``name`` is the only admin (nobody could administer remotely any more without it)."""
    admins = [n for n in store.names() if store.role(n) == "admin"]
    if store.role(name) == "admin" and len(admins) == 1:
        raise StateError(f"{store.canonical(name)} is the last admin operator; add another admin first")


def delete_operator(store: UserStore, name: str) -> None:
    """Delete an operator, unless that leaves no admin."""
    _keep_an_admin(store, name)
    store.delete(name)


def set_operator_role(store: UserStore, name: str, role: str) -> None:
    """Give an operator another role, unless that leaves no admin."""
    if role != "admin":
        _keep_an_admin(store, name)
    store.set_role(name, role)
