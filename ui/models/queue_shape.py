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


class ShapeCounter:
    """Counts messages by domain and age bucket a chunk at a time (100,000 messages need not stall a window)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.cells: Counter[tuple[str, int]] = Counter()
        self.per_domain: Counter[str] = Counter()
        self.total = 0

    def add(self, messages: Iterable[tuple[tuple[str, ...], float]]) -> None:
        cells, per_domain, now, bounds = self.cells, self.per_domain, self.now, _BOUNDS
        for domains, arrived in messages:
            self.total += 1
            bucket = max(0, bisect.bisect_right(bounds, now - arrived) - 1)
            for domain in domains:
                cells[domain, bucket] += 1
                per_domain[domain] += 1

    def shape(self, top: int = 8) -> Shape:
        """The ``top`` domains with the most messages get a bar each (ties by name); the rest share one bar."""
        per_domain = self.per_domain
        ranked = sorted(per_domain, key=lambda d: (-per_domain[d], d))
        shown = ranked[:top]
        columns = [*shown, OTHER] if len(ranked) > top else shown
        index = {domain: number for number, domain in enumerate(shown)}
        counts = [[0] * len(columns) for _ in AGE_BUCKETS]
        for (domain, bucket), count in self.cells.items():
            counts[bucket][index.get(domain, len(shown))] += count
        return Shape(tuple(columns), tuple(tuple(row) for row in counts), self.total)

    def domains(self) -> list[tuple[str, int]]:
        """Every target domain with its message count, busiest first."""
        return sorted(self.per_domain.items(), key=lambda pair: (-pair[1], pair[0]))


def queue_shape(messages: Iterable[tuple[tuple[str, ...], float]], now: float, top: int = 8) -> Shape:
    """``messages``: (target domains, arrived) per message; a message counts once for each of its domains."""
    counter = ShapeCounter(now)
    counter.add(messages)
    return counter.shape(top)
