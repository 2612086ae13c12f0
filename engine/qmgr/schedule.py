"""The retry schedule: when to try a queued message again, warn its sender, or give up — pure, clock injected.

Times are wall-clock seconds (``time.time()``), settings are minutes as in the configuration.
Rules, for a message that arrived at ``arrived`` and has failed ``attempts`` times, the last at
``last_attempt``; ``expires`` is ``arrived + expiration``:

- The first attempt is due at once (at ``arrived``). After attempt n the wait is interval n, and the
  last interval repeats: 15, 30, 60, 240, 240, … — attempts at 0, +15, +45, +105, +345, +585 min …
- A retry that would fall after ``expires`` is moved to ``expires``: the last attempt happens on time,
  not up to one interval late. When an attempt made at or after ``expires`` fails, the message has
  expired → NDR. So every message gets at least one attempt, and an engine that was stopped past the
  expiry makes one last attempt before it bounces (as Postfix does).
- The delay notice falls due at ``arrived + delay_notification``, once, after a failed attempt, and only
  before the expiry time (past it, the last attempt decides between delivery and NDR). It has its own
  time, not the next attempt's: attempts that run back to back would otherwise starve it. No notice when
  the delay time is not before the expiry time.
- Remote and local delivery differ only in the settings the caller passes (``timing(..., local=...)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.conf.config import ServerConfig

MINUTE = 60.0

ATTEMPT, DELAY_NOTICE, NDR = "attempt", "delay notice", "NDR"  # labels in plan()


def _check_intervals(intervals_min: Sequence[int]) -> None:
    # A zero interval would retry in a tight loop; the option table already forbids it (minimum 1).
    if not intervals_min or any(minutes <= 0 for minutes in intervals_min):
        raise ValueError(f"retry intervals must be positive minutes, not {tuple(intervals_min)!r}")


def next_attempt(attempts: int, last_attempt: float, intervals_min: Sequence[int]) -> float:
    """When the attempt after ``attempts`` failed ones is due (unclamped); with none yet, at ``last_attempt``."""
    if attempts < 0:
        raise ValueError(f"negative attempt count {attempts}")
    _check_intervals(intervals_min)
    if attempts == 0:
        return last_attempt
    return last_attempt + intervals_min[min(attempts, len(intervals_min)) - 1] * MINUTE


@dataclass(frozen=True)
class Decision:
    """What to do with a deferred message at ``now``."""

    retry_at: float | None  # next attempt (due when <= now); None once expired
    send_delay_notice: bool  # send the delay DSN now (then record delay_notice_sent)
    expired: bool  # the last attempt has failed: NDR now
    notice_at: float | None = None  # when the delay notice falls due, while it is still to be sent
    expires_at: float = 0.0  # the expiration time (the last attempt happens then at the latest)

    @property
    def wake_at(self) -> float | None:
        """The earliest moment something is due (for the scheduler's timer); None once expired."""
        times = [t for t in (self.retry_at, self.notice_at) if t is not None]
        return min(times) if times else None


def decide(
    arrived: float,
    attempts: int,
    last_attempt: float,
    now: float,
    *,
    intervals_min: Sequence[int],
    delay_notification_min: int,
    expiration_min: int,
    delay_notice_sent: bool,
) -> Decision:
    """Apply the rules in the module docstring to one message."""
    expires_at = arrived + expiration_min * MINUTE
    if attempts > 0 and last_attempt >= expires_at:
        return Decision(None, False, True, None, expires_at)
    if attempts == 0:
        retry_at = next_attempt(0, arrived, intervals_min)
    else:
        retry_at = min(next_attempt(attempts, last_attempt, intervals_min), expires_at)
    delay_at = arrived + delay_notification_min * MINUTE
    notice_at = delay_at if not delay_notice_sent and delay_at < expires_at else None
    send = notice_at is not None and attempts > 0 and notice_at <= now < expires_at
    return Decision(retry_at, send, False, notice_at, expires_at)


def plan(
    arrived: float,
    attempts: int,
    last_attempt: float,
    now: float,
    *,
    intervals_min: Sequence[int],
    delay_notification_min: int,
    expiration_min: int,
    delay_notice_sent: bool = False,
    limit: int = 50,
) -> list[tuple[float, str]]:
    """The schedule ahead if every attempt fails: ``(time, "attempt N" | "delay notice" | "NDR")`` in order.

    An overdue attempt is shown at ``now``. After ``limit`` attempts the list skips to the delay
    notice and the NDR, which are always shown (short intervals with a long expiry make thousands).
    """
    events: list[tuple[float, str]] = []
    clock, sent, listed = now, delay_notice_sent, 0
    while True:
        # Replays decide() step by step, so the view can never disagree with what the engine will do.
        d = decide(arrived, attempts, last_attempt, clock, intervals_min=intervals_min,
                   delay_notification_min=delay_notification_min, expiration_min=expiration_min,
                   delay_notice_sent=sent)
        if d.expired:
            events.append((clock, NDR))
            return events
        if d.send_delay_notice:
            events.append((clock, DELAY_NOTICE))
            sent = True
            continue
        assert d.retry_at is not None and d.wake_at is not None  # not expired
        if d.retry_at > clock:  # nothing due: on to the next event, always a later one
            clock = d.wake_at
            continue
        if listed == limit:
            tail = [(d.expires_at, NDR)]
            if d.notice_at is not None:
                tail.append((max(d.notice_at, clock), DELAY_NOTICE))
            return events + sorted(tail)
        attempts, last_attempt, listed = attempts + 1, clock, listed + 1
        events.append((clock, f"{ATTEMPT} {attempts}"))


@dataclass(frozen=True)
class Timing:
    """The three settings of one kind of delivery, bound to decide() and plan()."""

    intervals_min: tuple[int, ...]
    delay_notification_min: int
    expiration_min: int

    def decide(self, arrived: float, attempts: int, last_attempt: float, now: float, *,
               delay_notice_sent: bool) -> Decision:
        return decide(arrived, attempts, last_attempt, now, intervals_min=self.intervals_min,
                      delay_notification_min=self.delay_notification_min, expiration_min=self.expiration_min,
                      delay_notice_sent=delay_notice_sent)

    def plan(self, arrived: float, attempts: int, last_attempt: float, now: float, *,
             delay_notice_sent: bool = False, limit: int = 50) -> list[tuple[float, str]]:
        return plan(arrived, attempts, last_attempt, now, intervals_min=self.intervals_min,
                    delay_notification_min=self.delay_notification_min, expiration_min=self.expiration_min,
                    delay_notice_sent=delay_notice_sent, limit=limit)


def timing(server: ServerConfig, *, local: bool) -> Timing:
    """Remote or local delivery settings; IIS has one set of retry intervals for both."""
    if local:
        return Timing(tuple(server.retry_intervals_min), server.local_delay_notification_min,
                      server.local_expiration_min)
    return Timing(tuple(server.retry_intervals_min), server.delay_notification_min, server.expiration_min)
