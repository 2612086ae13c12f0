"""Remote delivery: picks due queue entries, groups recipients by destination, sends, records, retries, notifies.

Invariants: a recipient is in at most one attempt at a time: an attempt claims the recipients it sends to
and releases them with its outcome (``engine.qmgr.fate``; local delivery claims its own); every recipient
ends delivered, failed (with an NDR to the sender, or Badmail when there is nobody to tell) or
still pending with a next attempt; the state record is saved before the entry leaves memory.
Finishing an attempt can fail (disk full, Queue or Badmail gone): its claim is then released
and due again at its next retry, each attempt of a batch is finished on its own, and the error is
logged and published; whatever the attempt still owed (state, notices, removal) is done next time.
Destinations are delivered concurrently within the global and per-domain connection limits;
one connection carries up to ``max_messages_per_connection`` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from engine.bounce import dsn
from engine.bounce.badmail import write_badmail
from engine.conf.addresses import classify, domain_of
from engine.conf.config import Config, DomainConfig
from engine.counters import Counters
from engine.errors import EngineError, StateError
from engine.events import ErrorEvent, EventBus, MessageBadmailed, QueueChanged
from engine.log.record import ProtocolRecord
from engine.qmgr import fate, schedule
from engine.qmgr.etrn import holds, is_held
from engine.qmgr.fate import Claim
from engine.qmgr.gates import Gate, Places
from engine.qmgr.queue import QueueEntry, QueueStore
from engine.smtp import binarymime
from engine.smtp.outbound import DEFERRED, DELIVERED, FAILED, Job, Outcome, Settings, Tally, Transcript, deliver
from engine.smtp.resolver import Resolver, RouteError, Target, resolve_route, route_for
from engine.smtp.scache import ConnectionCache, Held, Idle
from engine.smtp.tls_policy import outbound_verification
from engine.store.envelope import BINARYMIME, BODY, RecipientState, StateRecord
from engine.store.mailroot import Mailroot

log = logging.getLogger(__name__)

SubmitFn = Callable[[str, tuple[str, ...], bytes, str], Awaitable[str]]
_NOT_TRIED = Outcome(DEFERRED, "451 4.4.0 Not attempted", "4.4.0")
IDLE_WAKE = 30.0  # look at the queue at least this often even when nothing is due
FINISH_GRACE = 10.0  # seconds a stop lets attempts whose outcome is known record it (state, removal, notices)
FULL_RETURN_LIMIT = 50 * 1024  # RET=FULL returns the whole message only up to this size (Postfix's default)


@dataclass
class _Round:
    """One delivery attempt of one entry, possibly spread over several destinations."""

    entry: QueueEntry
    claim: Claim  # the recipients this attempt acts on, released when it is concluded
    outstanding: int
    started: float
    transcripts: list[tuple[str, ...]] = field(default_factory=list)  # lines of the dialogue, per connection
    relayed: list[str] = field(default_factory=list)  # delivered to a next hop that took no DSN request


def headers_of(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


class RemoteDelivery:
    def __init__(self, store: QueueStore, resolver: Resolver, config: Callable[[], Config], bus: EventBus,
                 counters: Counters, submit: SubmitFn, mailroot: Mailroot,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.resolver = resolver
        self._config = config
        self.bus = bus
        self.counters = counters
        self.submit = submit
        self.mailroot = mailroot
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._finishing: set[asyncio.Task[None]] = set()  # recording a known outcome: a stop lets them end
        self.cache = ConnectionCache()  # idle connections kept a moment for the next batch
        self._heap: list[tuple[float, str]] = []  # (when, queue id): equal times go in id (arrival) order
        # Both limits are read at every connection, so a changed setting applies at once (engine.qmgr.gates).
        self._global = Gate(lambda: self._config().server.max_outbound_connections)
        self._per_domain: dict[str, Gate] = {}
        self.etrn_released: dict[str, float] = {}  # domain -> when ETRN released the mail queued until then
        self._unfinished: dict[str, _Round] = {}  # attempts whose finishing failed: finished again when due
        self.protocol_log: Callable[[ProtocolRecord], None] | None = None  # outbound lines of the protocol log

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for entry in self.store.entries.values():
            self.wake_at(entry.queue_id, entry.record.next_attempt)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        # Sending is cancelled; recording an outcome already known is let finish (a message the remote took
        # would otherwise be sent again after the restart). A batch being cancelled may still spawn its
        # messages' finishing, so look again until nothing runs: no attempt may conclude after the commit
        # threads it needs are closed.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINISH_GRACE
        while tasks := [t for t in (self._task, *self._tasks) if t is not None and not t.done()]:
            for task in tasks:
                if task not in self._finishing or loop.time() >= deadline:
                    task.cancel()
            await asyncio.wait(tasks, timeout=max(deadline - loop.time(), 0.05))
            self._task = None
        self._tasks.clear()
        await self.cache.close()
        for entry in self.store.entries.values():
            # Its attempts were cancelled with their claims; local delivery's claims are its own to release.
            entry.claims = fate.cancelled(entry.claims, ("remote", "notice", "finish", "bounce"))

    def wake_at(self, queue_id: str, when: float) -> None:
        """Look at this message again at ``when`` (new message: now; after an attempt: the schedule's time)."""
        heapq.heappush(self._heap, (when, queue_id))
        if when <= self.clock():
            self._wake.set()

    def wake_many(self, wakes: list[tuple[float, str]]) -> None:
        """``wake_at`` for a batch of (when, id), the recovered queue: one heap build rather than a push each
        (pushes when the batch is small beside the heap: a build costs the whole heap)."""
        if len(wakes) * 8 < len(self._heap):
            for wake in wakes:
                heapq.heappush(self._heap, wake)
        else:
            self._heap.extend(wakes)
            heapq.heapify(self._heap)
        if self._heap and self._heap[0][0] <= self.clock():
            self._wake.set()

    def kick(self, queue_id: str | None = None) -> None:
        """Look at the queue now (new message, Retry Now, ETRN)."""
        if queue_id is not None:
            self.wake_at(queue_id, 0.0)
        self._wake.set()

    # -- scheduling -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            # One synchronous pass over what is due (10,000 messages after a Retry Now): the collector would
            # otherwise walk the whole queue's objects again and again while the pass allocates; it runs after.
            collecting = gc.isenabled()
            gc.disable()
            try:
                self._pass()
            finally:
                if collecting:
                    gc.enable()
            delay = min(self._heap[0][0] - self.clock(), IDLE_WAKE) if self._heap else IDLE_WAKE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.0))

    def _pass(self) -> None:
        now = self.clock()
        due: list[tuple[QueueEntry, list[RecipientState]]] = []
        seen: set[str] = set()
        routes: dict[str, tuple[bool, bool]] = {}  # each recipient domain classified once a pass
        while self._heap and self._heap[0][0] <= now:
            _, queue_id = heapq.heappop(self._heap)
            entry = self.store.entries.get(queue_id)
            if entry is None or queue_id in seen or entry.record.frozen:
                continue  # gone, duplicate wake-up, or frozen
            seen.add(queue_id)
            remote = self._remote_pending(entry, routes)
            if not remote:
                unfinished = self._unfinished.get(queue_id)
                claim = entry.claim("finish", (), whole=True) if unfinished is not None else None
                if unfinished is not None and claim is not None:
                    # nothing to send, but notices, state or removal still owed
                    del self._unfinished[queue_id]
                    unfinished.claim = claim
                    self._spawn(self._conclude_safely(unfinished, self.clock()), finishing=True)
                continue
            remote = entry.free(remote)
            if not remote:
                continue  # every one is in an attempt already, which wakes it again when done
            if entry.record.next_attempt <= now:
                due.append((entry, remote))
            else:
                self._spawn(self._delay_notice_if_due(entry))
        if due:
            self._dispatch(due)

    def _spawn(self, work: Coroutine[Any, Any, None], *, finishing: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if finishing:
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)

    def _decide(self, entry: QueueEntry, now: float) -> schedule.Decision:
        record = entry.record
        return schedule.timing(self._config().server, local=False).decide(
            record.arrived, record.attempts, record.last_attempt, now, delay_notice_sent=record.delay_notice_sent)

    async def _delay_notice_if_due(self, entry: QueueEntry) -> None:
        """The delay notice has its own time: it is not held back until the next attempt.

        Only the notice is carried out here; expiry and failures are the next attempt's to settle."""
        now = self.clock()
        decision = self._decide(entry, now)
        plan = fate.settle(_seen(entry.record), frozenset(r.address for r in self._remote_pending(entry)),
                           frozenset(), decision, now)
        claim = entry.claim("notice", plan.delay) if plan.delay else None
        if claim is not None:
            try:
                await self._notify(entry, "delay", [r for r in entry.pending() if claim.covers(r.address)],
                                   self._config(), retry_until=decision.expires_at)
                entry.record.delay_notice_sent = True
                await self.store.save_state(entry)
            except Exception as error:  # tried again at the next attempt, and said
                self._report(entry, "the delay notice could not be completed", error)
            finally:
                entry.release(claim)
        self.wake_at(entry.queue_id, entry.record.next_attempt)

    def _remote_pending(self, entry: QueueEntry,
                        routes: dict[str, tuple[bool, bool]] | None = None) -> list[RecipientState]:
        """Pending recipients in remote domains, less those held for ETRN; ``routes`` caches (remote, ETRN
        domain) per recipient domain for the caller's pass."""
        domains = self._config().effective_domains
        routes = {} if routes is None else routes
        result = []
        for rcpt in entry.pending():
            domain = domain_of(rcpt.address)
            known = routes.get(domain)
            if known is None:
                known = routes[domain] = (classify(domain, domains).kind == "remote", holds(domain, domains))
            remote, etrn = known
            if not remote:
                continue
            if etrn and is_held(rcpt.address, entry.record.arrived, domains, self.etrn_released):
                continue  # held until the remote side asks with ETRN
            result.append(rcpt)
        return result

    def _dispatch(self, due: list[tuple[QueueEntry, list[RecipientState]]]) -> None:
        config = self._config()
        by_destination: dict[str, list[tuple[_Round, list[str]]]] = defaultdict(list)
        for entry, recipients in due:
            claim = entry.claim("remote", [rcpt.address for rcpt in recipients])
            if claim is None:
                continue  # taken meanwhile (cannot happen between _run and here: no await), never twice
            groups: dict[str, list[str]] = defaultdict(list)
            for rcpt in recipients:
                groups[domain_of(rcpt.address)].append(rcpt.address)
            attempt = _Round(entry, claim, len(groups), self.clock())
            for domain, addresses in groups.items():
                by_destination[domain].append((attempt, addresses))
        per_connection = config.server.max_messages_per_connection
        for domain, items in by_destination.items():
            for start in range(0, len(items), per_connection):
                self._spawn(self._deliver_batch(domain, items[start : start + per_connection]))

    def _domain_gate(self, domain: str) -> Gate:
        gate = self._per_domain.get(domain)
        if gate is None:
            for idle in [name for name, known in self._per_domain.items() if known.idle][:8]:
                del self._per_domain[idle]  # a gate per domain ever seen would only grow
            gate = self._per_domain[domain] = Gate(lambda: self._config().server.max_outbound_per_domain)
        return gate

    @contextlib.asynccontextmanager
    async def _connection_places(self, domain: str, room: int) -> AsyncIterator[tuple[Held, Idle | None]]:
        """A connection's places in the limits (all connections, this domain), left when the block ends unless the
        connection went idle into the cache with them. At a full limit, an idle connection of this destination is
        taken over with its places; else one idle connection is closed to make room (idle ones count)."""
        gate = self._domain_gate(domain)
        adopted: Idle | None = None
        places: Held | None = None
        if gate.full or self._global.full:
            adopted = self.cache.adopt(domain, room, self._config().server.max_messages_per_connection)
            if adopted is not None and adopted.places is not None:
                places = adopted.places
            elif adopted is not None:  # kept without places (not by this engine): not one to count on
                self.cache.dismiss(adopted.client)
                adopted = None
            else:
                self.cache.evict(domain if gate.full else None)
        if places is None:
            places = await Places.enter(self._global, gate)
        try:
            yield places, adopted
        finally:
            places.leave()
            if adopted is not None and not adopted.in_use:
                self.cache.dismiss(adopted.client)  # taken over, then not used (another target, or nothing to send)

    def limits_changed(self) -> None:
        """The connection limits may have been raised: let waiting connections in now."""
        self._global.resized()
        for gate in self._per_domain.values():
            gate.resized()

    @property
    def connections(self) -> tuple[int, dict[str, int]]:
        """Outbound connection slots in use: in all, and per destination domain."""
        return self._global.inside, {d: g.inside for d, g in self._per_domain.items() if g.inside}

    # -- one connection's worth of messages -----------------------------------------------------

    async def _deliver_batch(self, domain: str, batch: list[tuple[_Round, list[str]]]) -> None:
        config = self._config()
        remote_domain = classify(domain, config.effective_domains).domain
        transcript = Transcript(self.protocol_log)
        jobs: list[Job] = []
        attempts = {attempt.entry.queue_id: (attempt, addresses) for attempt, addresses in batch}  # not yet done
        try:
            async with self._connection_places(domain, len(batch)) as (places, adopted):
                # Read the messages only once a connection slot is ours: a large queue made due at once
                # must not sit in memory while it waits. All of the batch in one trip to a thread.
                contents = await asyncio.get_running_loop().run_in_executor(None, self._read_batch, batch)
                for (attempt, addresses), content in zip(batch, contents, strict=True):
                    if content is None:
                        if attempt.entry.queue_id not in self.store.entries:
                            continue  # deleted by the administrator meanwhile: nothing to send
                        raise FileNotFoundError(str(attempt.entry.path))
                    record = attempt.entry.record
                    params = {r.address: (r.notify, r.orcpt) for r in record.recipients
                              if r.address in addresses and (r.notify or r.orcpt)}
                    jobs.append(Job(attempt.entry.queue_id, self._mail_from(record.sender, config),
                                    list(addresses), content, ret=record.ret, envid=record.envid,
                                    rcpt_params=params, binarymime=record.extra.get(BODY) == BINARYMIME))
                try:
                    targets = await self._targets(domain, config, transcript)
                except RouteError as error:
                    transcript.note(f"*** {error.reply}")
                    status = FAILED if error.permanent else DEFERRED
                    for job in jobs:
                        for rcpt in job.recipients:
                            job.outcomes[rcpt] = Outcome(status, error.reply, error.enhanced)
                else:
                    self.counters.outbound_connections_current += 1
                    tally = Tally()
                    try:
                        await deliver(targets, jobs, self._settings(config, remote_domain), transcript, tally,
                                      self.cache, config.server.max_messages_per_connection,
                                      lambda job: self._part_done(attempts.pop(job.queue_id), job, transcript),
                                      places=places, destination=domain, adopted=adopted)
                    finally:
                        self.counters.outbound_connections_current -= 1
                        self.counters.outbound_connections_total += tally.connections
                        self.counters.outbound_connections_refused += tally.refused
                        self.counters.total_connection_errors += tally.errors
                        self.counters.message_bytes_sent_total += sum(job.bytes_sent for job in jobs)
                        self.counters.messages_sent_total += sum(job.sent for job in jobs)
        except Exception as error:  # a bug must not lose the messages: defer them and say so
            log.exception("delivery to %s failed unexpectedly", domain)
            transcript.note(f"*** internal error: {error!r}")
            for job in jobs:
                for rcpt in job.undecided():
                    job.outcomes[rcpt] = Outcome(DEFERRED, f"451 4.3.0 Internal error: {error}", "4.3.0")
        by_id = {job.queue_id: job for job in jobs}
        for queue_id, part in attempts.items():  # those not told done: not sent, deferred, or a failed session
            self._part_done(part, by_id.get(queue_id), transcript)

    def _read_batch(self, batch: list[tuple[_Round, list[str]]]) -> list[bytes | None]:
        """The batch's messages (worker thread); None for one whose file is gone."""
        contents: list[bytes | None] = []
        for attempt, _ in batch:
            try:
                contents.append(self.store.read_message(attempt.entry))
            except FileNotFoundError:
                contents.append(None)
        return contents

    def _part_done(self, part: tuple[_Round, list[str]], job: Job | None, transcript: Transcript) -> None:
        """A message's outcome at this destination is known: record it, and finish the message's attempt once
        every destination is done, at once, while the batch goes on (its removal or state write overlaps the
        sending of the next messages)."""
        attempt, addresses = part
        self._record(attempt.entry, addresses, job.outcomes if job else {})
        if job is not None and not job.dsn_passed:
            attempt.relayed += [r for r in addresses if job.outcomes.get(r, _NOT_TRIED).status == DELIVERED]
        attempt.transcripts.append(tuple(transcript.lines))
        attempt.outstanding -= 1
        if attempt.outstanding == 0:
            self._spawn(self._finish(attempt), finishing=True)  # never raises

    async def _targets(self, domain: str, config: Config, transcript: Transcript) -> list[Target]:
        route = route_for(domain, config)
        targets = await resolve_route(route, self.resolver)
        self.counters.dns_queries_total = self.resolver.queries
        transcript.note("route: " + ", ".join(f"{t.host} [{t.address}]:{t.port}" for t in targets))
        return targets

    def _settings(self, config: Config, domain: DomainConfig | None) -> Settings:
        server = config.server
        tls_required = server.outbound_tls or bool(domain and domain.tls_required)
        verify, context = outbound_verification(tls_required, server.outbound_tls_verify, server.outbound_tls_ca_file)
        auth = domain.outbound_auth if domain is not None else "server"  # the domain's Outbound Security
        own_account = auth == "basic"
        username, password = (
            (domain.outbound_user, domain.outbound_password) if own_account and domain is not None
            else ("", "") if auth == "anonymous" else (server.outbound_user, server.outbound_password))
        return Settings(
            fqdn=config.fqdn,
            use_helo=bool(domain and domain.use_helo),
            tls_required=tls_required,
            verify_tls=verify,
            tls_context=context,
            username=username,
            password=password,
            auth_any_host=own_account,
            timeout=float(server.outbound_timeout),
            max_recipients=server.max_recipients,
        )

    def _mail_from(self, sender: str, config: Config) -> str:
        """Masquerade: the local domain in MAIL FROM becomes the masquerade domain (first hop only)."""
        masquerade = config.server.masquerade_domain
        if not masquerade or not sender:
            return sender
        if classify(domain_of(sender), config.effective_domains).kind != "local":
            return sender
        return f"{sender.rpartition('@')[0]}@{masquerade}"

    def _record(self, entry: QueueEntry, addresses: list[str], outcomes: dict[str, Outcome]) -> None:
        by_address = {r.address: r for r in entry.record.recipients}
        for address in addresses:
            rcpt = by_address[address]
            outcome = outcomes.get(address, _NOT_TRIED)
            rcpt.attempts += 1
            rcpt.last_error = "" if outcome.status == DELIVERED else outcome.reply
            rcpt.enhanced = outcome.enhanced
            rcpt.remote = outcome.remote
            rcpt.status = fate.step(rcpt.status, fate.outcome_event(outcome.status))

    # -- after an attempt -----------------------------------------------------------------------

    async def _finish(self, attempt: _Round) -> None:
        entry = attempt.entry
        record = entry.record
        now = self.clock()
        record.attempts += 1
        record.last_attempt = now
        await self._conclude_safely(attempt, now)

    async def _conclude_safely(self, attempt: _Round, now: float) -> None:
        """Conclude; on any failure leave the entry retryable at its next retry and say why."""
        entry = attempt.entry
        if entry.queue_id not in self.store.entries:  # deleted by the administrator during the attempt
            self._let_go(attempt)
            self._unfinished.pop(entry.queue_id, None)
            return
        # Deleted under the engine (the Queue directory removed): nothing to send. Asked only when the file is
        # still needed (a retry, or a notice that quotes it): a message simply delivered leaves without a stat.
        needed = any((r.status == "pending" and attempt.claim.covers(r.address))
                     or (r.status == "failed" and not r.reported) for r in entry.record.recipients) or attempt.relayed
        if needed and not entry.path.exists():
            self._report(entry, "the queued message file is gone; the message leaves the queue",
                         FileNotFoundError(str(entry.path)))
            self._let_go(attempt)
            self._unfinished.pop(entry.queue_id, None)
            with contextlib.suppress(OSError):
                await self.store.remove(entry, "lost")
            return
        try:
            await self._conclude(attempt, now)
        except Exception as error:  # a claim never released would keep its recipients from every attempt
            self._report(entry, "finishing a delivery attempt failed; it is tried again at the next retry", error)
            self._unfinished[entry.queue_id] = attempt
            decision = self._decide(entry, now)
            retry_at = decision.retry_at if decision.retry_at is not None else \
                schedule.next_attempt(max(entry.record.attempts, 1), now, self._config().server.retry_intervals_min)
            entry.record.next_attempt = retry_at
            self._let_go(attempt)
            if entry.queue_id in self.store.entries:
                self.wake_at(entry.queue_id, retry_at)

    def _let_go(self, attempt: _Round) -> None:
        """The attempt's outcome is recorded: its recipients are free for the next one."""
        entry, claim = attempt.entry, attempt.claim
        if any(held is claim for held in entry.claims):
            entry.release(claim)
            if claim.whole:
                self.store.wake_local(entry.queue_id)  # local recipients it kept local delivery from

    def _report(self, entry: QueueEntry, what: str, error: Exception) -> None:
        log.error("%s: %s: %s", entry.queue_id, what, error)
        self.bus.publish(ErrorEvent("queue", f"{entry.queue_id}: {what}: {error}"))

    async def _conclude(self, attempt: _Round, now: float) -> None:
        """Transcript, notices, next attempt, then save or remove: each step done once, even when repeated."""
        entry = attempt.entry
        record = entry.record
        config = self._config()
        waiting = frozenset(r.address for r in self._remote_pending(entry) if attempt.claim.covers(r.address))
        decision = self._decide(entry, now)
        plan = fate.settle(_seen(record),
                           waiting, frozenset(attempt.relayed), decision, now)
        by_address = {r.address: r for r in record.recipients}
        # Not for a message that leaves the queue now: its transcript file goes with it.
        if attempt.transcripts and plan.leaves is None \
                and (waiting or plan.failure or entry.path.with_suffix(".rtr").exists()):
            # Transcripts are for messages that did not simply go (IIS 4 kept them for failed attempts).
            # They are diagnostics: one that cannot be written must not hold the message back.
            try:
                await self.store.append_transcript(entry, f"=== attempt {record.attempts} at "
                                                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}\n"
                                                   + "".join("\n".join(lines) + "\n"
                                                             for lines in attempt.transcripts))
            except OSError as error:
                self._report(entry, "the transcript could not be written", error)
            attempt.transcripts = []
        for address in plan.expire:
            rcpt = by_address[address]
            rcpt.status = fate.step(rcpt.status, "expired")
            rcpt.enhanced = dsn.expired_status(rcpt.enhanced or "4.0.0")
            rcpt.last_error = (f"Delivery time expired after {config.server.expiration_min} minutes; "
                               f"last error: {rcpt.last_error or 'none'}")
        record.last_error = next((r.last_error for r in record.recipients if r.last_error), "")
        if plan.failure:
            failed = [by_address[a] for a in plan.failure]
            await self._notify(entry, "failure", failed, config)
            for rcpt in failed:
                rcpt.reported = True
        if plan.relay:
            await self._notify(entry, "relay", [by_address[a] for a in plan.relay], config)
            attempt.relayed = []
        if plan.delay:
            await self._notify(entry, "delay", [by_address[a] for a in plan.delay], config,
                               retry_until=decision.expires_at)
            record.delay_notice_sent = True
        if plan.retry_at is not None:
            record.next_attempt = plan.retry_at
            self.counters.message_send_retries += 1
        if plan.leaves is None:
            await self.store.save_state(entry)
            self._let_go(attempt)
            replies = "; ".join(f"{r.address}: {r.last_error}" for r in record.recipients if r.last_error)
            self.bus.publish(QueueChanged(entry.queue_id, "attempted", replies[:1000]))
            if plan.wake_at is not None:
                self.wake_at(entry.queue_id, plan.wake_at)
        else:
            self._let_go(attempt)
            await self.store.remove(entry, plan.leaves)
        self._unfinished.pop(entry.queue_id, None)

    async def notify_local_delivery(self, entry: QueueEntry, recipients: list[RecipientState]) -> None:
        """Success notices (NOTIFY=SUCCESS) for recipients just written to Drop."""
        for rcpt in recipients:
            rcpt.enhanced = "2.0.0"
            rcpt.last_error = "delivered to the Drop directory"
        await self._notify(entry, "success", recipients, self._config())

    async def local_failure(self, entry: QueueEntry, recipients: list[RecipientState]) -> None:
        """Drop could not be written: the local delay-notification and expiration times apply (IIS's Local).

        The caller (local delivery) holds the claim of ``recipients`` until this returns."""
        if not recipients:
            return
        record = entry.record
        config = self._config()
        now = self.clock()
        # The local schedule decides (expiry, delay notice); local delivery keeps its own retry pace.
        attempts = max(1, *(r.attempts for r in recipients))
        decision = schedule.timing(config.server, local=True).decide(
            record.arrived, attempts, now, now, delay_notice_sent=record.delay_notice_sent)
        plan = fate.settle(_seen(record),
                           frozenset(r.address for r in recipients), frozenset(), decision, now)
        by_address = {r.address: r for r in record.recipients}
        for address in plan.expire:
            rcpt = by_address[address]
            rcpt.status = fate.step(rcpt.status, "expired")
            rcpt.enhanced = dsn.expired_status("4.3.0")
        if plan.failure:
            failed = [by_address[a] for a in plan.failure]
            await self._notify(entry, "failure", failed, config)
            for rcpt in failed:
                rcpt.reported = True
        if plan.delay:
            await self._notify(entry, "delay", [by_address[a] for a in plan.delay], config,
                               retry_until=decision.expires_at)
            record.delay_notice_sent = True
        if plan.leaves is None:
            self.counters.message_delivery_retries += 1  # local delivery is tried again (IIS: Delivery Retries)
            await self.store.save_state(entry)
        else:
            await self.store.remove(entry, plan.leaves)

    async def bounce(self, entry: QueueEntry, reason: str) -> None:
        """Bounce Now: every pending recipient fails at once with ``reason``; the sender gets one NDR."""
        claim = entry.claim("bounce", (), whole=True)
        if claim is None:
            raise StateError(f"message {entry.queue_id} is being delivered right now; try again in a moment")
        try:
            record = entry.record
            now = self.clock()
            plan = fate.settle(_seen(record), frozenset(r.address for r in entry.pending()), frozenset(),
                               self._decide(entry, now), now, bounce=True)
            by_address = {r.address: r for r in record.recipients}
            for address in plan.bounce:
                rcpt = by_address[address]
                rcpt.status = fate.step(rcpt.status, "bounced")
                rcpt.enhanced = reason.split(" ", 1)[0]
                rcpt.last_error = reason
                rcpt.notify = ""  # the administrator's bounce always tells the sender
            failed = [by_address[a] for a in plan.failure]
            await self._notify(entry, "failure", failed, self._config())
            for rcpt in failed:
                rcpt.reported = True
            if plan.leaves is None:  # (every pending recipient was bounced: only a bug keeps it)
                await self.store.save_state(entry)
            else:
                await self.store.remove(entry, plan.leaves)
        finally:
            entry.release(claim)

    async def _notify(self, entry: QueueEntry, kind: dsn.Kind, recipients: list[RecipientState], config: Config,
                      retry_until: float | None = None) -> None:
        record = entry.record
        action: dsn.Action = _ACTIONS[kind]
        wanted = [r for r in recipients if dsn.wants_notice(r.notify, action)]
        if not wanted:
            return
        message = await asyncio.get_running_loop().run_in_executor(None, self.store.read_message, entry)
        headers = dsn.header_section(message)
        statuses = [
            dsn.RecipientStatus(
                final_recipient=r.address, original_recipient=r.orcpt or None, action=action,
                status=_status_for(kind, r.enhanced),
                diagnostic=r.last_error, remote_mta=r.remote or None,
                last_attempt=record.last_attempt or None,
                will_retry_until=retry_until if kind == "delay" else None,
            )
            for r in wanted
        ]
        if dsn.should_badmail(record.sender) or dsn.is_dsn(headers):
            if kind == "failure":  # nobody to tell: never an NDR of an NDR
                self._badmail(entry, message, dsn.badmail_cause(headers), statuses)
            return
        full = record.ret.upper() == "FULL" and len(message) <= FULL_RETURN_LIMIT
        returned = message if full else None
        if returned is not None and record.extra.get(BODY) == BINARYMIME:
            try:  # the notice goes by DATA like any message: the copy it returns must be converted too
                returned = binarymime.convert(message)
            except binarymime.Unconvertible:
                returned = None  # (a signed message that cannot change: its header section only)
        sender, rcpts, content = dsn.build_dsn(
            kind=kind, reporting_mta=config.fqdn, original_sender=record.sender, original_headers=headers,
            original_message=returned, recipients=statuses, arrival=record.arrived,
            envid=record.envid or None, postmaster=f"postmaster@{config.default_domain.name}",
            ndr_copy_to=config.server.ndr_copy_to, now=self.clock(),
        )
        try:
            await self.submit(sender, rcpts, content, "dsn")
        except EngineError as error:
            self.counters.total_dsn_failures += 1
            log.error("could not queue a %s notice for %s: %s", kind, entry.queue_id, error)
            self.bus.publish(ErrorEvent("dsn", f"{entry.queue_id}: could not queue the {kind} notice: {error}"))
            if kind == "failure":
                self._badmail(entry, message, f"The non-delivery report could not be queued: {error}", statuses)
            return
        if kind == "failure":
            self.counters.ndrs_generated += 1

    def _badmail(self, entry: QueueEntry, message: bytes, cause: str,
                 statuses: list[dsn.RecipientStatus]) -> None:
        reason = dsn.badmail_reason(cause, statuses)
        name = write_badmail(self.mailroot, message, reason, sender=entry.record.sender,
                             recipients=[s.final_recipient for s in statuses], source="delivery",
                             extra={"queue-id": entry.queue_id})
        # Counted from the event, in one place (VirtualServer), like every other Badmail item.
        self.bus.publish(MessageBadmailed(name, reason, "delivery",
                                          "ndr_of_dsn" if cause == "ndr_of_dsn" else "general_failure"))


def _seen(record: StateRecord) -> list[fate.Seen]:
    """The recipients as ``fate.settle`` sees them."""
    return [fate.Seen(r.address, r.status, r.reported) for r in record.recipients]


_ACTIONS: dict[str, dsn.Action] = {"failure": "failed", "delay": "delayed", "success": "delivered",
                                    "relay": "relayed"}


def _status_for(kind: str, enhanced: str) -> str:
    """A status whose class fits the DSN action: failed → 4/5 as recorded, delayed → 4.x.x, success → 2.x.x."""
    if kind in ("success", "relay"):
        return enhanced if enhanced.startswith("2.") else "2.0.0"
    status = enhanced if enhanced[:1] in ("4", "5") and enhanced.count(".") == 2 else "4.0.0"
    return dsn.temporary(status) if kind == "delay" else status
