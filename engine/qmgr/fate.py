"""A queued message's fate as data: which recipients an attempt holds, how each recipient moves, what follows.

Pure functions over typed states; the queue entry only stores their results (``QueueEntry.claim``/``release``).

Claims: a delivery attempt (remote or local), a notice or the administrator's bounce first claims the recipients
it will act on. It is granted only the recipients no other claim holds, so two attempts never act on the same
recipient at once (the cause of a message sent twice when a Retry Now came while local delivery ran). A *whole*
claim (finishing a message, Bounce Now) is granted only when nothing is held, and nothing is granted beside it.
A claim is released by its attempt's outcome, once.

Recipients: ``pending`` until an outcome makes them ``delivered`` or ``failed``; a final recipient never changes.

After an attempt, ``settle`` decides the rest from the recipients and the schedule's decision: who expires,
which notices go to the sender, when the next attempt is, or whether the message leaves the queue. The
administrator's Bounce Now and the delay notice between attempts ask it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from engine.qmgr.schedule import Decision
from engine.store.envelope import RECIPIENT_STATUSES, RecipientStatus

Owner = Literal["remote", "local", "notice", "finish", "bounce"]
Status = RecipientStatus  # a recipient, as stored in its state record
Event = Literal["delivered", "failed", "deferred", "expired", "bounced"]  # what can happen to a recipient

STATUSES: tuple[Status, ...] = RECIPIENT_STATUSES
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


_OUTCOME_EVENTS: dict[str, Event] = {"delivered": "delivered", "failed": "failed", "deferred": "deferred"}


def outcome_event(outcome: str) -> Event:
    """The event of an SMTP outcome (engine.smtp.outbound's delivered | failed | deferred)."""
    try:
        return _OUTCOME_EVENTS[outcome]
    except KeyError:
        raise ValueError(f"unknown outcome {outcome!r}") from None


@dataclass(frozen=True)
class Seen:
    """A recipient as ``settle`` sees it."""

    address: str
    status: Status
    reported: bool  # its final outcome was already told (NDR, success notice, Badmail)


@dataclass(frozen=True)
class Settlement:
    """What follows from an attempt's outcomes: each notice once, the next attempt, or the message's departure."""

    expire: tuple[str, ...]  # the attempt's pending recipients whose time ran out: they fail now
    failure: tuple[str, ...]  # the non-delivery report is for these (failed and not yet told, the expired too)
    relay: tuple[str, ...]  # delivered to a next hop that takes no DSN request: "relayed" notices
    delay: tuple[str, ...]  # the delay notice is for these (it is due now)
    retry_at: float | None  # the next attempt of the attempt's pending recipients (None: none pending)
    wake_at: float | None  # when to look at the message again (None: nothing of this attempt is due later)
    leaves: Literal["delivered", "returned"] | None  # nothing is pending any more: it leaves the queue, why
    bounce: tuple[str, ...] = ()  # the pending recipients the administrator's Bounce Now fails now


def settle(recipients: Sequence[Seen], waiting: frozenset[str], relayed: frozenset[str], decision: Decision,
           now: float, *, bounce: bool = False) -> Settlement:
    """The fate of a message after one attempt, for the attempt's own recipients that still wait (``waiting``).

    The schedule's ``decision`` says whether their time ran out or a delay notice is due; ``bounce`` (Bounce
    Now) fails them at once whatever the schedule says. The caller carries out the result (status changes,
    notices, state write or removal) in this order."""
    own = [r.address for r in recipients if r.status == "pending" and r.address in waiting]
    bounced = tuple(own) if own and bounce else ()
    expire = tuple(own) if own and decision.expired and not bounce else ()
    gone = expire + bounced
    still = [] if gone else own
    failure = tuple(r.address for r in recipients if r.status == "failed" and not r.reported) + gone
    delay = tuple(still) if still and decision.send_delay_notice else ()
    retry_at = (decision.retry_at if decision.retry_at is not None else now) if still else None
    # Once the delay notice is sent, the next thing due is the next attempt.
    wake_at = (retry_at if delay else decision.wake_at if decision.wake_at is not None else retry_at) \
        if still else None
    left = any(r.status == "pending" and r.address not in gone for r in recipients)
    return Settlement(expire, failure, tuple(r.address for r in recipients if r.address in relayed), delay,
                      retry_at, wake_at, None if left else "returned" if failure else "delivered", bounced)
