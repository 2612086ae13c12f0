"""The durable queue: committed messages in Mailroot/Queue, their state, recovery at start, local delivery.

Invariants: a file ``Queue/<id>.eml`` exists only complete and fsynced (it is renamed in by the
Committer); it starts with envelope lines, so it is readable without its ``.env`` state record.
A queue entry is removed only after every recipient is final and the Drop file is durable.
Drop file names are the queue id, so a delivery repeated after a crash replaces, never duplicates.
Unreadable files are moved to Queue/corrupt with an event, never deleted, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Container, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.bounce.dsn_params import wants_success
from engine.conf.addresses import classify, domain_of
from engine.conf.config import Config, DomainConfig
from engine.errors import NotFoundError
from engine.events import ErrorEvent, EventBus, MessageDropped, MessageRemoved, QueueChanged, QueueRecovery
from engine.qmgr import fate, queue_index, recovery
from engine.store.commit import Committer
from engine.store.envelope import (
    RecipientState,
    RecipientStatus,
    StateRecord,
    envelope_lines,
    pickup_file,
)
from engine.store.mailroot import Mailroot, drop_ref, durable_file, remove_temps

log = logging.getLogger(__name__)
LOCAL_STOP_GRACE = 10.0  # seconds a stop waits for a local delivery under way to record its outcome

LOCAL_RETRY = 60.0  # seconds between tries to write to an unwritable Drop directory
RECOVERY_CHUNK = 1000  # messages read back per thread task; the loop takes each chunk in one turn
RECOVERY_THREADS = 2
RECOVERY_EVENT_INTERVAL = 0.25  # seconds between QueueRecovery progress events
RECOVERY_BATCH = 5000  # messages from the index taken per loop turn
TEMP_MARGIN = 5.0  # seconds: a temporary file in Queue written this shortly before the start is left (clocks)
COMPACT_SLACK = 10_000  # index lines beyond twice the messages queued before it is compacted


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A snapshot of one queued message for the facade and the UI (slotted: a listing makes 100,000 at once)."""

    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    pending: tuple[str, ...]
    size: int
    arrived: float
    attempts: int
    next_attempt: float
    state: str  # queued | active | frozen
    last_error: str
    source: str
    etrn_held: tuple[str, ...] = ()  # recipient domains whose mail waits for ETRN (filled in by the server)


@dataclass(frozen=True)
class QueueLengths:
    """Messages with pending recipients, for the IIS queue counters (one message can be in several)."""

    local: int
    remote: int
    local_retry: int  # local recipients whose delivery to Drop failed and waits for a retry
    remote_retry: int  # remote recipients tried at least once, waiting for the next attempt
    undeliverable: int  # the last attempt found no route or no reachable host (status X.4.X)


@dataclass(frozen=True)
class QueuePage:
    items: tuple[QueueItem, ...]
    total: int
    recovering: bool = False  # the queue is still being read back at start: this page and total are partial
    offline: bool = False  # the server is stopped: read from the Queue folder as it is, nothing can change it


@dataclass(frozen=True)
class RecipientDetail:
    address: str
    status: RecipientStatus
    last_error: str
    enhanced: str
    remote: str
    attempts: int


@dataclass(frozen=True)
class QueueDetail:
    """Everything the queue view shows about one message."""

    item: QueueItem
    recipients: tuple[RecipientDetail, ...]
    transcript: str  # every attempt's SMTP dialogue, oldest first
    last_attempt: float
    delay_notice_sent: bool


# The queue-length counters' bits of one message (QueueEntry.kinds)
COUNTED_LOCAL, COUNTED_REMOTE, COUNTED_LOCAL_RETRY, COUNTED_REMOTE_RETRY, COUNTED_UNREACHABLE = 1, 2, 4, 8, 16


def counted_bits(local: bool, attempts: int, enhanced: str) -> int:
    """The counter bits of one pending recipient."""
    bits = COUNTED_LOCAL if local else COUNTED_REMOTE
    if attempts:
        bits |= COUNTED_LOCAL_RETRY if local else COUNTED_REMOTE_RETRY
        if enhanced[1:4] == ".4.":  # RFC 3463's "network and routing": no route, no answer, connection lost
            bits |= COUNTED_UNREACHABLE
    return bits


class ColdTally:
    """The queue-length counts of the cold entries that keep their counter bits, kept as they come and go (a cold
    entry's bits cannot change), so that a count walks only the others (``outside``): new and decoded entries."""

    __slots__ = ("counts", "outside")

    def __init__(self) -> None:
        self.counts = [0] * 32  # entries by counter bits
        self.outside: set[str] = set()  # ids of the entries not in ``counts``


