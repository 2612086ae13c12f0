"""Who is acting on the engine: a remote operator for the request being served, else the local account.

A context variable, so the name follows one admin request through every await into the facade without
being passed by hand; the event log writes it beside each configuration change (IIS: who changed what).
"""

from __future__ import annotations

import getpass
import os
from contextvars import ContextVar

ACTOR: ContextVar[str | None] = ContextVar("smtpsvc_actor", default=None)


def local_account() -> str:
    """The account this engine runs as (the window, `smtpsvc config` and the control socket act as it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the number says who
        return str(os.getuid())


def current_actor() -> str:
    """"boss (remote, 127.0.0.1)" inside an admin request, "alice (local)" otherwise."""
    return ACTOR.get() or f"{local_account()} (local)"
