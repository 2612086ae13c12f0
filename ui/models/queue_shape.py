"""Queue shape (Postfix's qshape, made visible): queued messages by target domain × age bucket — pure, no Qt."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
# (lower bound in seconds, label); each bucket runs to the next bound.
AGE_BUCKETS: tuple[tuple[float, str], ...] = (
    (0.0, "0–5 min"), (5 * MINUTE, "5–15 min"), (15 * MINUTE, "15 min–1 h"), (HOUR, "1–4 h"),
    (4 * HOUR, "4–12 h"), (12 * HOUR, "12–24 h"), (DAY, "1–2 d"), (2 * DAY, "over 2 d"),
)
_BOUNDS = [bound for bound, _ in AGE_BUCKETS]
OTHER = "(other domains)"


def bucket_of(age: float) -> int:
    return max(0, bisect.bisect_right(_BOUNDS, age) - 1)


def bucket_range(number: int) -> tuple[float, float]:
    """[from, to) seconds of one bucket."""
    upper = _BOUNDS[number + 1] if number + 1 < len(_BOUNDS) else float("inf")
    return _BOUNDS[number], upper


@dataclass(frozen=True)
class Shape:
    domains: tuple[str, ...]  # the busiest first; OTHER last when the rest were folded into it
    counts: tuple[tuple[int, ...], ...]  # counts[bucket][domain]
    total: int  # messages

    def domain_total(self, index: int) -> int:
        return sum(row[index] for row in self.counts)


def queue_shape(messages: Iterable[tuple[tuple[str, ...], float]], now: float, top: int = 10) -> Shape:
    """``messages``: (target domains, arrived) per message; a message counts once for each of its domains.

    The ``top`` domains with the most messages get a bar each (ties by name); the rest share one bar."""
    cells: Counter[tuple[str, int]] = Counter()
    per_domain: Counter[str] = Counter()
    total = 0
    for domains, arrived in messages:
        total += 1
        bucket = bucket_of(now - arrived)
        for domain in domains:
            cells[domain, bucket] += 1
            per_domain[domain] += 1
    ranked = sorted(per_domain, key=lambda d: (-per_domain[d], d))
    shown = ranked[:top]
    folded = ranked[top:]
    columns = [*shown, OTHER] if folded else shown
    index = {domain: number for number, domain in enumerate(shown)}
    counts = [[0] * len(columns) for _ in AGE_BUCKETS]
    for (domain, bucket), count in cells.items():
        counts[bucket][index.get(domain, len(shown))] += count
    return Shape(tuple(columns), tuple(tuple(row) for row in counts), total)
