"""Live performance: the IIS "/sec" rates and derived counters, sampled once a second, 10 minutes kept in memory.

The rules (which rate follows which total, the derived values, IIS's explanation texts) are tables and pure
functions; ``Sampler`` is the thin loop-side part. A sample is a tuple aligned with ``Sampler.names`` so
that 600 of them stay small.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

HISTORY = 600  # samples kept: 10 minutes at one a second
INTERVAL = 1.0  # seconds between samples

# Sums IIS shows as counters of their own.
DERIVED_TOTALS: dict[str, tuple[str, ...]] = {
    "Bytes Total": ("Bytes Sent Total", "Bytes Received Total"),
    "Message Bytes Total": ("Message Bytes Sent Total", "Message Bytes Received Total"),
}

# "/sec" counter → the total it is the rate of.
RATES: dict[str, str] = {
    "Bytes Sent/sec": "Bytes Sent Total",
    "Bytes Received/sec": "Bytes Received Total",
    "Bytes Total/sec": "Bytes Total",
    "Message Bytes Sent/sec": "Message Bytes Sent Total",
    "Message Bytes Received/sec": "Message Bytes Received Total",
    "Message Bytes Total/sec": "Message Bytes Total",
    "Messages Received/sec": "Messages Received Total",
    "Messages Sent/sec": "Messages Sent Total",
    "Messages Delivered/sec": "Messages Delivered Total",
    "Inbound Connections/sec": "Inbound Connections Total",
    "Outbound Connections/sec": "Outbound Connections Total",
    "Connection Errors/sec": "Total Connection Errors",
    "DNS Queries/sec": "DNS Queries Total",
    "Directory Drops/sec": "Directory Drops Total",
    "Pickup Directory Messages Retrieved/sec": "Pickup Directory Messages Retrieved Total",
}

# What each counter means, in the words of IIS's "Explain" text (paraphrased; smtpsvc's own counters marked).
EXPLANATIONS: dict[str, str] = {
    "Bytes Sent Total": "The total number of bytes sent.",
    "Bytes Received Total": "The total number of bytes received.",
    "Bytes Total": "The sum of Bytes Sent Total and Bytes Received Total.",
    "Message Bytes Sent Total": "The total number of bytes sent in messages.",
    "Message Bytes Received Total": "The total number of bytes received in messages.",
    "Message Bytes Total": "The total number of bytes sent and received in messages.",
    "Messages Received Total": "The total number of inbound messages accepted.",
    "Messages Sent Total": "The total number of outbound messages sent.",
    "Messages Delivered Total": "The total number of messages delivered to local mailboxes (the Drop directory).",
    "Inbound Connections Current": "The number of connections currently inbound.",
    "Inbound Connections Total": "The total number of inbound connections received.",
    "Inbound Connections Refused": "Inbound connections refused: paused, over a limit, or by connection control "
                                   "(smtpsvc).",
    "Outbound Connections Current": "The number of connections currently outbound.",
    "Outbound Connections Total": "The total number of outbound connections attempted.",
    "Outbound Connections Refused": "The number of outbound connection attempts refused by remote sites.",
    "Total Connection Errors": "The total number of connection errors.",
    "Local Queue Length": "The number of messages in the local queue.",
    "Remote Queue Length": "The number of messages in the remote queue.",
    "Local Retry Queue Length": "The number of messages in the local retry queue.",
    "Remote Retry Queue Length": "The number of messages in the retry queue for remote delivery.",
    "Messages Currently Undeliverable": "The number of messages reported as currently undeliverable by routing.",
    "Message Delivery Retries": "The total number of local deliveries that were retried.",
    "Message Send Retries": "The total number of outbound message sends that were retried.",
    "NDRs Generated": "The number of non-delivery reports that have been generated.",
    "Total DSN Failures": "The total number of failed DSN generation attempts.",
    "Badmailed Messages (Bad Pickup File)": "The total number of malformed pickup messages sent to badmail.",
    "Badmailed Messages (Hop Count Exceeded)": "The total number of messages sent to badmail because they had "
                                               "exceeded their maximum hop count.",
    "Badmailed Messages (NDR of DSN)": "The total number of Delivery Status Notifications sent to badmail "
                                       "because they could not be delivered.",
    "Badmailed Messages (No Recipients)": "The total number of messages sent to badmail because they had no "
                                          "recipients.",
    "Badmailed Messages (General Failure)": "The total number of messages sent to badmail for reasons not "
                                            "associated with a specific counter.",
    "Badmail Items Removed": "Badmail items removed by the Badmail size and age limits (smtpsvc).",
    "Directory Drops Total": "The total number of messages placed in a drop directory.",
    "Pickup Directory Messages Retrieved Total": "The total number of messages retrieved from the mail pick-up "
                                                 "directory.",
    "Messages Refused for Size": "The number of messages rejected because they were too big.",
    "Messages Refused for Relay": "The number of recipients refused because relaying is not allowed (smtpsvc).",
    "Recipients Received Total": "The total number of recipients of the inbound messages accepted (smtpsvc).",
    "DNS Queries Total": "The total number of DNS lookups.",
    "Avg Recipients/msg Received": "The average number of recipients per inbound message received.",
    "Avg Retries/msg Delivered": "The average number of retries per local delivery.",
    "Avg Retries/msg Sent": "The average number of retries per outbound message sent.",
    "Bytes Sent/sec": "The rate that bytes are sent.",
    "Bytes Received/sec": "The rate that bytes are received.",
    "Bytes Total/sec": "The rate that bytes are sent and received.",
    "Message Bytes Sent/sec": "The rate that bytes are sent in messages.",
    "Message Bytes Received/sec": "The rate that bytes are received in messages.",
    "Message Bytes Total/sec": "The rate that bytes are sent and received in messages.",
    "Messages Received/sec": "The rate that inbound messages are being received.",
    "Messages Sent/sec": "The rate that outbound messages are being sent.",
    "Messages Delivered/sec": "The rate that messages are delivered to local mailboxes.",
    "Inbound Connections/sec": "The rate that inbound connections are received (smtpsvc).",
    "Outbound Connections/sec": "The rate that outbound connections are attempted (smtpsvc).",
    "Connection Errors/sec": "The number of connection errors per second.",
    "DNS Queries/sec": "The rate of DNS lookups.",
    "Directory Drops/sec": "The number of messages placed in a drop directory per second.",
    "Pickup Directory Messages Retrieved/sec": "The rate that messages are being retrieved from the mail pick-up "
                                               "directory.",
}


def explanation(name: str) -> str:
    return EXPLANATIONS.get(name, "")


# IIS's averages: counter → (numerator, denominator).
AVERAGES: dict[str, tuple[str, str]] = {
    "Avg Retries/msg Delivered": ("Message Delivery Retries", "Messages Delivered Total"),
    "Avg Retries/msg Sent": ("Message Send Retries", "Messages Sent Total"),
}


def with_derived(values: Mapping[str, float]) -> dict[str, float]:
    """The counters plus IIS's sums (Bytes Total, Message Bytes Total) and averages (Avg Retries/msg …)."""
    result = dict(values)
    for name, parts in DERIVED_TOTALS.items():
        result[name] = float(sum(values.get(part, 0.0) for part in parts))
    for name, (numerator, denominator) in AVERAGES.items():
        below = values.get(denominator, 0.0)
        result[name] = values.get(numerator, 0.0) / below if below else 0.0
    return result


