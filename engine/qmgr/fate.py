"""A queued message's fate as data: which recipients an attempt holds (claims) and how each recipient moves.

Pure functions over typed states; the queue entry only stores their results (``QueueEntry.claim``/``release``).

Claims: a delivery attempt (remote or local), a notice or the administrator's bounce first claims the recipients
it will act on. It is granted only the recipients no other claim holds, so two attempts never act on the same
recipient at once (the cause of a message sent twice when a Retry Now came while local delivery ran). A *whole*
claim (finishing a message, Bounce Now) is granted only when nothing is held, and nothing is granted beside it.
A claim is released by its attempt's outcome, once.

Recipients: ``pending`` until an outcome makes them ``delivered`` or ``failed``; a final recipient never changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

Owner = Literal["remote", "local", "notice", "finish", "bounce"]
Status = Literal["pending", "delivered", "failed"]  # a recipient, as stored in its state record
Event = Literal["delivered", "failed", "deferred", "expired", "bounced"]  # what can happen to a recipient

STATUSES: tuple[Status, ...] = get_args(Status)
EVENTS: tuple[Event, ...] = get_args(Event)


@dataclass(frozen=True, eq=False)
class Claim:
    """Recipients one attempt acts on until its outcome; compared by identity (two claims are never equal)."""

    owner: Owner
    addresses: frozenset[str]
    whole: bool = False  # the whole message: nothing else is granted while it is held

    def covers(self, address: str) -> bool:
        return self.whole or address in self.addresses


Held = tuple[Claim, ...]


class ClaimError(RuntimeError):
    """A claim was released that is not held (released twice, or someone else's): a bug, said loudly."""


def claimed(held: Held) -> frozenset[str]:
    """Every recipient some claim holds."""
    return frozenset().union(*(claim.addresses for claim in held))


def take(held: Held, owner: Owner, wanted: Iterable[str], *, whole: bool = False) -> tuple[Claim | None, Held]:
    """Claim for ``owner`` the recipients of ``wanted`` that nobody holds: (the claim or None, claims after).

    Nothing is granted while a whole claim is held; a whole claim only when nothing is held; a partial claim
    gets the free part of ``wanted``, and nothing (None) when that part is empty."""
    if any(claim.whole for claim in held) or (whole and held):
        return None, held
    addresses = frozenset(wanted)
    if not whole:
        addresses -= claimed(held)
        if not addresses:
            return None, held
    claim = Claim(owner, addresses, whole)
    return claim, (*held, claim)


def release(held: Held, claim: Claim) -> Held:
    """The claims after ``claim``'s attempt ended."""
    if not any(other is claim for other in held):
        raise ClaimError(f"a {claim.owner} claim released but not held")
    return tuple(other for other in held if other is not claim)


def cancelled(held: Held, owners: Iterable[Owner]) -> Held:
    """The claims left when every attempt of ``owners`` was cancelled (a stop): theirs go, others stay."""
    gone = set(owners)
    return tuple(claim for claim in held if claim.owner not in gone)


# (status, event) -> status. Missing pairs are final recipients: they never change (see step()).
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    ("pending", "delivered"): "delivered",
    ("pending", "failed"): "failed",
    ("pending", "deferred"): "pending",
    ("pending", "expired"): "failed",
    ("pending", "bounced"): "failed",
}


def step(status: Status, event: Event) -> Status:
    """A recipient's status after ``event``; delivered and failed are final (an outcome never undoes one)."""
    return TRANSITIONS.get((status, event), status)


_STATUSES: dict[str, Status] = {status: status for status in STATUSES}


def status_of(text: str) -> Status:
    """A stored status read back as the typed one."""
    try:
        return _STATUSES[text]
    except KeyError:
        raise ValueError(f"unknown recipient status {text!r}") from None


_OUTCOME_EVENTS: dict[str, Event] = {"delivered": "delivered", "failed": "failed", "deferred": "deferred"}


def outcome_event(outcome: str) -> Event:
    """The event of an SMTP outcome (engine.smtp.outbound's delivered | failed | deferred)."""
    try:
        return _OUTCOME_EVENTS[outcome]
    except KeyError:
        raise ValueError(f"unknown outcome {outcome!r}") from None
