"""The virtual server: composes the parts and is the facade the manager window and the command line use.

States follow the IIS metabase ServerState: starting, started, stopping, stopped, pausing, paused,
continuing. Pause refuses new connections (421) and keeps serving existing ones and delivering.
All facade methods are coroutines on the engine's loop; they take and return plain dataclasses
and raise only ``engine.errors`` exceptions.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.actor import current_actor
from engine.admin import mailroot_items as items
from engine.admin.control import ControlServer, socket_path
from engine.admin.control_ops import answer
from engine.admin.event_ids import EventEntry, Level
from engine.admin.event_log import EventLog, event_log_dir, read_entries
from engine.admin.operators import OPERATORS_NAME, delete_operator, operator_store, set_operator_role
from engine.admin.perf import RATES, History, Sampler, with_derived
from engine.admin.pickup_history import PICKUP_SOURCE, BadmailCache, PickupRecord, pickup_records
from engine.admin.tracking import Query, Track, TrackingIndex, iter_tracks, tracking_path
from engine.bounce.badmail import BadmailItem, list_badmail
from engine.bounce.badmail_prune import BadmailPruner
from engine.cleanup.commit_process import CleanupCommitter
from engine.cleanup.intake import Intake
from engine.conf import config as domain_ops
from engine.conf.config import Config, DomainConfig
from engine.conf.config_file import validate_config
from engine.conf.hostport import join_hostport, split_hostport
from engine.counters import Counters
from engine.errors import BindError, ConfigNotSavedError, EngineError, MailrootError, NotFoundError, StateError
from engine.events import (
    ConfigChanged,
    Event,
    EventBus,
    ListenerFailed,
    MessageBadmailed,
    MessageQueued,
    StateChanged,
)
from engine.log.protocol_log import ProtocolLog
from engine.log.record import ProtocolRecord
from engine.log.settings import current_log_file, log_settings
from engine.log.tail import LogLines, LogTail, read_lines, read_tail
from engine.oserrors import bind_failure, mailroot_failure
from engine.pickup.pickup_watch import PickupService, recover
from engine.qmgr.delivery import RemoteDelivery
from engine.qmgr.etrn import held_domains, holds, load_releases, releases_path, save_releases
from engine.qmgr.queue import QueueDetail, QueueEntry, QueueItem, QueuePage, QueueStore, read_offline
from engine.smtp.dns_check import DnsReport, check_name
from engine.smtp.resolver import Resolver
from engine.smtpd.inbound import make_protocol_factory
from engine.smtpd.machine import VERSION
from engine.smtpd.replies import reply
from engine.smtpd.security import Security
from engine.smtpd.services import InboundServices
from engine.smtpd.sessions import SessionInfo, SessionRegistry
from engine.smtpd.users import USERS_NAME, UserStore
from engine.store.commit import Committer
from engine.store.lock import MailrootLock
from engine.store.mailroot import Mailroot, split_drop_ref

if TYPE_CHECKING:
    from engine.admin.metrics import MetricsServer

log = logging.getLogger(__name__)

COMMIT_GRACE = 10.0  # seconds a stopping server waits for commits under way to be answered
QUEUE_COUNT_SPACING = 50  # the sampler counts the queue again after 50 times the last count took
QUEUE_COUNT_EXACT = 10_000  # below this many queued messages a counters request always counts afresh

STATES = ("starting", "started", "stopping", "stopped", "pausing", "paused", "continuing")
QUEUE_SORT_KEYS: dict[str, Callable[[QueueEntry], object]] = {  # on entries: only the page shown is copied
    "age": lambda entry: entry.field("arrived"),
    "sender": lambda entry: entry.field("sender").lower(),
    "size": lambda entry: entry.size,
    "attempts": lambda entry: entry.field("attempts"),
    "next_retry": lambda entry: entry.field("next_attempt"),
    "domain": lambda entry: _first_domain(entry),
}


def _first_domain(entry: QueueEntry) -> str:
    rows = entry.recipient_rows()  # (a cold entry stays cold: the whole queue is sorted)
    pending = [row for row in rows if row[1] == "pending"] or rows
    return pending[0][0].rpartition("@")[2].lower() if pending else ""


ConfigTaker = Callable[[Config, Config], Awaitable[None]]  # (old, new): see VirtualServer.before_config


class VirtualServer:
    """One SMTP virtual server; create it on the loop that will run it."""

    def __init__(self, config: Config, *, sync: bool = True,
                 save_config: Callable[[Config], None] | None = None,
                 clock: Callable[[], float] = time.time, config_path: Path | None = None) -> None:
        self._config = config
        self.config_path = config_path  # where the configuration file is: the protocol log goes beside it
        self.clock = clock  # wall clock of the queue and the retry schedule; tests move it forward
        self._sync = sync
        self._save_config = save_config
        self.bus = EventBus()
        self.counters = Counters()
        self.sessions = SessionRegistry()
        self.mailroot = Mailroot.from_config(config)  # Badmail and the Drops follow apply_config
        self._state = "stopped"
        self._lock = MailrootLock(self.mailroot.lock_file)
        self._servers: dict[str, asyncio.Server] = {}
        self._bound: list[tuple[str, int]] = []
        self._committer: Committer | None = None
        self._queue: QueueStore | None = None
        self._delivery: RemoteDelivery | None = None
        self._resolver: Resolver | None = None
        self._intake: Intake | None = None
        self._pickup: PickupService | None = None
        self._badmail_seen = BadmailCache()  # Pickup history reads each Badmail item once
        self._paused = False
        self._control: ControlServer | None = None
        self.protocol_log: ProtocolLog | None = None
        self._event_log: EventLog | None = None
        self._services: list[InboundServices] = []  # of every listener: the protocol-log hook is switched in them
        self._tracking: TrackingIndex | None = None
        self.sampler: Sampler | None = None  # the performance counters, sampled each second while running
        self._metrics: MetricsServer | None = None
        self._queue_lengths_due = 0.0  # monotonic time the queue lengths are counted again
        self.security = Security()  # TLS contexts, the users file, the AUTH limiter: shared by all sessions
        self._pruner: BadmailPruner | None = None
        self._takers: list[ConfigTaker] = []  # parts applying their own settings first (the admin listener)
        self.bus.subscribe(self._count_event)

    # -- state ----------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    def _set_state(self, state: str) -> None:
        previous, self._state = self._state, state
        if previous != state:
            log.info("virtual server %s: %s", self._config.name, state)
            self.bus.publish(StateChanged(state, previous))

    @property
    def mailroot_path(self) -> Path:
        """The Mailroot directory this server owns."""
        return self.mailroot.root

    @property
    def bound_addresses(self) -> list[tuple[str, int]]:
        """The addresses actually listened on (a port 0 in the configuration becomes the real port)."""
        return list(self._bound)

    def config(self) -> Config:
        return self._config

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        return self.bus.subscribe(callback)

    def publish(self, event: Event) -> None:
        """Publish an event from outside the engine's parts (the admin server's AdminAction)."""
        self.bus.publish(event)

    async def start(self, *, offline: bool = False) -> None:
        """Start serving. ``offline``: own the Mailroot and its queue for administration (the command line
        when no engine runs) — no listener, no Pickup, no delivery; the state stays "stopped"."""
        if self._state != "stopped" or self._queue is not None:
            raise StateError(f"cannot start: the server is {self._state}")
        if offline:
            try:
                await self._open_parts()
                await self._store().begin_recovery()  # the command line needs the whole queue before it answers
            except BaseException:
                await self._stop_parts()
                raise
            return
        self._set_state("starting")
        self._event_log = EventLog(event_log_dir(self.mailroot.root), self.bus)
        self._event_log.start()
        try:
            await self._open_parts()
            self._control = ControlServer(functools.partial(answer, self), socket_path(self.mailroot.root))
            await self._control.start()
            self._start_protocol_log()
            self._tracking = TrackingIndex(tracking_path(self.mailroot.root), self.mailroot.queue, self.bus,
                                           badmail_dir=lambda: self.mailroot.badmail)
            await self._tracking.start()
            self.sampler = Sampler(self._sample_values, clock=self.clock)
            self.sampler.start()
            await self._start_metrics()
            await self._run_parts()
            self._store().begin_recovery()  # serving already: new mail is taken while the queue is read back
            self.security.check(self._config, self.bus)  # a bad certificate or users file is said now
        except BaseException:
            await self._stop_parts()
            self._set_state("stopped")
            await self._close_event_log()
            raise
        self._paused = False
        self._set_state("started")

    async def _open_parts(self) -> None:
        try:
            self.mailroot.root.mkdir(parents=True, exist_ok=True, mode=0o700)  # mail is private
            await asyncio.to_thread(self._lock.acquire)  # waits a moment for a `smtpsvc queue` command
        except OSError as error:
            raise MailrootError(mailroot_failure(self.mailroot.root, error)) from error
        await asyncio.to_thread(self._create_dirs, self.mailroot)
        for leftover in await asyncio.to_thread(self.mailroot.sweep_temps, queue=False):  # (Queue: QueueStore)
            log.info("removed %s, left by an interrupted write", leftover)
        self._committer = CleanupCommitter(sync=self._sync)
        self._queue = QueueStore(self.mailroot, self._committer, self.bus, self.config, clock=self.clock)
        self._queue.on_dropped = self._on_dropped
        self._intake = Intake(self.mailroot, self._committer, self._queue, self.bus, self.counters, self.config)
        self._resolver = Resolver(self._config.server.dns_servers, timeout=10.0)
        self._delivery = RemoteDelivery(self._queue, self._resolver, self.config, self.bus, self.counters,
                                        self._intake.submit, self.mailroot, clock=self.clock)
        self._delivery.etrn_released.update(await asyncio.to_thread(load_releases, releases_path(self.mailroot.root)))
        self._queue.on_added = self._delivery.kick
        self._queue.on_local_delivery = self._delivery.notify_local_delivery
        self._queue.on_local_failure = self._delivery.local_failure
        delivery = self._delivery
        self._queue.on_recovered = delivery.wake_many
        # Before listening: what is left in SortTemp was never acknowledged; new sessions spool there.
        await asyncio.to_thread(self._queue.clear_sorttemp)

    @staticmethod
    def _create_dirs(mailroot: Mailroot) -> None:
        """Create every directory, then check the places again with the directories real (symbolic links,
        bind mounts): a Badmail or Drop that is Pickup would loop for ever, so it never starts."""
        try:
            mailroot.create()
        except OSError as error:
            failed = Path(error.filename or mailroot.root)
            if failed.is_relative_to(mailroot.root):
                raise MailrootError(mailroot_failure(failed, error)) from error
            raise MailrootError(f"cannot use the folder {failed} (the Badmail or a Drop directory): "
                                f"{error.strerror or error}") from error
        problems = mailroot.conflicts()
        if problems:
            raise MailrootError("; ".join(f"{where}: {why}" for where, why in problems))

    async def _run_parts(self) -> None:
        assert self._queue is not None and self._delivery is not None
        self._queue.start()
        self._delivery.start()
        self._pruner = BadmailPruner(lambda: self.mailroot.badmail, self.config, self.bus, self.counters,
                                     clock=self.clock)
        self._pruner.start()
        await self._start_pickup()
        await self._listen()

    async def _start_pickup(self) -> None:
        assert self._intake is not None
        recover(self.mailroot)
        service = PickupService(self.mailroot, self._intake.submit, self.bus,
                                lambda: self._config.default_domain.name)
        await service.start()
        self._pickup = service

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics is served on (metrics_listen may say port 0), or None when it is off."""
        return self._metrics.port if self._metrics is not None else None

    async def _start_metrics(self) -> None:
        """Serve /metrics when metrics_listen is set; a failure is an event, never a reason to refuse mail."""
        if self._metrics is not None:
            await self._metrics.stop()
            self._metrics = None
        address = self._config.server.metrics_listen
        if not address or self.sampler is None:
            return
        sampler = self.sampler
        from engine.admin.metrics import MetricsServer  # aiohttp and prometheus-client: only when it is on

        metrics = MetricsServer(address, lambda: sampler.latest)
        try:
            await metrics.start()
        except OSError as error:
            reason = error.strerror or str(error)
            log.error("cannot serve /metrics on %s: %s", address, reason)
            self.bus.publish(ListenerFailed(address, reason))
            return
        self._metrics = metrics

    def _protocol_log_hook(self) -> Callable[[ProtocolRecord], None] | None:
        """What sessions report each command to: the protocol log, or nobody while logging is off."""
        enabled = self.protocol_log is not None and self._config.server.log_enabled
        return self.protocol_log.record if enabled and self.protocol_log is not None else None

    def _start_protocol_log(self) -> None:
        self.protocol_log = ProtocolLog(lambda: log_settings(self._config, self.config_path), self.bus, self.clock,
                                        f"smtpsvc {VERSION}")
        self.protocol_log.start()
        if self._delivery is not None:
            self._delivery.protocol_log = self.protocol_log.record

    async def _listen(self) -> None:
        """Make the listeners match the configured addresses: bind the new ones first, then close the
        ones no longer wanted, so a failed bind leaves every working listener as it was."""
        assert self._intake is not None
        loop = asyncio.get_running_loop()
        services = InboundServices(self.config, self._intake, self.sessions, self.counters, self.bus,
                                   lambda: self._paused, self._etrn, security=self.security,
                                   protocol_log=self._protocol_log_hook())
        self._services.append(services)
        factory = make_protocol_factory(services, loop)
        tls_factory = make_protocol_factory(services, loop, implicit_tls=True)
        wanted = [*self._config.server.listen, *(f"tls:{a}" for a in self._config.server.tls_listen)]  # SMTPS
        added: dict[str, asyncio.Server] = {}
        for key in wanted:
            if key in self._servers:
                continue
            address = key.removeprefix("tls:")
            host, port = split_hostport(address)
            try:
                added[key] = await loop.create_server(factory if key == address else tls_factory, host, port,
                                                      reuse_address=True, backlog=512)
            except OSError as error:
                for started in added.values():
                    started.close()
                sentence = bind_failure(address, error)
                self.bus.publish(ListenerFailed(address, sentence.removeprefix(f"cannot listen on {address}: ")))
                raise BindError(sentence) from error
        for address in [a for a in self._servers if a not in wanted]:
            self._servers.pop(address).close()
        self._servers.update(added)
        self._bound = [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1]))
            for address in wanted
            for sock in self._servers[address].sockets
        ]
        log.info("listening on %s", ", ".join(join_hostport(h, p) for h, p in self._bound))

    async def stop(self) -> None:
        if self._state == "stopped" and self._queue is not None:  # offline: just let go of the Mailroot
            await self._stop_parts()
            return
        if self._state in ("stopped", "stopping"):
            return
        self._set_state("stopping")
        await self._stop_parts()
        self._set_state("stopped")
        await self._close_event_log()

    async def _close_event_log(self) -> None:
        event_log, self._event_log = self._event_log, None
        if event_log is not None:
            await event_log.stop()

    async def _stop_parts(self) -> None:
        if self._metrics is not None:
            await self._metrics.stop()
            self._metrics = None
        if self.sampler is not None:
            await self.sampler.stop()
        if self._control is not None:
            await self._control.stop()
            self._control = None
        for server in self._servers.values():
            server.close()
        self._servers, self._bound, self._services = {}, [], []
        self.sessions.terminate_all(reply("shutting_down"))
        for _ in range(50):  # let closed sessions run their connection_lost
            if not len(self.sessions):
                break
            await asyncio.sleep(0.01)
        # A message whose DATA is complete is committed and answered 250 before its session closes.
        grace = asyncio.get_running_loop().time() + COMMIT_GRACE
        while self.sessions.committing() and asyncio.get_running_loop().time() < grace:
            await asyncio.sleep(0.01)
        if self._pickup is not None:
            await self._pickup.stop()
            self._pickup = None
        if self._pruner is not None:
            await self._pruner.stop()
            self._pruner = None
        if self._intake is not None:
            await self._intake.spools.close()
        if self._delivery is not None:
            await self._delivery.stop()
            self._delivery = None
        if self._queue is not None:
            await self._queue.stop()
            self._queue = None
        self._intake = None
        if self._committer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._committer.close)
            self._committer = None
        if self.protocol_log is not None:
            await self.protocol_log.stop()
            self.protocol_log = None
        if self._tracking is not None:
            await self._tracking.stop()
            self._tracking = None
        self.security.close()
        self._lock.release()

    async def pause(self) -> None:
        if self._state != "started":
            raise StateError(f"cannot pause: the server is {self._state}")
        self._set_state("pausing")
        self._paused = True
        self._set_state("paused")

    async def resume(self) -> None:
        """IIS "Continue"."""
        if self._state != "paused":
            raise StateError(f"cannot continue: the server is {self._state}")
        self._set_state("continuing")
        self._paused = False
        self._set_state("started")

    # -- configuration --------------------------------------------------------------------------

    def before_config(self, take: ConfigTaker) -> Callable[[], None]:
        """Have ``take(old, new)`` run before each changed configuration is taken — a part that applies its own
        settings, such as the admin server's listener. An EngineError from it refuses the whole change (nothing
        is taken); should a later step refuse it, ``take(new, old)`` goes back. Returns the remover."""
        self._takers.append(take)
        return lambda: self._takers.remove(take) if take in self._takers else None

    async def _untake(self, taken: list[ConfigTaker], new: Config, old: Config) -> None:
        for take in reversed(taken):
            try:
                await take(new, old)
            except EngineError as error:  # it keeps what it has; said, not raised over the first refusal
                log.error("going back to the previous settings failed: %s", error)

    async def apply_config(self, config: Config) -> None:
        """Validate and take a configuration; a changed listener list re-binds (old listeners kept on failure)."""
        validate_config(config)
        old = self._config
        changed = _changed_keys(old, config)
        if not changed:
            return
        if self._queue is not None:  # running (or offline): the new Badmail and Drops must exist before use
            wanted = Mailroot(self.mailroot.root)
            wanted.reconfigure(config)
            if (wanted.badmail, wanted.drops) != (self.mailroot.badmail, self.mailroot.drops):
                await asyncio.to_thread(self._create_dirs, wanted)
        taken: list[ConfigTaker] = []
        for take in list(self._takers):
            try:
                await take(old, config)
            except EngineError:
                await self._untake(taken, config, old)
                raise
            taken.append(take)
        self._config = config
        self.mailroot.reconfigure(config)
        if self._delivery is not None:
            self._delivery.limits_changed()  # raised outbound limits let waiting connections go now
        if self._resolver is not None:
            self._resolver.use_servers(config.server.dns_servers)
        if (old.server.listen, old.server.tls_listen) != (config.server.listen, config.server.tls_listen) \
                and self._servers:
            try:
                await self._listen()
            except BindError:
                self._config = old
                self.mailroot.reconfigure(old)
                await self._untake(taken, config, old)
                raise
        if self.protocol_log is not None:
            self.protocol_log.refresh()
            for services in self._services:  # sessions look at it for every command: off costs nothing
                services.protocol_log = self._protocol_log_hook()
        if "server.metrics_listen" in changed and self.sampler is not None:
            await self._start_metrics()
        self.bus.publish(ConfigChanged(tuple(changed), by=current_actor()))
        if self._state != "stopped":
            self.security.check(config, self.bus)
        if self._save_config is not None:
            try:
                self._save_config(config)
            except (OSError, EngineError) as error:
                raise ConfigNotSavedError(f"the settings are in effect but could not be saved: {error}") from error

    def domains(self) -> tuple[DomainConfig, ...]:
        return self._config.effective_domains

    # -- security -------------------------------------------------------------------------------

    def _users(self) -> UserStore:
        store = self.security.users(self._config)
        if store is None:
            raise StateError("no users file is configured (users_file); the first `smtpsvc user add NAME` makes "
                             "one beside the configuration file")
        return store

    def operators(self) -> UserStore:
        """The Operators (remote administrators): operators_file, else the file `smtpsvc operator add` makes
        beside the configuration file (where the admin server looks too)."""
        configured = self._config.server.operators_file
        if configured:
            return operator_store(Path(configured))
        if self.config_path is None:
            raise StateError("no operators file is configured (operators_file); `smtpsvc operator add` makes one")
        return operator_store(self.config_path.expanduser().resolve().parent / OPERATORS_NAME)

    async def list_operators(self) -> list[tuple[str, str]]:
        """The Operators and their roles: [(name, "admin" or "viewer")]."""
        store = self.operators()
        return await asyncio.to_thread(lambda: [(name, store.role(name) or "") for name in store.names()])

    async def add_operator(self, name: str, password: str, role: str = "admin") -> None:
        store = self.operators()
        await asyncio.to_thread(store.add, name, password, role)

    async def set_operator_password(self, name: str, password: str) -> None:
        store = self.operators()
        await asyncio.to_thread(store.set_password, name, password)

    async def delete_operator(self, name: str) -> None:
        """Delete an operator; StateError for the last admin (nobody could administer remotely any more)."""
        await asyncio.to_thread(delete_operator, self.operators(), name)

    async def set_operator_role(self, name: str, role: str) -> None:
        """Give an operator another role; StateError when that would leave no admin."""
        await asyncio.to_thread(set_operator_role, self.operators(), name, role)

    async def list_users(self) -> list[str]:
        return await asyncio.to_thread(self._users().names)

    async def add_user(self, name: str, password: str) -> None:
        """Add an account of AUTH; the first one (no users_file yet) makes the users file beside the
        configuration file and names it in users_file, as `smtpsvc user add` does on this computer."""
        store = self.security.users(self._config)
        if store is not None:
            await asyncio.to_thread(store.add, name, password)
            return
        if self.config_path is None:
            raise StateError("no users file is configured (users_file): set users_file first")
        path = self.config_path.expanduser().resolve().parent / USERS_NAME
        await asyncio.to_thread(UserStore(path).add, name, password)  # a bad name or password: nothing named
        await self.apply_config(replace(self._config, server=replace(self._config.server, users_file=str(path))))

    async def set_user_password(self, name: str, password: str) -> None:
        await asyncio.to_thread(self._users().set_password, name, password)

    async def delete_user(self, name: str) -> None:
        await asyncio.to_thread(self._users().delete, name)

    async def unlock_peer(self, address: str) -> None:
        """Lift an authentication lock-out of a client address now."""
        self.security.limiter.unlock(address)

    async def reload_certificate(self) -> None:
        """Read the certificate and key again now, and say what is wrong with them (they are also reloaded when
        they change)."""
        self.security.tls.forget()
        self.security.check(self._config, self.bus)

    async def add_domain(self, domain: DomainConfig) -> None:
        await self.apply_config(domain_ops.add_domain(self._config, domain))

    async def delete_domain(self, name: str) -> None:
        """Raises DomainError for the default domain ("The default domain cannot be deleted")."""
        await self.apply_config(domain_ops.delete_domain(self._config, name))

    async def set_default_domain(self, name: str) -> None:
        """The old default becomes an alias, as in IIS."""
        await self.apply_config(domain_ops.set_default_domain(self._config, name))

    async def rename_domain(self, old_name: str, new_name: str) -> None:
        await self.apply_config(domain_ops.rename_domain(self._config, old_name, new_name))

    async def update_domain(self, domain: DomainConfig) -> None:
        await self.apply_config(domain_ops.update_domain(self._config, domain))

    # -- sessions -------------------------------------------------------------------------------

    async def list_sessions(self) -> list[SessionInfo]:
        return self.sessions.list()

    async def session_transcript(self, session_id: str) -> list[str]:
        """The session's latest dialogue lines (bounded; AUTH secrets masked, message data never kept)."""
        lines = self.sessions.transcript(session_id)
        if lines is None:
            raise NotFoundError(f"no session {session_id} (it has ended)")
        return lines

    async def terminate_session(self, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFoundError(f"no session {session_id}")
        session.close(reply("terminated"))

    async def terminate_all_sessions(self) -> int:
        return self.sessions.terminate_all(reply("terminated"))

    # -- queue, badmail, counters ---------------------------------------------------------------

    @property
    def recovering(self) -> bool:
        """True while the queue is still being read back after the start: listings and counts are partial."""
        return self._queue is not None and self._queue.recovering

    def recovery_progress(self) -> tuple[int, int]:
        """(messages read back, messages found at start) of the queue's recovery."""
        return self._queue.recovery_progress() if self._queue is not None else (0, 0)

    async def wait_recovered(self) -> None:
        """Return once the queue found at start is wholly read back (at once when it is)."""
        if self._queue is not None:
            await self._queue.wait_recovered()

    async def list_queue(self, offset: int = 0, limit: int = 100, sort: str = "age",
                         descending: bool = False) -> QueuePage:
        key = QUEUE_SORT_KEYS.get(sort)
        if key is None:
            raise NotFoundError(f"unknown sort key {sort!r}; use one of {', '.join(QUEUE_SORT_KEYS)}")
        if self._queue is None:  # stopped: what the Queue folder holds, read-only
            found = await asyncio.to_thread(read_offline, self.mailroot.queue)
            found.sort(key=key, reverse=descending)  # type: ignore[arg-type]
            return QueuePage(self._snapshots(found[offset: offset + limit]), len(found), offline=True)
        entries = sorted(self._queue.entries.values(), key=key, reverse=descending)  # type: ignore[arg-type]
        return QueuePage(self._snapshots(entries[offset: offset + limit]), len(entries), self._queue.recovering)

    async def queue_page(self, after: str = "", limit: int = 5000) -> QueuePage:
        """The messages whose queue id sorts after ``after``, in id order, at most ``limit`` (keyset paging: a
        message that leaves the queue between two pages moves no other one to another page, as an offset would).
        Stopped: the Queue folder as it is, read-only."""
        if self._queue is None:
            found = await asyncio.to_thread(read_offline, self.mailroot.queue)
            by_id = {entry.queue_id: entry for entry in found}
            wanted = heapq.nsmallest(limit, filter(after.__lt__, by_id))
            return QueuePage(self._snapshots(by_id[queue_id] for queue_id in wanted), len(found), offline=True)
        entries = self._queue.entries
        wanted = heapq.nsmallest(limit, filter(after.__lt__, entries))  # (a quarter of sorting every id, per page)
        return QueuePage(self._snapshots(entries[queue_id] for queue_id in wanted), len(entries),
                         self._queue.recovering)

    def _snapshots(self, entries: Iterable[QueueEntry]) -> tuple[QueueItem, ...]:
        """Snapshots of ``entries``, each telling which of its recipient domains wait for ETRN."""
        domains = self._config.effective_domains
        if not any(domain.etrn_queue for domain in domains):
            return tuple(entry.snapshot() for entry in entries)
        released = self._delivery.etrn_released if self._delivery is not None else {}
        items = []
        for entry in entries:
            item = entry.snapshot()
            held = held_domains(item.pending, item.arrived, domains, released)
            items.append(replace(item, etrn_held=held) if held else item)
        return tuple(items)

    def _store(self) -> QueueStore:
        if self._queue is None:
            raise StateError("the server is not running")
        return self._queue

    async def queue_detail(self, queue_id: str) -> QueueDetail:
        """Envelope, per-recipient state, attempts with transcripts and the schedule ahead."""
        store = self._store()
        detail = store.detail(queue_id)
        return replace(detail, item=self._snapshots([store.require(queue_id)])[0])

    async def queue_items(self, queue_ids: Sequence[str]) -> list[QueueItem]:
        """The current snapshot of these messages (those no longer queued are left out)."""
        store = self._store()
        return list(self._snapshots(entry for queue_id in queue_ids if (entry := store.get(queue_id)) is not None))

    async def queue_subjects(self, queue_ids: Sequence[str]) -> dict[str, str]:
        """The Subject of these queued messages (those no longer queued are left out)."""
        return await asyncio.to_thread(items.queue_subjects, self.mailroot.queue, list(queue_ids))

    async def release_etrn(self, domain: str) -> int:
        """Release the mail held for ETRN to ``domain`` now, as an ETRN from that domain would (the manager's
        "Release"); the number of messages scheduled. Only for domains that queue for ETRN."""
        if not holds(domain, self._config.effective_domains):
            raise NotFoundError(f"{domain} does not queue mail for ETRN (remote domain, Advanced tab)")
        return await self.retry_now(domain=domain)

    async def retry_now(self, queue_ids: Sequence[str] | None = None, domain: str | None = None) -> int:
        """Retry Now: the given messages, every message for ``domain``, or (neither given) the whole queue."""
        store = self._store()
        if queue_ids is None:
            queue_ids = [e.queue_id for e in store.entries.values()
                         if domain is None or any(address.lower().endswith("@" + domain.lower())
                                                  for address, status, _, _ in e.recipient_rows()
                                                  if status == "pending")]
        if domain is not None and self._delivery is not None:
            self._delivery.etrn_released[domain.lower()] = self.clock()
            # Durable before the mail goes: after a restart, released-but-undelivered mail is not held again.
            await asyncio.to_thread(save_releases, releases_path(self.mailroot.root),
                                    dict(self._delivery.etrn_released))
        return await store.schedule_now(list(queue_ids), persist=self._state == "stopped")

    async def _etrn(self, domain: str) -> int | None:
        """ETRN from a client: only for remote domains marked "queue for remote triggered delivery"."""
        if not holds(domain, self._config.effective_domains):
            return None
        return await self.retry_now(domain=domain)

    async def freeze(self, queue_id: str) -> None:
        await self._store().set_frozen(queue_id, True)

    async def thaw(self, queue_id: str) -> None:
        await self._store().set_frozen(queue_id, False)
        if self._delivery is not None:
            self._delivery.kick(queue_id)

    async def delete_message(self, queue_id: str) -> None:
        await self._store().delete(queue_id)

    async def bounce_now(self, queue_id: str) -> None:
        """Return the message to its sender at once (NDR for every recipient still pending)."""
        store = self._store()
        entry = store.require(queue_id)
        if entry.active:
            raise StateError(f"message {queue_id} is being delivered right now; try again in a moment")
        assert self._delivery is not None
        await self._delivery.bounce(entry, "5.0.0 Returned by the administrator")

    async def list_badmail(self) -> list[BadmailItem]:
        return await asyncio.to_thread(list_badmail, self.mailroot.badmail)

    async def badmail_items(self, names: Sequence[str]) -> list[BadmailItem]:
        """These Badmail items (those gone are left out), read in one go."""
        return await asyncio.to_thread(items.badmail_items, self.mailroot.badmail, list(names))

    async def read_badmail(self, name: str) -> bytes:
        return await asyncio.to_thread(items.read_badmail_message, self.mailroot.badmail, name)

    async def delete_badmail(self, name: str) -> None:
        await asyncio.to_thread(items.delete_badmail, self.mailroot.badmail, name)

    async def resend_badmail(self, name: str) -> str:
        """Put a Badmail item back into Pickup (it is delivered again, or badmailed again with a new reason)."""
        return await asyncio.to_thread(items.resend_badmail, self.mailroot, name)

    def _drop_folder(self, ref: str) -> tuple[Path, str, str]:
        """(Drop directory, its label, file name) of a Drop reference ``domain/file`` or ``file``."""
        domain, name = split_drop_ref(ref)
        if not domain:
            return self.mailroot.drop, "", name
        if domain.lower() not in dict(self.mailroot.drops):
            raise NotFoundError(f"no such file: {ref} ({domain} is not a local domain)")
        folder = self.mailroot.drop_for(domain)
        return folder, self.mailroot.drop_label(folder), name

    async def list_drop(self) -> list[items.DropItem]:
        """Every Drop directory in use, each item named by the domain whose Drop it is (``DropItem.ref``)."""
        def read() -> list[items.DropItem]:
            return [item for folder, domains in self.mailroot.drop_folders()
                    for item in items.list_drop(folder, domains[0])]
        return await asyncio.to_thread(read)

    async def drop_items(self, refs: Sequence[str]) -> list[items.DropItem]:
        """These Drop items (``DropItem.ref``; those gone are left out), read in one go."""
        def read() -> list[items.DropItem]:
            found: list[items.DropItem] = []
            for ref in refs:
                try:
                    folder, label, name = self._drop_folder(ref)
                except NotFoundError:
                    continue
                found += items.drop_items(folder, [name], label)
            return found
        return await asyncio.to_thread(read)

    async def read_drop(self, ref: str) -> bytes:
        folder, _, name = self._drop_folder(ref)
        return await asyncio.to_thread(items.read_drop, folder, name)

    async def delete_drop(self, ref: str) -> None:
        folder, _, name = self._drop_folder(ref)
        await asyncio.to_thread(items.delete_drop, folder, name)

    async def resend_drop(self, ref: str) -> str:
        """A copy of a Drop file back into Pickup: delivered again to its envelope's recipients (the file stays)."""
        folder, _, name = self._drop_folder(ref)
        return await asyncio.to_thread(items.resend_drop, self.mailroot, folder, name)

    async def read_queued(self, queue_id: str, limit: int = 0) -> bytes:
        """The message of a queued entry, without its envelope lines; only its first ``limit`` bytes when
        ``limit`` is set (a preview of its header reads no more)."""
        store = self._store()
        return await asyncio.to_thread(store.read_message, store.require(queue_id), limit if limit > 0 else -1)

    async def list_pickup(self) -> list[items.PickupFile]:
        """What sits in the Pickup directory now (read-only; also while stopped)."""
        return await asyncio.to_thread(items.list_pickup, self.mailroot.pickup)

    async def preview_pickup(self, data: bytes) -> items.PickupPreview:
        return items.preview_pickup(data, self._config.default_domain.name)

    async def submit_to_pickup(self, data: bytes, name_hint: str = "") -> str:
        """Drop a message into Pickup (drag and drop): written elsewhere, then renamed in."""
        return await asyncio.to_thread(items.put_in_pickup, self.mailroot, data, name_hint)

    async def list_events(self, since: float | None = None, level: Level = "Information",
                          limit: int = 1000) -> list[EventEntry]:
        """The newest ``limit`` event-log entries from ``since`` on, at ``level`` or more severe, oldest first."""
        def read() -> list[EventEntry]:
            return list(deque(read_entries(event_log_dir(self.mailroot.root), since, level), maxlen=limit))

        if self._event_log is not None:
            await self._event_log.flush()
        return await asyncio.to_thread(read)

    async def track_messages(self, query: Query) -> list[Track]:
        """Message tracking: the messages that match, newest first, each with its timeline."""
        path = tracking_path(self.mailroot.root)
        if self._tracking is not None:
            await self._tracking.flush()
        return await asyncio.to_thread(lambda: list(iter_tracks(path, query)))

    async def check_dns(self, name: str, dns_servers: tuple[str, ...] | None = None) -> DnsReport:
        """Check DNS (Advanced Delivery): ``name``'s addresses and MX hosts, asked of ``dns_servers`` (the ones
        configured when None), as delivery would; also while stopped."""
        return await check_name(name, self._config.server.dns_servers if dns_servers is None else dns_servers)

    async def protocol_log_tail(self, limit: int = 1000) -> LogTail:
        """The newest ``limit`` entries of the protocol log file written now (the Protocol Log node; a line
        reaches the file within the writer's coalescing delay). Also while stopped."""
        settings = log_settings(self._config, self.config_path)
        path = current_log_file(settings, self.clock())
        entries, unreadable = await asyncio.to_thread(read_tail, path, settings.fmt, limit)
        return LogTail(str(path), settings.enabled, settings.fmt, tuple(entries), unreadable)

    async def protocol_log_lines(self, lines: int = 10, offset: int | None = None) -> LogLines:
        """The last ``lines`` lines of the protocol log file written now as they are in it or, from ``offset``,
        those written since (`smtpsvc log tail [-f]`, also over --connect). Also while stopped."""
        settings = log_settings(self._config, self.config_path)
        path = current_log_file(settings, self.clock())
        found, end, exists = await asyncio.to_thread(read_lines, path, lines, offset)
        return LogLines(str(path), settings.enabled, exists, tuple(found), end)

    async def pickup_history(self, limit: int = 500) -> list[PickupRecord]:
        """What became of the files put into Pickup, newest first, from any tool and any earlier run (the
        tracking index and Badmail; also while stopped)."""
        tracks = await self.track_messages(Query(source=PICKUP_SOURCE, limit=limit))
        badmail = await asyncio.to_thread(self._badmail_seen.items, self.mailroot.badmail)
        return pickup_records(tracks, badmail, limit)

    async def counters_snapshot(self) -> dict[str, float]:
        """Every counter now, with the derived sums and the "/sec" rates of the last second. A large queue is
        counted at most as often as the sampler counts it (`smtpsvc counters --watch` must not stall the loop)."""
        if self._queue is None or len(self._queue.entries) < QUEUE_COUNT_EXACT \
                or time.monotonic() >= self._queue_lengths_due:
            self._count_queue()
        values = with_derived(self.counters.snapshot())
        latest = self.sampler.latest if self.sampler is not None else {}
        values.update({name: latest.get(name, 0.0) for name in RATES})
        return values

    def counter_history(self, seconds: float | None = None) -> History:
        """The samples of the last ``seconds`` (all ten minutes kept: None)."""
        return self.sampler.history(seconds) if self.sampler is not None else History((), ())

    def _count_queue(self) -> None:
        if self._queue is None:
            return
        started = time.monotonic()
        lengths = self._queue.counts()
        self.counters.local_queue_length, self.counters.remote_queue_length = lengths.local, lengths.remote
        self.counters.local_retry_queue_length = lengths.local_retry
        self.counters.remote_retry_queue_length = lengths.remote_retry
        self.counters.messages_currently_undeliverable = lengths.undeliverable
        # Counting walks the whole queue: a sampler that counts at most 2 % of the time.
        self._queue_lengths_due = time.monotonic() + (time.monotonic() - started) * QUEUE_COUNT_SPACING

    def _sample_values(self) -> dict[str, float]:
        if time.monotonic() >= self._queue_lengths_due:
            self._count_queue()
        return self.counters.snapshot()

    @property
    def pickup_taking(self) -> bool:
        """Whether the Pickup service takes files now (the server runs and its Pickup is not waiting out a
        storage failure); a file put into Pickup otherwise waits there until it does."""
        return self._pickup is not None and self._pickup.taking

    async def submit(self, sender: str, recipients: tuple[str, ...], content: bytes, source: str) -> str:
        if self._intake is None:
            raise StateError("the server is not running")
        return await self._intake.submit(sender, recipients, content, source)

    def _on_dropped(self, count: int) -> None:
        self.counters.directory_drops_total += count
        self.counters.messages_delivered_total += count

    def _count_event(self, event: Event) -> None:
        if isinstance(event, MessageQueued) and event.source == "pickup":
            self.counters.pickup_directory_messages_retrieved_total += 1
        elif isinstance(event, MessageBadmailed):
            self.counters.count_badmail(event.cause, event.source)
            if self._pruner is not None:
                self._pruner.poke()
        elif isinstance(event, ConfigChanged) and self._pruner is not None:
            self._pruner.poke()


def _changed_keys(old: Config, new: Config) -> list[str]:
    keys = [f"server.{name}" for name in old.server.__dataclass_fields__
            if getattr(old.server, name) != getattr(new.server, name)]
    if old.domains != new.domains:
        keys.append("domains")
    if old.mailroot != new.mailroot:
        keys.append("mailroot")
    if old.name != new.name:
        keys.append("name")
    return keys