class QueueEntry:
    """In-memory state of one queued message (the record plus where its file is).

    Slotted and without a Path of its own (the Queue directory is shared): 100,000 of these stay small. An entry
    recovered from the index is *cold*: it keeps its record as the index line's bytes and decodes it the first
    time ``record`` is asked for (delivery, an operation, a change); listings, sorting and the counters read
    cold entries through ``peek``/``field``/``recipient_rows`` without keeping what they decoded.
    """

    __slots__ = ("_fields", "_kinds", "_record", "_tally", "claims", "folder", "offset", "queue_id", "size")

    def __init__(self, record: StateRecord | None, folder: Path, size: int, offset: int, *,
                 queue_id: str = "", fields: bytes = b"", kinds: int = -1) -> None:
        self._record = record
        self._tally: ColdTally | None = None  # the store's tally while it counts this cold entry there
        self._fields = fields  # the encoded record while cold (b"" once decoded)
        self._kinds = kinds if record is None else -1  # a cold entry's counter bits (``kinds``), kept: they
        # cannot change while it is cold (-1: not known yet)
        self.queue_id = record.queue_id if record is not None else queue_id
        self.folder = folder  # the Queue directory (one object shared by every entry)
        self.size = size
        self.offset = offset  # where the message starts after the envelope lines
        self.claims: fate.Held = ()  # the attempts acting on it now, each on its own recipients (engine.qmgr.fate)

    @property
    def active(self) -> bool:
        """Some attempt, notice or bounce is acting on this message now."""
        return bool(self.claims)

    def claim(self, owner: fate.Owner, wanted: Iterable[str], *, whole: bool = False) -> fate.Claim | None:
        """Hold the recipients of ``wanted`` that no other attempt holds (None: none free); see fate.take."""
        granted, self.claims = fate.take(self.claims, owner, wanted, whole=whole)
        return granted

    def release(self, claim: fate.Claim) -> None:
        self.claims = fate.release(self.claims, claim)

    def free(self, recipients: Iterable[RecipientState]) -> list[RecipientState]:
        """The recipients of ``recipients`` that no claim holds."""
        held = fate.claimed(self.claims)
        return [] if any(c.whole for c in self.claims) else [r for r in recipients if r.address not in held]

    @property
    def record(self) -> StateRecord:
        """The message's state, decoded once and kept (the object that delivery and operations change)."""
        if self._record is None:
            self._warm(self.peek())
        assert self._record is not None  # (for mypy: _warm set it)
        return self._record

    def _warm(self, record: StateRecord) -> None:
        """Keep the record decoded from now on (it may change at any moment: counted afresh each time)."""
        self._record, self._fields = record, b""
        self.untally()

    def tally(self, tally: ColdTally) -> bool:
        """Count this entry in ``tally`` while it stays cold (False: it is decoded, or its bits are not known)."""
        if self._record is not None or self._kinds < 0:
            return False
        if self._tally is not tally:
            self.untally()
            tally.counts[self._kinds] += 1
            self._tally = tally
            tally.outside.discard(self.queue_id)
        return True

    def untally(self) -> None:
        """Out of the tally (decoded, removed, or the domains changed): counted by walking it."""
        tally = self._tally
        if tally is not None:
            tally.counts[self._kinds] -= 1
            tally.outside.add(self.queue_id)
            self._tally = None

    def peek(self) -> StateRecord:
        """The record, without keeping it decoded when it is cold (a listing or a count over the whole queue)."""
        if self._record is not None:
            return self._record
        try:
            return queue_index.decode_record(self._fields)
        except ValueError:
            # Checksummed lines are our own; should one still not decode, the files are the truth.
            for found in recovery.read_chunk(self.folder, [self.queue_id], {self.queue_id}):
                if isinstance(found, recovery.Loaded):
                    self._warm(found.record)
                    return found.record
            raise

    def field(self, name: str) -> Any:
        """One field of the record (a sort key), decoding nothing else when cold."""
        if self._record is not None or not self._fields:
            return getattr(self.peek(), name)
        try:
            return queue_index.record_field(self._fields, name)
        except ValueError:
            return getattr(self.peek(), name)

    def recipient_rows(self) -> list[tuple[str, str, int, str]]:
        """(address, status, attempts, enhanced status) of every recipient, decoding nothing else when cold."""
        if self._record is None:
            try:
                return queue_index.recipient_rows(self._fields)
            except ValueError:
                pass
        return [(r.address, r.status, r.attempts, r.enhanced) for r in self.peek().recipients]

    def _cold_snapshot(self) -> QueueItem:
        seen = queue_index.summary(self._fields)
        state = "frozen" if seen.frozen else "active" if self.active else "queued"
        return QueueItem(self.queue_id, seen.sender, seen.recipients, seen.pending, self.size, seen.arrived,
                         seen.attempts, seen.next_attempt, state, seen.last_error, seen.source)

    def kinds(self, kind_of: Callable[[str], str]) -> int:
        """What the queue-length counters count of it (``COUNTED_*`` bits); ``kind_of``: a domain's route kind."""
        if self._record is None and self._kinds >= 0:
            return self._kinds
        bits = 0
        for address, status, attempts, enhanced in self.recipient_rows():
            if status == "pending":
                bits |= counted_bits(kind_of(domain_of(address)) == "local", attempts, enhanced)
        self.set_kinds(bits)
        return bits

    def set_kinds(self, bits: int) -> None:
        """Keep the counter bits (only while cold: a decoded record may change at any moment)."""
        if self._record is None:
            self._kinds = bits

    def forget_kinds(self) -> None:
        """The domains changed: count it afresh (the store starts a new tally)."""
        self._kinds = -1
        self._tally = None

    @property
    def path(self) -> Path:
        """The message file, ``Queue/<id>.eml`` (made when asked for, not kept)."""
        return self.folder / f"{self.queue_id}.eml"

    def pending(self) -> list[RecipientState]:
        return [r for r in self.record.recipients if r.status == "pending"]

    def snapshot(self) -> QueueItem:
        if self._record is None:
            try:
                return self._cold_snapshot()
            except ValueError:
                pass  # (peek reads the files)
        record = self.peek()
        state = "frozen" if record.frozen else "active" if self.active else "queued"
        everyone = tuple([r.address for r in record.recipients])  # (lists: a listing makes 100,000 of these)
        pending = tuple([r.address for r in record.recipients if r.status == "pending"])
        return QueueItem(
            record.queue_id,
            record.sender,
            everyone,
            everyone if len(pending) == len(everyone) else pending,
            self.size,
            record.arrived,
            record.attempts,
            record.next_attempt,
            state,
            record.last_error,
            record.source,
        )