def rates(previous: Mapping[str, float], current: Mapping[str, float], seconds: float) -> dict[str, float]:
    """The "/sec" counters between two samples; 0 for the first sample or a counter that went back."""
    result: dict[str, float] = {}
    for name, total in RATES.items():
        delta = current.get(total, 0.0) - previous.get(total, 0.0)
        result[name] = delta / seconds if seconds > 0 and delta > 0 else 0.0
    return result


@dataclass(frozen=True)
class History:
    names: tuple[str, ...]
    samples: tuple[tuple[float, tuple[float, ...]], ...]  # (time, values aligned with names)

    def series(self, name: str) -> list[tuple[float, float]]:
        index = self.names.index(name)
        return [(at, values[index]) for at, values in self.samples]


class Sampler:
    """Takes a sample every second on the loop; ``latest`` and ``history`` are what readers see."""

    def __init__(self, snapshot: Callable[[], dict[str, float]], clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, size: int = HISTORY) -> None:
        self._snapshot = snapshot
        self._clock = clock
        self._monotonic = monotonic
        self._samples: deque[tuple[float, tuple[float, ...]]] = deque(maxlen=size)
        self._previous: tuple[float, dict[str, float]] | None = None
        self.names: tuple[str, ...] = ()
        self.latest: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> dict[str, float]:
        """Take one sample now (the task calls this each second; tests call it directly)."""
        now = self._monotonic()
        values = with_derived(self._snapshot())
        previous_at, previous = self._previous if self._previous is not None else (now, values)
        values.update(rates(previous, values, now - previous_at))
        self._previous = (now, values)
        if not self.names:
            self.names = tuple(values)
        self._samples.append((self._clock(), tuple(values.get(name, 0.0) for name in self.names)))
        self.latest = values
        return values

    def history(self, seconds: float | None = None) -> History:
        samples = tuple(self._samples)
        if seconds is not None and samples:
            first = samples[-1][0] - seconds
            samples = tuple(s for s in samples if s[0] >= first)
        return History(self.names, samples)

    def start(self) -> None:
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="performance-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += INTERVAL
            await asyncio.sleep(max(0.0, next_at - loop.time()))  # a steady beat, not drifting by the work
            self.sample()
