"""The retry schedule (pure): the IIS timings, clamping at expiry, the delay notice, property checks."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.conf.config import ServerConfig
from engine.qmgr.schedule import DELAY_NOTICE, NDR, Decision, decide, next_attempt, plan, timing

IIS: dict[str, Any] = {"intervals_min": (15, 30, 60, 240), "delay_notification_min": 720, "expiration_min": 2880}
T0 = 1_800_000_000.0  # an arrival time; the tests never read the real clock
MIN = 60.0


def at(minutes: float) -> float:
    return T0 + minutes * MIN


def iis_decide(attempts: int, last_minutes: float, now_minutes: float, *, sent: bool = False) -> Decision:
    return decide(T0, attempts, at(last_minutes), at(now_minutes), delay_notice_sent=sent, **IIS)


@pytest.mark.parametrize(("attempts", "wait"), [(1, 15), (2, 30), (3, 60), (4, 240), (5, 240), (40, 240)])
def test_next_attempt_uses_interval_n_and_repeats_the_last(attempts: int, wait: int) -> None:
    assert next_attempt(attempts, at(100), (15, 30, 60, 240)) == at(100 + wait)


def test_first_attempt_is_immediate() -> None:
    assert next_attempt(0, at(7), (15,)) == at(7)
    d = iis_decide(0, 0, 0)
    assert d.retry_at == T0 and not d.expired and not d.send_delay_notice
    # queued long ago and never tried (engine was stopped): still tried once, now, before any NDR
    d = iis_decide(0, 0, 5000)
    assert d.retry_at is not None and d.retry_at <= at(5000) and not d.expired and not d.send_delay_notice


@pytest.mark.parametrize("intervals", [(), (0,), (15, -1)])
def test_bad_intervals_are_refused(intervals: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="intervals"):
        next_attempt(1, T0, intervals)


def test_negative_attempts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        next_attempt(-1, T0, (15,))


def run_engine(**settings: Any) -> list[tuple[float, str]]:
    """Drive decide() as the engine does, every attempt failing at once: wake, act, ask again."""
    events: list[tuple[float, str]] = []
    attempts, last, sent, now = 0, 0.0, False, T0
    for _ in range(10_000):
        d = decide(T0, attempts, last, now, delay_notice_sent=sent, **settings)
        if d.expired:
            events.append((now, NDR))
            return events
        if d.send_delay_notice:
            events.append((now, DELAY_NOTICE))
            sent = True
            continue
        assert d.retry_at is not None and d.wake_at is not None
        if d.retry_at <= now:
            attempts, last = attempts + 1, now
            events.append((now, f"attempt {attempts}"))
            continue
        assert d.wake_at > now  # the timer always moves forward
        now = d.wake_at
    raise AssertionError("no end")


IIS_EXPECTED = (
    [(m, f"attempt {n}") for n, m in enumerate([0, 15, 45, 105, 345, 585], 1)]
    + [(720, DELAY_NOTICE)]
    + [(m, f"attempt {n}") for n, m in enumerate(range(825, 2880, 240), 7)]
    + [(2880, "attempt 16"), (2880, NDR)]
)


def test_iis_schedule_exactly() -> None:
    expected = [(at(m), label) for m, label in IIS_EXPECTED]
    assert run_engine(**IIS) == expected
    assert plan(T0, 0, 0.0, T0, **IIS) == expected
    assert expected[-3][0] == at(2745)  # the last regular retry; the next one (2985) is clamped to 2880


def test_retry_after_expiry_is_clamped_to_the_expiry() -> None:
    d = iis_decide(15, 2745, 2746, sent=True)
    assert d.retry_at == at(2880) and d.expires_at == at(2880) and not d.expired


def test_interval_longer_than_the_time_left() -> None:
    settings: dict[str, Any] = {"intervals_min": (5000,), "delay_notification_min": 720, "expiration_min": 2880}
    assert run_engine(**settings) == [(at(0), "attempt 1"), (at(720), DELAY_NOTICE), (at(2880), "attempt 2"),
                                      (at(2880), NDR)]


def test_expired_only_after_an_attempt_at_or_after_expiry() -> None:
    # engine stopped from minute 15 to day 3: the overdue retry is due, no NDR yet, no delay notice now
    d = iis_decide(2, 15, 3 * 1440)
    assert d.retry_at == at(45) and not d.expired and not d.send_delay_notice
    d = iis_decide(3, 3 * 1440, 3 * 1440 + 1)
    assert d.expired and d.retry_at is None and not d.send_delay_notice and d.wake_at is None
    assert iis_decide(16, 2880, 2880).expired
    assert not iis_decide(15, 2879.9, 2880).expired


def test_delay_notice_once_after_twelve_hours() -> None:
    assert not iis_decide(6, 585, 719.9).send_delay_notice
    d = iis_decide(6, 585, 720)
    assert d.send_delay_notice and d.notice_at == at(720) and d.retry_at == at(825)
    assert iis_decide(6, 585, 700).wake_at == at(720)  # the timer wakes for the notice, not only for retries
    after = iis_decide(6, 585, 720, sent=True)
    assert not after.send_delay_notice and after.notice_at is None and after.wake_at == at(825)


def test_no_delay_notice_before_any_attempt_nor_at_or_after_expiry() -> None:
    assert not iis_decide(0, 0, 800).send_delay_notice
    assert not iis_decide(15, 2745, 2880).send_delay_notice  # the last attempt decides: delivered or NDR
    assert not iis_decide(16, 2880, 2880).send_delay_notice


def test_no_delay_notice_when_the_delay_is_not_before_the_expiry() -> None:
    settings: dict[str, Any] = {"intervals_min": (60,), "delay_notification_min": 120, "expiration_min": 120}
    events = run_engine(**settings)
    assert DELAY_NOTICE not in [label for _, label in events]
    assert events[-1] == (at(120), NDR)


def test_plan_from_the_middle_and_overdue() -> None:
    ahead = plan(T0, 6, at(585), at(600), **IIS)
    assert ahead[:2] == [(at(720), DELAY_NOTICE), (at(825), "attempt 7")]
    assert ahead[-1] == (at(2880), NDR)
    overdue = plan(T0, 2, at(15), at(50), delay_notice_sent=False, **IIS)
    assert overdue[0] == (at(50), "attempt 3")  # shown at now, not in the past
    assert plan(T0, 16, at(2880), at(2881), **IIS) == [(at(2881), NDR)]  # expired, NDR not yet sent


def test_plan_is_cut_after_limit_but_keeps_notice_and_ndr() -> None:
    ahead = plan(T0, 0, 0.0, T0, intervals_min=(1,), delay_notification_min=720, expiration_min=2880, limit=3)
    assert ahead == [(at(0), "attempt 1"), (at(1), "attempt 2"), (at(2), "attempt 3"), (at(720), DELAY_NOTICE),
                     (at(2880), NDR)]


def test_local_and_remote_settings() -> None:
    server = ServerConfig(retry_intervals_min=(10, 20), delay_notification_min=100, expiration_min=200,
                          local_delay_notification_min=30, local_expiration_min=60)
    local, remote = timing(server, local=True), timing(server, local=False)
    assert (local.intervals_min, local.delay_notification_min, local.expiration_min) == ((10, 20), 30, 60)
    assert (remote.intervals_min, remote.delay_notification_min, remote.expiration_min) == ((10, 20), 100, 200)
    assert local.decide(T0, 1, T0, at(30), delay_notice_sent=False).send_delay_notice
    assert not remote.decide(T0, 1, T0, at(30), delay_notice_sent=False).send_delay_notice
    assert local.plan(T0, 0, 0.0, T0)[-1] == (at(60), NDR)
    assert remote.plan(T0, 0, 0.0, T0)[-1] == (at(200), NDR)


settings_strategy = st.fixed_dictionaries({
    "intervals_min": st.lists(st.integers(1, 600), min_size=1, max_size=4).map(tuple),
    "delay_notification_min": st.integers(1, 6000),
    "expiration_min": st.integers(1, 6000),
})


@given(settings_strategy, st.floats(0, 2e9))
def test_schedule_properties(settings: dict[str, Any], arrived: float) -> None:
    events = plan(arrived, 0, 0.0, arrived, limit=10_000, **settings)
    expires = arrived + settings["expiration_min"] * MIN
    delay_at = arrived + settings["delay_notification_min"] * MIN
    times = [t for t, label in events if label.startswith("attempt")]
    assert times[0] == arrived
    assert all(a < b for a, b in pairwise(times))  # strictly increasing
    assert all(t <= expires for t in times)  # never after expiry
    assert times[-1] == expires  # the last attempt is on time, and the NDR with it
    assert events[-1] == (expires, NDR) and [label for _, label in events].count(NDR) == 1
    notices = [t for t, label in events if label == DELAY_NOTICE]
    assert notices == ([delay_at] if delay_at < expires else [])
    assert [t for t, _ in events] == sorted(t for t, _ in events)


@given(settings_strategy, st.integers(0, 30), st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 1e6),
       st.booleans())
def test_decisions_are_consistent(settings: dict[str, Any], attempts: int, since_arrival: float,
                                  since_last: float, later: float, sent: bool) -> None:
    arrived = T0
    last = arrived + since_arrival if attempts else 0.0
    now = (last if attempts else arrived) + since_last
    d = decide(arrived, attempts, last, now, delay_notice_sent=sent, **settings)
    assert d.expired == (attempts > 0 and last >= d.expires_at)
    if d.expired:
        assert d.retry_at is None and not d.send_delay_notice and d.wake_at is None
    else:
        assert d.retry_at is not None and d.retry_at <= d.expires_at
        assert d.wake_at is not None and d.wake_at <= d.retry_at
    if d.send_delay_notice:
        assert not sent and attempts > 0 and d.notice_at is not None and d.notice_at <= now < d.expires_at
    if sent:
        assert d.notice_at is None and not d.send_delay_notice
    # time passing alone never un-expires a message nor moves its retry
    e = decide(arrived, attempts, last, now + later, delay_notice_sent=sent, **settings)
    assert (e.expired, e.retry_at, e.notice_at) == (d.expired, d.retry_at, d.notice_at)
    # the plan starts with what decide says is due now
    first = plan(arrived, attempts, last, now, delay_notice_sent=sent, **settings)[0]
    if d.expired:
        assert first == (now, NDR)
    elif d.send_delay_notice:
        assert first == (now, DELAY_NOTICE)
    elif d.retry_at is not None and d.retry_at <= now:
        assert first == (now, f"attempt {attempts + 1}")
    else:
        assert d.wake_at is not None and first[0] == d.wake_at