def read_offline(queue_dir: Path) -> list[QueueEntry]:
    """The Queue folder as it is, read without changing anything (the server is stopped; like Postfix's mailq):
    unreadable files are left out, not moved; a missing folder is an empty queue."""
    try:
        listing = recovery.scan(queue_dir)
    except FileNotFoundError:
        return []
    return [QueueEntry(found.record, queue_dir, found.size, found.offset)
            for found in recovery.read_chunk(queue_dir, listing.order, listing.records)
            if isinstance(found, recovery.Loaded)]


def ends_with_lone_dot(path: Path) -> bool:
    """A message whose last line is a lone "." must be stored stuffed in Drop (see intake.SpoolFile.restuff)."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(size - 5, 0))
        return handle.read().endswith(b"\r\n.\r\n")


def _copy_for_drop(source: Path, offset: int, sender: str, recipients: list[str], target: Path, sync: bool) -> None:
    """Write the Drop file ``target`` for ``recipients`` from the queued ``source``: written in ``target``'s own
    directory (Drop may be on another filesystem), fsynced and renamed; the directory fsync is the caller's."""
    with source.open("rb") as src, durable_file(target, sync=sync, sync_dir=False) as dst:
        src.seek(offset)
        if ends_with_lone_dot(source):
            dst.write(pickup_file(sender, recipients, src.read()))
        else:
            dst.write(envelope_lines(sender, recipients))
            shutil.copyfileobj(src, dst, 1 << 20)


