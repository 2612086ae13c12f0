"""Where every accepted message enters: spool in SortTemp, then one durable commit into Drop or Queue.

Invariant: ``commit()`` returns only when the message is on disk under its final name; callers send
``250`` (or delete the Pickup file) only after that. A message whose recipients are all local and
share one Drop directory is committed straight into Drop (one file, one rename: local delivery
*is* the commit); any other goes to Queue for delivery.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.bounce.dsn_params import wants_success
from engine.cleanup.headers import HeaderScanner
from engine.conf.addresses import classify, domain_of
from engine.conf.config import Config
from engine.counters import Counters
from engine.errors import HopCountExceeded, QueueWriteError
from engine.events import ErrorEvent, EventBus, MessageDropped, MessageQueued
from engine.qmgr.queue import QueueStore
from engine.store.commit import Committer, TargetUnavailable
from engine.store.envelope import BINARYMIME, BODY, envelope_lines
from engine.store.mailroot import Mailroot, drop_ref, new_id

log = logging.getLogger(__name__)

# What a session holds in memory before it writes to its spool file: a client that stalls mid-DATA costs at
# most this much (plus the socket's buffers), whatever it sent before.
_FLUSH_AT = 64 * 1024


@dataclass(frozen=True)
class DsnRequest:
    """RFC 3461 parameters of one transaction: RET, ENVID, and per recipient (NOTIFY, ORCPT)."""

    ret: str = ""
    envid: str = ""
    recipients: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.ret or self.envid or self.recipients)

    def wants_success(self) -> bool:
        return any(wants_success(notify) for notify, _ in self.recipients.values())


class SpoolFile:
    """A message being received; write errors are remembered, not raised mid-DATA.

    Held in memory up to ``_FLUSH_AT`` bytes: a small message never touches SortTemp before its commit,
    which writes it whole (one create, one write) on a commit thread. Beyond that, the bytes go to an open
    SortTemp file from the pool, ``_FLUSH_AT`` at a time.
    """

    def __init__(self, path: Path, queue_id: str, sender: str, recipients: tuple[str, ...],
                 pool: SpoolPool) -> None:
        self.path = path  # the SortTemp name: this one when created at the commit, else the pool file's
        self.queue_id = queue_id
        self.sender = sender
        self.recipients = recipients
        self.fd: int | None = None
        self._pool = pool
        self._buffer = bytearray()
        self._finished = False
        self.error: OSError | None = None
        self.offset = 0  # length of the envelope lines
        self.size = 0  # bytes after the envelope lines
        self._tail = b""  # the last bytes written, to spot a message ending in a lone "." line
        self.dsn = DsnRequest()
        self.binarymime = False  # BODY=BINARYMIME: delivery converts it for a hop that cannot take it

    def write(self, data: bytes) -> None:
        if self.error is not None or self._finished:
            return
        self._tail = (self._tail + data[-5:])[-5:]
        self._buffer += data
        if len(self._buffer) >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self.fd is None:
            try:
                self.path, self.fd = self._pool.take() or _create_spool(self.path.parent)
            except OSError as error:
                self.error = error
                self._buffer.clear()
                return
        with memoryview(self._buffer) as whole:
            view = whole
            try:
                while view:
                    view = view[os.write(self.fd, view) :]
            except OSError as error:
                self.error = error
            finally:
                view.release()
        self._buffer.clear()

    @property
    def ends_with_lone_dot(self) -> bool:
        return self._tail.endswith(b"\r\n.\r\n")

    def finish(self) -> tuple[int | None, bytearray]:
        """Hand over the open descriptor and the bytes not yet written (the Committer writes them, off the loop);
        raises a stored write error. A message held whole in memory gets a pool file now, or None: the
        Committer creates ``path``."""
        if self.error is not None:
            raise self.error
        if self._finished:
            raise OSError(errno.EBADF, "spool already closed")
        self._finished = True
        if self.fd is None and self._pool.at_commit:
            self.path, self.fd = self._pool.take() or (self.path, None)
        fd, self.fd = self.fd, None
        tail, self._buffer = self._buffer, bytearray()
        return fd, tail

    def discard(self) -> None:
        """Forget the message; removes its SortTemp file if it has one."""
        self._finished = True
        self._buffer.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            self.path.unlink(missing_ok=True)


# Pool files are named by this process's random tag and a counter (no random bytes per file); the queue id, which
# names the message, is drawn when the message starts.
_POOL_TAG = secrets.token_hex(6)
_pool_numbers = itertools.count(1)


def _spool_path(folder: Path) -> Path:
    return folder / f"spool-{_POOL_TAG}-{next(_pool_numbers)}.eml"


def _create_spool(folder: Path) -> tuple[Path, int]:
    path = _spool_path(folder)
    return path, os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


class SpoolPool:
    """Empty spool files created ahead of need off the loop (the cleanup process, or a commit thread).

    Creating a file costs about half a millisecond on these disks (inode allocation next to
    concurrent fsyncs and renames): done on the loop thread it stalls every session, done in the
    commit it lengthens every message's wait for its 250. Left-over pool files are ordinary
    SortTemp leftovers, removed at the next start.
    """

    def __init__(self, folder: Path, committer: Committer, size: int = 64) -> None:
        self._folder = folder
        self._committer = committer
        self._size = size
        self._ready: list[tuple[Path, int]] = []
        self._refill_task: asyncio.Task[None] | None = None
        self._closed = False
        self.at_commit = committer.spools_at_commit  # also taken for a message held whole in memory

    def take(self) -> tuple[Path, int] | None:
        """A fresh (path, open descriptor), or None when none is ready (the caller creates its own)."""
        self._refill()
        return self._ready.pop() if self._ready else None

    def _refill(self) -> None:
        if self._closed or len(self._ready) > self._size // 2:
            return
        if self._refill_task is None or self._refill_task.done():
            self._refill_task = asyncio.get_running_loop().create_task(self._fill())

    async def _fill(self) -> None:
        try:
            created = await self._committer.create_spools(
                [_spool_path(self._folder) for _ in range(self._size - len(self._ready))])
        except OSError:
            return  # disk full or unwritable: take() reports it when a session needs a spool
        if self._closed:
            _discard_all(created)
        else:
            self._ready.extend(created)

    async def close(self) -> None:
        self._closed = True
        if self._refill_task is not None:
            await asyncio.gather(self._refill_task, return_exceptions=True)
        _discard_all(self._ready)
        self._ready.clear()


def _discard_all(spools: list[tuple[Path, int]]) -> None:
    for path, fd in spools:
        os.close(fd)
        path.unlink(missing_ok=True)


def is_storage_error(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class Intake:
    """Opens spools and commits them; shared by the SMTP sessions and the Pickup service."""

    def __init__(self, mailroot: Mailroot, committer: Committer, queue: QueueStore, bus: EventBus,
                 counters: Counters, config: Callable[[], Config]) -> None:
        self.mailroot = mailroot
        self.committer = committer
        self.queue = queue
        self.bus = bus
        self.counters = counters
        self._config = config
        self.spools = SpoolPool(mailroot.sorttemp, committer)
        self._sorttemp = mailroot.sorttemp  # (the Mailroot's root does not move while the engine runs)
        self._queue_dir = mailroot.queue

    def open_spool(self, sender: str, recipients: tuple[str, ...], queue_id: str = "") -> SpoolFile:
        """Start a spool with the envelope lines written (in memory: nothing touches the disk yet).
        ``queue_id``: this id rather than a fresh one (Pickup's claim id, so that a crash can tell it was sent)."""
        queue_id = queue_id or new_id()
        spool = SpoolFile(self._sorttemp / f"spool-{queue_id}.eml", queue_id, sender, recipients,
                          self.spools)
        header = envelope_lines(sender, recipients)
        spool.write(header)
        spool.offset = len(header)
        return spool

    def _direct_drop(self, recipients: tuple[str, ...]) -> Path | None:
        """The one Drop directory of every recipient, or None (a remote one, or local domains with different
        Drops: the queue's local delivery writes one copy per Drop)."""
        domains = self._config().effective_domains
        folders = set()
        for rcpt in recipients:
            route = classify(domain_of(rcpt), domains)
            if route.kind != "local" or route.domain is None:
                return None
            folders.add(self.mailroot.drop_for(route.domain.name))
        return folders.pop() if len(folders) == 1 else None

    def _queue_recreated(self) -> bool:
        """The Queue directory was deleted under the running engine: make the Mailroot's directories again
        (and say so) rather than refuse every message from now on; True when Queue was missing."""
        if self.mailroot.queue.is_dir():
            return False
        try:
            self.mailroot.create()
        except OSError as error:
            log.error("the Queue directory %s is gone and cannot be created again: %s", self.mailroot.queue, error)
            self.bus.publish(ErrorEvent("queue", f"the Queue directory is gone and cannot be created again: {error}"))
            return False
        log.error("the Queue directory %s was gone (deleted while the engine runs); created again; the messages "
                  "it held are lost unless restored", self.mailroot.queue)
        self.bus.publish(ErrorEvent("queue", "the Queue directory was gone (deleted while the engine runs); "
                                             "created again"))
        return True

    async def commit(self, spool: SpoolFile, source: str, headers: HeaderScanner | None = None,
                     received: bytes = b"") -> None:
        """Make the spool durable in Drop or Queue; raises OSError when it could not be. ``headers``: the scan of
        the message's header section, ``received``: our Received header when the scan did not see it (what
        message tracking shows comes from them, so that nobody reads the file again for it)."""
        name = f"{spool.queue_id}.eml"
        # A success notice is sent by local delivery from the queue, so such a message takes that path; so does
        # one ending in a lone "." line, which a Drop file (Pickup-ready) holds dot-stuffed: local delivery writes
        # that copy, and the queued file, which may still go elsewhere, keeps the message as it is.
        direct = not spool.dsn.wants_success() and not spool.ends_with_lone_dot
        drop = self._direct_drop(spool.recipients) if direct else None
        try:
            fd, tail = spool.finish()
        except OSError:
            spool.discard()
            raise
        target = (drop / name) if drop is not None else (self._queue_dir / name)
        try:
            await self.committer.commit(fd, spool.path, target, tail)
        except TargetUnavailable as error:
            if drop is None and not self._queue_recreated():
                spool.path.unlink(missing_ok=True)
                raise
            if drop is not None:
                # Drop is on another filesystem or cannot be written now: queue the message; local delivery
                # copies it across, or retries and notifies on the local schedule.
                log.warning("direct delivery to %s failed (%s); queueing %s", drop, error, spool.queue_id)
                self._queue_recreated()
            drop, target = None, self.mailroot.queue / name
            try:
                await self.committer.commit(os.open(spool.path, os.O_RDONLY), spool.path, target)
            except OSError:
                spool.path.unlink(missing_ok=True)
                raise
        except OSError:
            spool.path.unlink(missing_ok=True)
            raise
        size = spool.size
        self.counters.messages_received_total += 1
        self.counters.message_bytes_received_total += size
        self.counters.recipients_received_total += len(spool.recipients)
        if headers is None:
            self.bus.publish(MessageQueued(spool.queue_id, spool.sender, spool.recipients, size, source))
        else:
            tracked = headers.tracked(received, spool.queue_id)
            self.bus.publish(MessageQueued(spool.queue_id, spool.sender, spool.recipients, size, source,
                                           tracked.message_id, tracked.subject, tracked.via, scanned=True))
        if drop is not None:
            self.counters.directory_drops_total += 1
            self.counters.messages_delivered_total += 1
            self.bus.publish(MessageDropped(spool.queue_id, str(target), spool.recipients,
                                            drop_ref(self.mailroot, target)))
        else:
            record = self.queue.new_record(spool.queue_id, spool.sender, spool.recipients, source)
            if spool.binarymime:
                record.extra[BODY] = BINARYMIME
            if spool.dsn or spool.binarymime:
                record.ret, record.envid = spool.dsn.ret, spool.dsn.envid
                for rcpt in record.recipients:
                    rcpt.notify, rcpt.orcpt = spool.dsn.recipients.get(rcpt.address, ("", ""))
                # The parameters exist only here: make them as durable as the message before the 250.
                await self.committer.run(self.mailroot.write_atomic, target.with_suffix(".env"), record.to_bytes())
            self.queue.add(record, target, size, spool.offset)

    async def submit(self, sender: str, recipients: tuple[str, ...], content: bytes, source: str,
                     queue_id: str = "", binarymime: bool = False) -> str:
        """Commit a whole message held in memory (Pickup, DSNs); returns its queue id (``queue_id`` if given).
        ``binarymime``: binary content, recorded as SMTP's BODY=BINARYMIME is (delivery converts it).

        Raises HopCountExceeded (a MessageRejected) or QueueWriteError (could not store it durably).
        """
        scanner = HeaderScanner()
        scanner.feed(content)
        hops = self._config().server.max_hop_count
        if scanner.received_count() > hops:
            raise HopCountExceeded(f"hop count exceeded: more than {hops} Received headers (mail loop?)")
        try:
            spool = self.open_spool(sender, recipients, queue_id)
            spool.binarymime = binarymime
            spool.write(content)
            spool.size = len(content)
            await self.commit(spool, source, scanner)
        except OSError as error:
            raise QueueWriteError(f"cannot store the message in the queue: {error}") from error
        return spool.queue_id
