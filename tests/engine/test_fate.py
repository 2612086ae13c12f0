"""engine.qmgr.fate: the claim rules and the recipient transitions, as tables."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.qmgr import fate
from engine.qmgr.fate import Claim, ClaimError, Seen, Settlement, claimed, release, settle, step, take
from engine.qmgr.schedule import Decision

A, B, C = "a@x.test", "b@x.test", "c@y.test"


# (held before, owner, wanted, whole) -> (granted addresses or None, addresses held after)
CLAIMS: list[tuple[list[tuple[frozenset[str], bool]], list[str], bool, frozenset[str] | None, frozenset[str]]] = [
    ([], [A, B], False, frozenset({A, B}), frozenset({A, B})),  # nothing held: all granted
    ([(frozenset({A}), False)], [A, B], False, frozenset({B}), frozenset({A, B})),  # only the free part
    ([(frozenset({A, B}), False)], [A, B], False, None, frozenset({A, B})),  # all held: nothing
    ([(frozenset({A}), False)], [C], False, frozenset({C}), frozenset({A, C})),  # disjoint: both in flight
    ([], [], False, None, frozenset()),  # nothing wanted: no claim
    ([], [], True, frozenset(), frozenset()),  # a whole claim of a message with nothing pending
    ([(frozenset({A}), False)], [], True, None, frozenset({A})),  # whole: only when nothing is held
    ([(frozenset(), True)], [A], False, None, frozenset()),  # nothing beside a whole claim
    ([(frozenset(), True)], [], True, None, frozenset()),  # nor a second whole claim
]


def _held(spec: list[tuple[frozenset[str], bool]]) -> fate.Held:
    return tuple(Claim("remote", addresses, whole) for addresses, whole in spec)


@pytest.mark.parametrize(("before", "wanted", "whole", "granted", "after"), CLAIMS)
def test_take(before: list[tuple[frozenset[str], bool]], wanted: list[str], whole: bool,
              granted: frozenset[str] | None, after: frozenset[str]) -> None:
    held = _held(before)
    claim, now = take(held, "local", wanted, whole=whole)
    if granted is None:
        assert claim is None and now is held
    else:
        assert claim is not None and claim.addresses == granted and claim.whole == whole and claim.owner == "local"
        assert now == (*held, claim)
    assert claimed(now) == after


def test_release_gives_the_recipients_back_once() -> None:
    first, held = take((), "remote", [A, B])
    second, held = take(held, "local", [B, C])
    assert first is not None and second is not None and second.addresses == {C}
    held = release(held, first)
    assert claimed(held) == {C}
    again, held = take(held, "remote", [A, B])  # a Retry Now after the remote attempt ended
    assert again is not None and again.addresses == {A, B}
    with pytest.raises(ClaimError):
        release(held, first)  # released twice: a bug, not a silent no-op


def test_claims_are_compared_by_identity() -> None:
    one, two = Claim("remote", frozenset({A})), Claim("remote", frozenset({A}))
    assert one != two
    with pytest.raises(ClaimError):
        release((one,), two)


def test_a_stop_drops_the_cancelled_owners_claims_only() -> None:
    _, held = take((), "remote", [A])
    local, held = take(held, "local", [B])
    assert fate.cancelled(held, ("remote", "notice")) == (local,)


def test_covers() -> None:
    assert Claim("remote", frozenset({A})).covers(A) and not Claim("remote", frozenset({A})).covers(B)
    assert Claim("finish", frozenset(), whole=True).covers(B)


# Every (status, event) pair: the whole table, the final states included.
STEPS: dict[tuple[fate.Status, fate.Event], fate.Status] = {
    ("pending", "delivered"): "delivered",
    ("pending", "failed"): "failed",
    ("pending", "deferred"): "pending",
    ("pending", "expired"): "failed",
    ("pending", "bounced"): "failed",
    **{(final, event): final for final in ("delivered", "failed") for event in fate.EVENTS},
}


@pytest.mark.parametrize(("status", "event"), list(itertools.product(fate.STATUSES, fate.EVENTS)))
def test_step(status: fate.Status, event: fate.Event) -> None:
    assert step(status, event) == STEPS[(status, event)]


def test_outcomes_and_statuses_are_read_strictly() -> None:
    assert [fate.outcome_event(o) for o in ("delivered", "failed", "deferred")] == ["delivered", "failed", "deferred"]
    with pytest.raises(ValueError, match="unknown outcome"):
        fate.outcome_event("bounced")


OPS = st.lists(st.tuples(st.sampled_from(["take", "whole", "release"]),
                         st.lists(st.sampled_from([A, B, C]), max_size=3), st.integers(0, 5)), max_size=30)


@given(OPS)
def test_no_recipient_is_ever_in_two_claims(ops: list[tuple[str, list[str], int]]) -> None:
    held: fate.Held = ()
    for op, wanted, index in ops:
        if op == "release":
            if held:
                held = release(held, held[index % len(held)])
            continue
        _, held = take(held, "remote", wanted, whole=op == "whole")
        sets = [claim.addresses for claim in held]
        assert sum(len(s) for s in sets) == len(claimed(held))  # pairwise disjoint
        assert not any(claim.whole for claim in held) or len(held) == 1  # a whole claim stands alone


# --- settle: what follows an attempt ------------------------------------------------------------------

NOW = 1_000_000.0
LATER = Decision(retry_at=NOW + 900, send_delay_notice=False, expired=False, notice_at=NOW + 600, expires_at=NOW + 9e4)
NOTICE = Decision(retry_at=NOW + 900, send_delay_notice=True, expired=False, notice_at=NOW, expires_at=NOW + 9e4)
EXPIRED = Decision(retry_at=None, send_delay_notice=False, expired=True, notice_at=None, expires_at=NOW)

P, D, F = "pending", "delivered", "failed"


def _seen(*rows: tuple[str, fate.Status, bool]) -> list[Seen]:
    return [Seen(address, status, reported) for address, status, reported in rows]


# (recipients, waiting (the attempt's own pending), relayed, decision) -> expected Settlement
SETTLE: list[tuple[str, list[Seen], set[str], set[str], Decision, Settlement]] = [
    ("all delivered: the message leaves", _seen((A, D, False), (B, D, False)), set(), set(), LATER,
     Settlement((), (), (), (), None, None, "delivered")),
    ("deferred: the next attempt, woken for the earlier delay notice", _seen((A, P, False)), {A}, set(), LATER,
     Settlement((), (), (), (), NOW + 900, NOW + 600, None)),
    ("deferred and the delay notice is due: sent, then woken for the attempt", _seen((A, P, False)), {A}, set(),
     NOTICE, Settlement((), (), (), (A,), NOW + 900, NOW + 900, None)),
    ("deferred past the expiry: fails, NDR, returned", _seen((A, P, False), (B, D, False)), {A}, set(), EXPIRED,
     Settlement((A,), (A,), (), (), None, None, "returned")),
    ("one failed now, one delivered: NDR, returned", _seen((A, F, False), (B, D, False)), set(), set(), LATER,
     Settlement((), (A,), (), (), None, None, "returned")),
    ("a failure already told is not told again", _seen((A, F, True), (B, D, False)), set(), set(), LATER,
     Settlement((), (), (), (), None, None, "delivered")),
    ("relayed to a hop without DSN", _seen((A, D, False)), set(), {A}, LATER,
     Settlement((), (), (A,), (), None, None, "delivered")),
    ("another attempt's recipient is not this one's to expire", _seen((A, P, False), (C, P, False)), {A}, set(),
     EXPIRED, Settlement((A,), (A,), (), (), None, None, None)),
    ("nothing of its own waits (local still pending): kept, not woken", _seen((A, D, False), (C, P, False)), set(),
     set(), LATER, Settlement((), (), (), (), None, None, None)),
]


@pytest.mark.parametrize(("recipients", "waiting", "relayed", "decision", "expected"),
                         [case[1:] for case in SETTLE], ids=[case[0] for case in SETTLE])
def test_settle(recipients: list[Seen], waiting: set[str], relayed: set[str], decision: Decision,
                expected: Settlement) -> None:
    assert settle(recipients, frozenset(waiting), frozenset(relayed), decision, NOW) == expected


# Bounce Now: (recipients, waiting (every pending one), decision) -> expected Settlement
BOUNCE: list[tuple[str, list[Seen], set[str], Decision, Settlement]] = [
    ("pending ones fail at once, whatever the schedule says", _seen((A, P, False), (B, D, False)), {A}, NOTICE,
     Settlement((), (A,), (), (), None, None, "returned", (A,))),
    ("a failure not yet told goes into the same NDR", _seen((A, P, False), (C, F, False)), {A}, LATER,
     Settlement((), (C, A), (), (), None, None, "returned", (A,))),
    ("a failure already told is not told again", _seen((A, P, False), (C, F, True)), {A}, EXPIRED,
     Settlement((), (A,), (), (), None, None, "returned", (A,))),
    ("nothing pending: it leaves as it is", _seen((A, D, False)), set(), LATER,
     Settlement((), (), (), (), None, None, "delivered")),
]


@pytest.mark.parametrize(("recipients", "waiting", "decision", "expected"),
                         [case[1:] for case in BOUNCE], ids=[case[0] for case in BOUNCE])
def test_settle_bounce_now(recipients: list[Seen], waiting: set[str], decision: Decision,
                           expected: Settlement) -> None:
    assert settle(recipients, frozenset(waiting), frozenset(), decision, NOW, bounce=True) == expected