class QueueStore:
    """Owns Mailroot/Queue: recovery, the index of entries, state records and local delivery."""

    def __init__(
        self, mailroot: Mailroot, committer: Committer, bus: EventBus, config: Callable[[], Config],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.mailroot = mailroot
        self.committer = committer
        self.bus = bus
        self._config = config
        self.entries: dict[str, QueueEntry] = {}
        self._local: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._saving: dict[str, asyncio.Future[None]] = {}  # messages whose state record is being written
        self._local_busy = False  # a local delivery is under way: a stop lets it finish (Drop copy + state record)
        self.on_dropped: Callable[[int], None] = lambda count: None
        self.on_added: Callable[[str], None] = lambda queue_id: None
        self.on_local_delivery: Callable[[QueueEntry, list[RecipientState]], Awaitable[None]] | None = None
        self.local_retry = LOCAL_RETRY
        self.on_local_failure: Callable[[QueueEntry, list[RecipientState]], Awaitable[None]] | None = None
        # Recovered messages, (next attempt, id) each, handed to delivery in batches (one heap build, not 100,000)
        self.on_recovered: Callable[[list[tuple[float, str]]], None] = lambda wakes: None
        self._local_domains: dict[str, bool] = {}
        self._counted_domains: tuple[DomainConfig, ...] = ()  # the domains the kept counter bits were made with
        self._cold = ColdTally()  # counts of the cold entries; every other entry's id is in its ``outside``
        self._uncounted = False  # recovered entries are neither in the tally nor outside: the next count walks all
        self._recovery: asyncio.Task[int] | None = None
        self._live: set[str] = set()  # ids queued or finished by the running engine while recovery runs
        self._recovered = 0
        self._expected = 0
        self._recovered_all = False  # until then, listings are partial
        self.index = queue_index.QueueIndex(mailroot.queue)
        self._opened = time.time()  # temporary files in Queue older than this (less TEMP_MARGIN) are a crash's
        self._compaction: asyncio.Task[None] | None = None

    # -- start / stop ---------------------------------------------------------------------------

    def clear_sorttemp(self) -> None:
        """Remove what was being received when the engine stopped (no 250 was given for it); before listening."""
        for leftover in self.mailroot.sorttemp.iterdir():
            if leftover.name.startswith("pickup-"):
                continue  # claimed Pickup files: the Pickup service puts them back
            try:
                if leftover.is_dir():
                    continue
                leftover.unlink()  # a spool or temp file that was never committed: no 250 was given
            except OSError as error:
                log.warning("cannot remove %s: %s", leftover, error)

    @property
    def recovering(self) -> bool:
        """True until every message on disk at start is known (a listing meanwhile is partial)."""
        return not self._recovered_all

    def recovery_progress(self) -> tuple[int, int]:
        """(messages read back so far, messages found at start); (0, 0) before the listing."""
        return self._recovered, self._expected

    def begin_recovery(self) -> asyncio.Task[int]:
        """Read the queue back in the background, in chunks on threads; new mail is taken meanwhile.

        Each recovered message is handed to delivery as it is read (``on_recovered``). A message that the
        running engine already knows (it was queued after the start) or has already finished is not touched.
        """
        self._live.update(self.entries)
        self._recovery = asyncio.get_running_loop().create_task(self._recover())
        return self._recovery

    async def wait_recovered(self) -> None:
        if self._recovery is not None:
            await asyncio.shield(self._recovery)

    async def _recover(self) -> int:
        loop = asyncio.get_running_loop()
        queue_dir = self.mailroot.queue
        self._publish_recovery(False)
        collecting = gc.isenabled()
        gc.disable()  # see _look; the engine serves meanwhile, so only for this short part
        try:
            plan, records, orphans, hidden = await self._look(queue_dir)
            missing = plan.missing
            if plan.winners:
                failed = await self._from_index(plan, queue_dir)
                missing += failed
                if failed:  # (whether they have a state record is seen when they are read)
                    records = {q for q in missing if q in records} | set(failed)
        finally:
            if collecting:
                gc.enable()
        chunks = [missing[start:start + RECOVERY_CHUNK] for start in range(0, len(missing), RECOVERY_CHUNK)]
        with ThreadPoolExecutor(RECOVERY_THREADS, thread_name_prefix="recovery") as pool:
            def read(chunk: list[str]) -> asyncio.Future[list[recovery.Loaded | recovery.Unreadable]]:
                return loop.run_in_executor(pool, self._read_and_index, queue_dir, chunk, records)

            pending = [read(chunk) for chunk in chunks[:RECOVERY_THREADS * 2]]
            following = RECOVERY_THREADS * 2
            last_event = loop.time()
            while pending:
                results = await pending.pop(0)
                if following < len(chunks):
                    pending.append(read(chunks[following]))
                    following += 1
                self._take(results, queue_dir)
                if loop.time() - last_event >= RECOVERY_EVENT_INTERVAL:
                    last_event = loop.time()
                    self._publish_recovery(False)
        # (Queue is not swept before listening with the other folders: this listing is the one pass over it)
        for leftover in await asyncio.to_thread(remove_temps, queue_dir, hidden, self._opened - TEMP_MARGIN):
            log.info("removed %s, left by an interrupted write", leftover)
        for queue_id in orphans:
            if queue_id not in self._live and not (queue_dir / f"{queue_id}.eml").exists():
                # The message was delivered and removed but its record was not: nothing to lose.
                (queue_dir / f"{queue_id}.env").unlink(missing_ok=True)
        self._live.clear()
        self._local_domains.clear()
        self._recovered_all = True
        self._publish_recovery(True)
        log.info("recovered %d queued message(s), %d from the index", self._recovered,
                 self._recovered - len(missing))
        self._compact_if_due()
        return self._recovered

    async def _look(self, queue_dir: Path) -> tuple[queue_index.Plan, Container[str], list[str], list[str]]:
        """The listing of Queue/ and the index's first pass: (what to take from the index and what to read from
        the files, the ids with a state record among the latter, orphan state records, hidden names).

        The listing goes when this returns, before the recovered queue is built: its 200,000 names would
        otherwise leave as many holes among the queue's objects. The cyclic GC waits meanwhile (the caller):
        100,000 entries made in a second would have it walk the growing queue again and again.
        """
        usable = await asyncio.to_thread(self.index.open)
        listing = await asyncio.to_thread(recovery.scan, queue_dir)
        self._expected = len(listing.messages)
        self._publish_recovery(False)
        plan = queue_index.Plan(0, bytearray(), listing.order)
        if usable:
            try:
                plan = await asyncio.to_thread(self.index.plan, listing.messages, listing.records, listing.order)
            except OSError as error:
                log.warning("queue index not read (the messages are read from their files): %s", error)
        records = listing.records if not plan.winners else {q for q in plan.missing if q in listing.records}
        return plan, records, listing.orphans(), listing.hidden

    async def _from_index(self, plan: queue_index.Plan, queue_dir: Path) -> list[str]:
        """Take every message the index knows as it is on disk; returns the ids to read from their files after
        all (a line that did not decode)."""
        domains = self._config().effective_domains
        kinds_of: dict[str, str] = {}
        local: set[str] = set()

        def bits_of(domain: str, attempts: int, enhanced: str) -> int:
            # (on the thread: classify is pure, the configuration immutable)
            kind = kinds_of.get(domain)
            if kind is None:
                kind = kinds_of[domain] = classify(domain, domains).kind
            return counted_bits(kind == "local", attempts, enhanced)

        def make(queue_id: str, fields: bytes, size: int, offset: int, bits: int) -> QueueEntry:
            if bits & COUNTED_LOCAL:
                local.add(queue_id)
            return QueueEntry(None, queue_dir, size, offset, queue_id=queue_id, fields=fields, kinds=bits)

        try:
            taken = await asyncio.to_thread(self.index.take, plan, make, bits_of)
        except OSError as error:
            log.warning("queue index not read (the messages are read from their files): %s", error)
            return (await asyncio.to_thread(recovery.scan, queue_dir)).order
        self._counted_domains = domains  # the entries' counter bits were made with these
        wakes: list[tuple[float, str]] = []
        for start in range(0, len(taken.entries), RECOVERY_BATCH):
            wakes += self._admit(taken.entries[start:start + RECOVERY_BATCH],
                                 taken.wakes[start:start + RECOVERY_BATCH], local, schedule=False)
            await asyncio.sleep(0)  # let sessions and delivery run between batches
        if wakes:
            self.on_recovered(wakes)  # one heap build for all of them
        return taken.failed

    def _read_and_index(self, queue_dir: Path, ids: list[str],
                        records: Container[str]) -> list[recovery.Loaded | recovery.Unreadable]:
        """Read messages from their files (worker thread) and put them into the index for the next start."""
        results = recovery.read_chunk(queue_dir, ids, records)
        lines = []
        for result in results:
            if isinstance(result, recovery.Loaded):
                text = queue_index.encode_record(result.record)
                result.fields = text.encode()  # the entry is kept cold, as from the index
                lines.append(queue_index.line(result.queue_id, result.eml_ino, result.env_ino, result.size,
                                              result.offset, text))
        self.index.append(lines)
        return results

    def _compact_if_due(self) -> None:
        """Rewrite the index in the background when most of its lines are old versions."""
        if self._compaction is not None or self.recovering or self._recovery is None:
            return
        if self.index.lines <= 2 * len(self.entries) + COMPACT_SLACK:
            return
        end, live = self.index.size(), set(self.entries)  # together: a message added later has its lines beyond
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.index.compact, live, end))
        self._compaction = task
        task.add_done_callback(self._compacted)

    def _compacted(self, task: asyncio.Task[None]) -> None:
        self._compaction = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not compact the queue index: %s", task.exception())

    def _take(self, results: list[recovery.Loaded | recovery.Unreadable], queue_dir: Path) -> None:
        """Put one batch of messages read from their files into memory (on the loop)."""
        entries: list[QueueEntry] = []
        wakes: list[tuple[float, str]] = []
        local: set[str] = set()
        domains = self._config().effective_domains
        for result in results:
            queue_id = result.queue_id
            if queue_id in self._live or queue_id in self.entries:
                continue  # queued (and perhaps finished) by the running engine since the start
            if isinstance(result, recovery.Unreadable):
                self._quarantine(queue_dir / f"{queue_id}.eml", f"unreadable queue file: {result.reason}")
                continue
            if result.bad_record:
                self._quarantine(queue_dir / f"{queue_id}.env", f"unreadable state record: {result.bad_record}")
            record = result.record
            bits = 0
            for rcpt in record.recipients:
                if rcpt.status == "pending":
                    bits |= counted_bits(self._is_local(domain_of(rcpt.address), domains), rcpt.attempts,
                                         rcpt.enhanced)
            if result.fields:  # cold, as an entry from the index (its record is decoded when first needed)
                entry = QueueEntry(None, queue_dir, result.size, result.offset, queue_id=queue_id, fields=result.fields)
                if domains == self._counted_domains or not self._counted_domains:
                    self._counted_domains = domains
                    entry.set_kinds(bits)
            else:
                entry = QueueEntry(record, queue_dir, result.size, result.offset)
            entries.append(entry)
            wakes.append((record.next_attempt, queue_id))
            if bits & COUNTED_LOCAL:
                local.add(queue_id)
        self._admit(entries, wakes, local)

    def _is_local(self, domain: str, domains: tuple[DomainConfig, ...]) -> bool:
        local = self._local_domains.get(domain)
        if local is None:
            local = self._local_domains[domain] = classify(domain, domains).kind == "local"
        return local

    def _admit(self, entries: list[QueueEntry], wakes: list[tuple[float, str]], local: set[str], *,
               schedule: bool = True) -> list[tuple[float, str]]:
        """Make these recovered messages known (``wakes``: theirs, in the same order), local ones queued for
        Drop, and hand them to delivery (unless ``schedule`` is false: the caller does, for many batches at
        once); returns the wakes of those taken."""
        live, known = self._live, self.entries
        # (without messages of the running engine, recovery's own entries cannot repeat: each id comes once)
        ids = [queue_id for _, queue_id in wakes]  # (the entries' ids, in their order)
        if live and not (live.isdisjoint(ids) and known.keys().isdisjoint(ids)):
            # queued (and perhaps finished) by the running engine since the start: not again
            kept = [n for n, queue_id in enumerate(ids) if queue_id not in live and queue_id not in known]
            entries, wakes, ids = [entries[n] for n in kept], [wakes[n] for n in kept], [ids[n] for n in kept]
        known.update(zip(ids, entries, strict=True))
        self._uncounted = True  # (the next count puts them into the tally: nothing per entry here)
        if local:
            for queue_id in ids:
                if queue_id in local:
                    self._local.put_nowait(queue_id)
        self._recovered += len(entries)
        if wakes and schedule:
            self.on_recovered(wakes)
        return wakes

    def _publish_recovery(self, finished: bool) -> None:
        self.bus.publish(QueueRecovery(self._recovered, self._expected, finished))

    def _quarantine(self, path: Path, reason: str) -> None:
        target = self.mailroot.corrupt / path.name
        try:
            os.replace(path, target)
        except OSError as error:
            reason += f" (could not move it to {self.mailroot.corrupt}: {error})"
        log.error("%s: %s", path, reason)
        self.bus.publish(ErrorEvent("queue", f"{path.name}: {reason}"))

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._local_worker())

    async def stop(self) -> None:
        for task in (self._recovery, self._compaction):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._worker is not None:
            # A local delivery that wrote its Drop copy must also save that it did, or a restart drops it again.
            deadline = asyncio.get_running_loop().time() + LOCAL_STOP_GRACE
            while self._local_busy and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self.index.close()

    # -- index ----------------------------------------------------------------------------------

    def new_record(self, queue_id: str, sender: str, recipients: tuple[str, ...], source: str) -> StateRecord:
        return StateRecord(queue_id, sender, [RecipientState(r) for r in recipients], self.clock(), source)

    def add(self, record: StateRecord, path: Path, size: int, offset: int) -> None:
        """Register a message the Committer just made durable, and hand it to delivery."""
        queue_id = record.queue_id
        folder = self.mailroot.queue
        self.entries[queue_id] = QueueEntry(record, folder if path.parent == folder else path.parent, size, offset)
        self._cold.outside.add(queue_id)
        if self.recovering:
            self._live.add(queue_id)
        text = queue_index.encode_record(record)
        self.index.append((queue_index.line(queue_id, *_inodes(path), size, offset, text),))
        self._compact_if_due()
        self._local.put_nowait(queue_id)
        self.on_added(queue_id)

    def _forget(self, queue_id: str) -> None:
        entry = self.entries.pop(queue_id, None)
        if entry is not None:
            entry.untally()
        self._cold.outside.discard(queue_id)
        if self.recovering:
            self._live.add(queue_id)  # recovery may still find its files in its listing: not again

    def snapshot(self) -> list[QueueItem]:
        return [entry.snapshot() for entry in self.entries.values()]

    def get(self, queue_id: str) -> QueueEntry | None:
        return self.entries.get(queue_id)

    def counts(self) -> QueueLengths:
        """Messages with pending recipients by kind, for the queue-length counters (each domain classified once
        per count). Cold entries are kept counted in a tally as they come and go (their bits cannot change), so a
        count walks only the others: new and decoded entries (with 100,000 recovered: a few, not 100,000)."""
        domains = self._config().effective_domains
        if domains != self._counted_domains:
            for entry in self.entries.values():
                entry.forget_kinds()
            self._cold, self._uncounted = ColdTally(), True
            self._counted_domains = domains
        cold = self._cold
        kinds_of: dict[str, str] = {}

        def kind_of(domain: str) -> str:
            kind = kinds_of.get(domain)
            if kind is None:
                kind = kinds_of[domain] = classify(domain, domains).kind
            return kind

        others = [0] * 32
        entries = self.entries
        if self._uncounted:  # (after recovery or a change of domains: once)
            self._uncounted = False
            for queue_id, entry in entries.items():
                if entry._tally is not cold:
                    entry.kinds(kind_of)  # (a cold entry's bits, when not yet known)
                    if not entry.tally(cold):
                        cold.outside.add(queue_id)
        for queue_id in list(cold.outside):
            found = entries.get(queue_id)
            if found is None:
                cold.outside.discard(queue_id)
                continue
            bits = found.kinds(kind_of)
            if not found.tally(cold):  # (a cold one joins the tally: not walked again)
                others[bits] += 1
        tally = [a + b for a, b in zip(cold.counts, others, strict=True)]

        def having(bit: int) -> int:
            return sum(number for bits, number in enumerate(tally) if bits & bit)

        return QueueLengths(having(COUNTED_LOCAL), having(COUNTED_REMOTE), having(COUNTED_LOCAL_RETRY),
                            having(COUNTED_REMOTE_RETRY), having(COUNTED_UNREACHABLE))

    async def save_state(self, entry: QueueEntry) -> None:
        """Write the entry's state record. Saves of one message are one at a time, each taking the state as it
        is when its turn comes: two writes on two commit threads could otherwise finish in the other order and
        leave the older state on disk (a local delivery's 'delivered' overwritten by an attempt begun before it)."""
        queue_id = entry.record.queue_id
        while (in_flight := self._saving.get(queue_id)) is not None:
            await asyncio.shield(in_flight)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._saving[queue_id] = turn
        try:
            record = entry.record
            data, fields = record.to_bytes(), queue_index.encode_record(record)  # the same moment's state, both
            await self.committer.run(self._write_state, entry.folder, queue_id, entry.size, entry.offset,
                                     data, fields)
        finally:
            del self._saving[queue_id]
            turn.set_result(None)
        self._compact_if_due()

    def _write_state(self, folder: Path, queue_id: str, size: int, offset: int, data: bytes, fields: str) -> None:
        """Worker thread: the state record file (durable), then its line in the index with the inode written."""
        env_ino = self.mailroot.write_atomic(folder / f"{queue_id}.env", data)
        try:
            eml_ino = os.stat(folder / f"{queue_id}.eml").st_ino
        except FileNotFoundError:
            return  # finished meanwhile: no line needed
        self.index.append((queue_index.line(queue_id, eml_ino, env_ino, size, offset, fields),))

    async def remove(self, entry: QueueEntry, reason: str) -> None:
        """Forget an entry whose recipients are all final; its files go last.

        The removal is not fsynced (as Postfix): after a crash a finished message may reappear and be sent
        once more — at least once, never lost — while every delivery saves a directory fsync.
        """
        self._forget(entry.queue_id)
        await self.committer.run(_unlink_entry, entry.path)
        self.bus.publish(MessageRemoved(entry.queue_id, reason))

    # -- operations -----------------------------------------------------------------------------

    def require(self, queue_id: str) -> QueueEntry:
        entry = self.entries.get(queue_id)
        if entry is None:
            raise NotFoundError(f"no message {queue_id} in the queue")
        return entry

    async def set_frozen(self, queue_id: str, frozen: bool) -> None:
        entry = self.require(queue_id)
        if entry.record.frozen != frozen:
            entry.record.frozen = frozen
            await self.save_state(entry)
            self.bus.publish(QueueChanged(queue_id, "frozen" if frozen else "thawed"))
            if not frozen:
                self._local.put_nowait(queue_id)

    async def delete(self, queue_id: str) -> None:
        """Remove a message without notifying anyone (the administrator's Delete)."""
        await self.remove(self.require(queue_id), "deleted")

    async def schedule_now(self, queue_ids: list[str], *, persist: bool) -> int:
        """Make these messages due at once (Retry Now); returns how many were not frozen.

        A running engine acts on it at once, in memory (a crash before then only means the old schedule);
        ``persist`` saves it for an engine that is not running (the command line, offline).
        """
        due = [self.entries[q] for q in queue_ids if q in self.entries and not self.entries[q].record.frozen]
        for entry in due:
            entry.record.next_attempt = 0.0
        if persist:
            await asyncio.gather(*(self.save_state(e) for e in due if not e.active))
        for entry in due:
            self.on_added(entry.queue_id)
            self.bus.publish(QueueChanged(entry.queue_id, "retry scheduled"))
        return len(due)

    def detail(self, queue_id: str) -> QueueDetail:
        entry = self.require(queue_id)
        record = entry.record
        recipients = tuple(
            RecipientDetail(r.address, r.status, r.last_error, r.enhanced, r.remote, r.attempts)
            for r in record.recipients
        )
        return QueueDetail(entry.snapshot(), recipients, self.transcript(queue_id), record.last_attempt,
                           record.delay_notice_sent)

    def transcript(self, queue_id: str) -> str:
        path = self.require(queue_id).path.with_suffix(".rtr")
        try:
            return path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    async def append_transcript(self, entry: QueueEntry, text: str) -> None:
        """Keep the dialogue of an attempt beside the message (IIS 4's .RTR); diagnostics, so not fsynced."""
        await self.committer.run(_append, entry.path.with_suffix(".rtr"), text)

    def read_message(self, entry: QueueEntry, limit: int = -1) -> bytes:
        """The message without its envelope lines; its first ``limit`` bytes only when ``limit`` >= 0."""
        with entry.path.open("rb") as handle:
            handle.seek(entry.offset)
            return handle.read(limit)

    # -- local delivery -------------------------------------------------------------------------

    async def _local_worker(self) -> None:
        while True:
            queue_id = await self._local.get()
            entry = self.entries.get(queue_id)
            if entry is None or entry.record.frozen:
                continue
            local = [r for r in entry.pending() if self.drop_dir_for(r.address) is not None]
            claim = entry.claim("local", [r.address for r in local]) if local else None
            if claim is None:
                continue  # nothing local, or held by another attempt (which hands it back here: wake_local)
            local = [r for r in local if claim.covers(r.address)]
            self._local_busy = True
            try:
                await self.deliver_local(entry, claim)
            except OSError as error:
                log.error("local delivery of %s failed: %s", queue_id, error)
                self.bus.publish(ErrorEvent("drop", f"{queue_id}: {error}"))
                for rcpt in local:
                    rcpt.attempts += 1
                    rcpt.enhanced = "4.3.0"
                    rcpt.last_error = f"451 4.3.0 Cannot write to the Drop directory: {error.strerror or error}"
                entry.record.last_error = local[0].last_error if local else ""
                try:
                    if self.on_local_failure is not None:
                        await self.on_local_failure(entry, local)  # delay notice / NDR on the local schedule
                except Exception as failure:  # said; the message stays queued for its retry, the worker goes on
                    log.exception("local delivery of %s: handling the failure failed", queue_id)
                    self.bus.publish(ErrorEvent("queue", f"{queue_id}: handling a failed local delivery failed: "
                                                         f"{failure}"))
                if queue_id in self.entries and any(r.status == "pending" for r in local):
                    asyncio.get_running_loop().call_later(self.local_retry, self._local.put_nowait, queue_id)
            finally:
                entry.release(claim)
                self._local_busy = False
            if queue_id in self.entries:
                self.on_added(queue_id)  # what remote delivery skipped while this claim was held is due now

    def wake_local(self, queue_id: str) -> None:
        """Look at this message's local recipients again (a claim that held them was released)."""
        self._local.put_nowait(queue_id)

    def drop_dir_for(self, address: str) -> Path | None:
        """The Drop directory of a local recipient, or None when the address is not local."""
        route = classify(domain_of(address), self._config().effective_domains)
        if route.kind != "local" or route.domain is None:
            return None
        return self.mailroot.drop_for(route.domain.name)

    async def deliver_local(self, entry: QueueEntry, claim: fate.Claim) -> None:
        """Write the claimed local recipients' copies to Drop (the caller holds and releases ``claim``)."""
        pending = [r for r in entry.pending() if claim.covers(r.address)]
        by_dir: dict[Path, list[RecipientState]] = {}
        for rcpt in pending:
            folder = self.drop_dir_for(rcpt.address)
            if folder is not None:
                by_dir.setdefault(folder, []).append(rcpt)
        if not by_dir:
            return
        all_local = sum(len(group) for group in by_dir.values()) == len(entry.record.recipients)
        # A success notice reads the queued message after delivery: then copy, don't move.
        notices = [r for group in by_dir.values() for r in group if wants_success(r.notify)]
        movable = not notices and not await self.committer.run(ends_with_lone_dot, entry.path)
        if all_local and len(by_dir) == 1 and movable:
            folder = next(iter(by_dir))
            await self._move_to_drop(entry, folder)
            for rcpt in pending:
                rcpt.status = fate.step(rcpt.status, "delivered")
            self._forget(entry.queue_id)
            target = folder / entry.path.name
            self.bus.publish(MessageDropped(entry.queue_id, str(target), tuple(r.address for r in pending),
                                            drop_ref(self.mailroot, target)))
            self.bus.publish(MessageRemoved(entry.queue_id, "delivered"))
            self.on_dropped(1)
            return
        for folder, group in by_dir.items():
            target = folder / entry.path.name
            await self.committer.run(_copy_for_drop, entry.path, entry.offset, entry.record.sender,
                                     [r.address for r in group], target, self.committer.sync)
            if self.committer.sync:
                await self.committer.sync_directory(folder)
            for rcpt in group:
                rcpt.status = fate.step(rcpt.status, "delivered")
            self.bus.publish(MessageDropped(entry.queue_id, str(target), tuple(r.address for r in group),
                                            drop_ref(self.mailroot, target)))
            self.on_dropped(1)
        if notices and self.on_local_delivery is not None:
            await self.on_local_delivery(entry, notices)
        if entry.pending():
            await self.save_state(entry)
        else:
            await self.remove(entry, "delivered")

    async def _move_to_drop(self, entry: QueueEntry, folder: Path) -> None:
        target = folder / entry.path.name
        try:
            await self.committer.run(_move_same_fs, entry.path, target)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            await self.committer.run(_copy_for_drop, entry.path, entry.offset, entry.record.sender,
                                     [r.address for r in entry.record.recipients], target, self.committer.sync)
        await self.committer.sync_directory(folder)
        await self.committer.run(_unlink_entry, entry.path)
        await self.committer.sync_directory(entry.path.parent)


def _inodes(path: Path) -> tuple[int, int]:
    """Inodes of a message file and of its state record (0: none; -1: no message file, a line never valid)."""
    try:
        eml = os.stat(path).st_ino
    except FileNotFoundError:
        return -1, -1
    try:
        return eml, os.stat(path.with_suffix(".env")).st_ino
    except FileNotFoundError:
        return eml, 0


def _move_same_fs(source: Path, target: Path) -> None:
    os.rename(source, target)


def _unlink_entry(path: Path) -> None:
    """Remove a queue file, its state record and transcripts (missing is fine: removal is idempotent)."""
    path.unlink(missing_ok=True)
    path.with_suffix(".env").unlink(missing_ok=True)
    path.with_suffix(".rtr").unlink(missing_ok=True)


def _append(path: Path, text: str) -> None:
    # Transcripts name recipients and remote replies: private like the messages (0600, whatever the umask).
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with open(fd, "a", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write(text)
