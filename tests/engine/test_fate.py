"""engine.qmgr.fate: the claim rules and the recipient transitions, as tables."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.qmgr import fate
from engine.qmgr.fate import Claim, ClaimError, claimed, release, step, take

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
    assert fate.status_of("pending") == "pending"
    with pytest.raises(ValueError, match="unknown outcome"):
        fate.outcome_event("bounced")
    with pytest.raises(ValueError, match="unknown recipient status"):
        fate.status_of("active")


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
