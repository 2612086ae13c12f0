"""Failed logins per client address: a delay that doubles with each failure, and a lock-out after N of them.

Pure bookkeeping with an injected monotonic clock. IPv6 clients are counted per /64 (one host usually
holds a whole /64). Failures are remembered for the lock-out period; a success does not erase them
(else an attacker with one account of its own could reset the count between guesses). A password
check reserves a slot first (``begin``/``end``): the checks under way count as failures-to-be, so
parallel connections from one address get no more verdicts than the lock-out allows. Memory is
bounded: past ``MAX_PEERS`` addresses the oldest records without a check under way are dropped.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_PEERS = 10_000
MAX_DOUBLINGS = 4  # the delay grows to at most 16 times the base


def peer_key(peer: str) -> str:
    """The address failures are counted under: the IPv4 address, or the /64 of an IPv6 one."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def failure_delay(failures: int, base_seconds: float) -> float:
    """Seconds to wait before answering the ``failures``-th failed login (1, 2, 4, 8, 16 × base)."""
    if failures <= 0 or base_seconds <= 0:
        return 0.0
    return float(base_seconds * 2 ** min(failures - 1, MAX_DOUBLINGS))


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)  # times of the failures still remembered
    locked_until: float = 0.0
    checking: int = 0  # password checks under way for this address


@dataclass(frozen=True)
class Verdict:
    failures: int  # failures remembered for this address, this one included
    delay: float  # seconds to wait before the 535 reply
    locked: bool  # this failure started a lock-out


class AuthLimiter:
    """Per-address failure records of one virtual server."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def locked_for(self, peer: str) -> float:
        """Seconds the address stays locked out (0 = it may try)."""
        record = self._records.get(peer_key(peer))
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self._clock())

    def begin(self, peer: str, *, threshold: int, period: float) -> float:
        """Reserve a password check for ``peer``: 0 = go ahead (then ``end``), else seconds to refuse for.

        Refused while locked out, and while the failures remembered plus the checks under way reach
        ``threshold`` (those checks could still complete the lock-out). ``threshold`` 0 = never.
        """
        now = self._clock()
        key = peer_key(peer)
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record
        record.failures = [at for at in record.failures if now - at < period]
        if record.locked_until > now:
            return record.locked_until - now
        if threshold and len(record.failures) + record.checking >= threshold:
            return period
        record.checking += 1
        self._trim()
        return 0.0

    def end(self, peer: str) -> None:
        """A check reserved with ``begin`` is over (record a failure with ``failed`` at the same moment)."""
        record = self._records.get(peer_key(peer))
        if record is not None and record.checking:
            record.checking -= 1

    def failed(self, peer: str, *, threshold: int, period: float, base_delay: float) -> Verdict:
        """Note a failed login from ``peer``; ``threshold`` 0 = never lock out."""
        now = self._clock()
        key = peer_key(peer)
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record  # most recently failed last
        record.failures = [at for at in record.failures if now - at < period]
        record.failures.append(now)
        count = len(record.failures)
        locked = bool(threshold) and count >= threshold and record.locked_until <= now
        if locked:
            record.locked_until = now + period
        self._trim()
        return Verdict(count, failure_delay(count, base_delay), locked)

    def _trim(self) -> None:
        excess = len(self._records) - MAX_PEERS
        if excess <= 0:
            return
        # Oldest first, but never a record whose checks are under way: their count must stay.
        for key in [k for k, r in self._records.items() if not r.checking][:excess]:
            del self._records[key]

    def unlock(self, peer: str) -> None:
        """Forget an address's failures (the administrator's choice)."""
        self._records.pop(peer_key(peer), None)
