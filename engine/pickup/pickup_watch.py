"""The Pickup directory service: notice files, claim by rename, parse, submit, remove; bad ones to Badmail.

Invariants:
- A file is read only once claimed: renamed atomically into SortTemp as ``pickup-<id>-<name>``. Two scanners
  never take the same file, and a claimed file can never be taken from Pickup again.
- A claim is removed only after ``submit`` returned (the queue holds the message durably) or after it became
  the .BAD of a Badmail triple. When the queue or Badmail cannot store it, it goes back into Pickup and is
  retried after ``retry_delay``: never lost. ``recover`` returns claims left by a crash (at-least-once).
- A file is taken only complete: on inotify IN_CLOSE_WRITE or IN_MOVED_TO (never IN_CREATE); in a scan when
  it was last modified ``settle`` seconds ago or is unchanged since the previous scan, unless inotify saw a
  write (IN_MODIFY) not yet followed by its close; when polling (no inotify) only when its size and mtime
  were unchanged across two polls.
- Names starting with "." (writers' temporary files) and subdirectories are ignored. A file that cannot be
  claimed is left alone and reported once per inode and mtime — never sent.
- A file whose name starts with a queue id (``<ID>-anything``, as the Posting Acceptor names what it drops) is
  submitted under that id, so its writer knows the queue id before the file is taken — unless a message with
  that id exists or is being taken, when it gets a fresh id like any other file (an id is never reused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from engine.bounce.badmail import write_badmail
from engine.errors import MessageRejected, QueueWriteError
from engine.events import ErrorEvent, EventBus, MessageBadmailed, PickupTaken
from engine.pickup import inotify
from engine.pickup.pickup import PickupError, PickupMessage, parse_pickup
from engine.store.mailroot import Mailroot, fsync_dir, new_id

log = logging.getLogger(__name__)

class SubmitFn(Protocol):
    """Intake.submit: commit a message; ``queue_id`` is the claim's id, so that ``recover`` can tell."""

    def __call__(self, sender: str, recipients: tuple[str, ...], content: bytes, source: str,
                 queue_id: str = "", binarymime: bool = False) -> Awaitable[str]: ...

SOURCE = "pickup"
CLAIM_PREFIX = "pickup-"
_NAME_MAX = 255
_TAKE = inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO
_GONE = inotify.IN_MOVED_FROM | inotify.IN_DELETE
_WATCH_MASK = (
    _TAKE | _GONE | inotify.IN_MODIFY | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_ONLYDIR
)
_WATCH_LOST = inotify.IN_IGNORED | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_UNMOUNT
_Signature = tuple[int, int, int]  # inode, size, mtime_ns
_NAMED_ID = re.compile(r"([0-9A-F]{24,32})-")  # a name starting with a queue id (mailroot.new_id's form)


def recover(mailroot: Mailroot) -> int:
    """Move claims left in SortTemp by a crash back into Pickup; returns how many were moved.

    A claim whose message was committed (it is submitted under the claim's id: Queue/<id>.eml or a Drop's
    <id>.eml exists) was sent already: it is removed, not sent twice. (Sent and already taken out of Drop
    by its reader before this start: sent again, at least once.)
    """
    try:
        with os.scandir(mailroot.sorttemp) as entries:
            claims = [Path(entry.path) for entry in entries if entry.name.startswith(CLAIM_PREFIX)]
    except FileNotFoundError:
        return 0
    moved = 0
    for claim in claims:
        if _stored(mailroot, _claim_id(claim.name)):
            log.info("Pickup: %s was queued before a crash; not sent again", printable_name(claim.name))
            claim.unlink(missing_ok=True)
            continue
        mailroot.pickup.mkdir(parents=True, exist_ok=True)
        _move_no_replace(claim, mailroot.pickup, _original_name(claim.name))
        moved += 1
    if moved:
        fsync_dir(mailroot.pickup)
    return moved


def _stored(mailroot: Mailroot, queue_id: str) -> bool:
    """Whether a message with this id was committed: Queue/<id>.eml or a Drop's <id>.eml exists."""
    stored = f"{queue_id}.eml"
    return any((folder / stored).exists() for folder in (mailroot.queue, *(f for f, _ in mailroot.drop_folders())))


def named_id(name: str) -> str | None:
    """The queue id a Pickup file's name asks for (``<ID>-anything``), or None."""
    match = _NAMED_ID.match(name)
    return match[1] if match else None


def printable_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept as surrogates) shown as ``\\xff`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _fit(prefix: str, name: str) -> str:
    """``prefix + name``, cutting the front of ``name`` to stay within NAME_MAX (the extension survives)."""
    room = _NAME_MAX - len(os.fsencode(prefix))
    raw = os.fsencode(name)
    return prefix + (os.fsdecode(raw[-room:]) if len(raw) > room else name)


def _claim_id(claim_name: str) -> str:
    return claim_name.removeprefix(CLAIM_PREFIX).partition("-")[0]


def _original_name(claim_name: str) -> str:
    rest = claim_name.removeprefix(CLAIM_PREFIX)
    _, sep, name = rest.partition("-")
    return name if sep and name else rest


def _move_no_replace(source: Path, folder: Path, name: str) -> Path:
    """Move ``source`` into ``folder`` as ``name``, or under a fresh name: never overwrite a file there."""
    candidate = name
    while True:
        target = folder / candidate
        try:
            os.link(source, target)
        except FileExistsError:
            candidate = _fit(f"{new_id()}-", name)
            continue
        except OSError:
            if os.path.lexists(target):
                candidate = _fit(f"{new_id()}-", name)
                continue
            os.rename(source, target)  # no hard links on this filesystem: check-then-rename is the best left
            return target
        os.unlink(source)
        return target


def _list_pickup(folder: Path) -> list[tuple[str, os.stat_result]]:
    """Candidate entries of Pickup: not hidden, not directories (runs in a worker thread)."""
    found: list[tuple[str, os.stat_result]] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    if not stat.S_ISDIR(info.st_mode):
                        found.append((entry.name, info))
    except FileNotFoundError:
        return []
    return found


class PickupService:
    """Moves each complete Pickup file into the queue exactly once, or into Badmail with a reason.

    ``files_retrieved`` counts files taken out of Pickup for good: submitted or badmailed.
    """

    def __init__(
        self,
        mailroot: Mailroot,
        submit: SubmitFn,
        bus: EventBus,
        default_domain: Callable[[], str],
        *,
        max_file_bytes: int = 64 * 1024 * 1024,
        concurrency: int = 8,
        poll_interval: float = 2.0,
        settle: float = 2.0,
        retry_delay: float = 30.0,
        rescan_interval: float = 60.0,
        stop_timeout: float = 5.0,
        use_inotify: bool = True,
    ) -> None:
        self._mailroot = mailroot
        self._submit = submit
        self._bus = bus
        self._default_domain = default_domain
        self._max_file_bytes = max_file_bytes
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._settle = settle
        self._retry_delay = retry_delay
        self._rescan_interval = rescan_interval
        self._stop_timeout = stop_timeout
        self._want_inotify = use_inotify
        self._inotify_worked = False
        self._watcher: inotify.Inotify | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._workers: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()
        self._scanner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._due = 0.0
        self._paused_until = 0.0
        self._running = False
        self._last_seen: dict[str, _Signature] = {}
        self._writing: set[str] = set()  # names with an IN_MODIFY not yet followed by IN_CLOSE_WRITE
        self._reported: dict[str, tuple[int, int]] = {}
        self._retrieved = 0
        self._taking_ids: set[str] = set()  # ids of the claims being processed

    @property
    def files_retrieved(self) -> int:
        return self._retrieved

    @property
    def taking(self) -> bool:
        """Whether files put into Pickup are taken now: running, and not waiting out a storage failure."""
        return self._running and not self._paused()

    @property
    def uses_inotify(self) -> bool:
        """True while inotify watches Pickup; False while polling."""
        return self._watcher is not None

    async def start(self) -> None:
        if self._running:
            return
        loop = self._loop = asyncio.get_running_loop()
        self._mailroot.pickup.mkdir(parents=True, exist_ok=True)
        self._mailroot.sorttemp.mkdir(parents=True, exist_ok=True)
        self._queue = asyncio.Queue()
        self._wake = asyncio.Event()
        self._running = True
        self._paused_until = 0.0
        if self._want_inotify and self._watch():
            self._inotify_worked = True
        else:
            log.info("Pickup: no inotify here, polling every %g s", self._poll_interval)
        self._due = loop.time()  # a full scan at once: files already there
        self._scanner = asyncio.create_task(self._scan_loop(), name="pickup-scanner")
        self._workers = {
            asyncio.create_task(self._work(), name=f"pickup-worker-{index}")
            for index in range(self._concurrency)
        }

    async def stop(self) -> None:
        """Stop watching; files in progress finish (up to ``stop_timeout``), the rest go back into Pickup."""
        if not self._running:
            return
        self._running = False
        self._unwatch()
        tasks: list[asyncio.Task[None]] = [*self._workers]
        if self._scanner is not None:
            self._scanner.cancel()
            tasks.append(self._scanner)
        for worker in self._idle:
            worker.cancel()
        busy = self._workers - self._idle
        if busy:
            _, late = await asyncio.wait(busy, timeout=self._stop_timeout)
            for worker in late:
                worker.cancel()  # its claim goes back into Pickup
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._idle.clear()
        self._queued.clear()
        self._scanner = None

    async def scan_now(self) -> None:
        """Scan Pickup at once with the usual completeness rules, ending a retry pause."""
        if not self._running:
            return
        self._paused_until = 0.0
        await self._scan()

    # -- noticing files

    def _watch(self) -> bool:
        assert self._loop is not None
        try:
            watcher = inotify.Inotify()
        except OSError as exc:
            log.debug("Pickup: inotify unavailable: %s", exc)
            return False
        try:
            watcher.add_watch(self._mailroot.pickup, _WATCH_MASK)
        except OSError as exc:
            log.debug("Pickup: cannot watch %s: %s", self._mailroot.pickup, exc)
            watcher.close()
            return False
        self._watcher = watcher
        self._loop.add_reader(watcher.fileno(), self._on_events)
        return True

    def _unwatch(self) -> None:
        if self._watcher is not None and self._loop is not None:
            self._loop.remove_reader(self._watcher.fileno())
            self._watcher.close()
        self._watcher = None
        self._writing.clear()

    def _on_events(self) -> None:
        if self._watcher is None:
            return
        try:
            events = self._watcher.read_events()
        except OSError as exc:
            events = []
            self._lose_watch(f"reading inotify events failed: {exc}")
        for event in events:
            if event.mask & inotify.IN_Q_OVERFLOW:
                self._writing.clear()  # events were lost: trust no mark, look at everything
                self._schedule_scan(0)
            elif event.mask & _WATCH_LOST:
                self._lose_watch("the Pickup directory was removed or moved")
                return
            elif event.mask & inotify.IN_ISDIR:
                continue
            elif event.mask & inotify.IN_MODIFY:
                self._writing.add(event.name)  # open for writing: no scan may take it before its close
            elif event.mask & (_TAKE | _GONE):
                self._writing.discard(event.name)
                if event.mask & _TAKE:
                    self._enqueue(event.name)

    def _lose_watch(self, why: str) -> None:
        log.warning("Pickup: %s; polling every %g s until it can be watched again", why, self._poll_interval)
        self._unwatch()
        self._schedule_scan(0)

    def _schedule_scan(self, delay: float) -> None:
        if self._loop is not None:
            self._due = min(self._due, self._loop.time() + delay)
            self._wake.set()

    async def _scan_loop(self) -> None:
        assert self._loop is not None
        while True:
            now = self._loop.time()
            wait = max(self._due, self._paused_until) - now
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            if (
                self._watcher is None
                and self._inotify_worked
                and self._mailroot.pickup.is_dir()
                and self._watch()
            ):
                log.info("Pickup: watching the directory again")
            self._due = now + (self._rescan_interval if self._watcher else self._poll_interval)
            try:
                waiting = await self._scan()
            except Exception as exc:  # the scanner must survive anything; "/" is no file name
                self._report_once("/", None, f"cannot list the Pickup directory: {exc}")
            else:
                if waiting and self._watcher is not None:
                    self._schedule_scan(self._settle)  # files too fresh to take: look again when settled

    async def _scan(self) -> bool:
        """Queue every complete file; returns whether some were left for a later look."""
        entries = await asyncio.to_thread(_list_pickup, self._mailroot.pickup)
        polling = self._watcher is None
        now = time.time()
        seen: dict[str, _Signature] = {}
        waiting = False
        for name, info in sorted(entries, key=lambda item: item[1].st_mtime_ns):
            signature = (info.st_ino, info.st_size, info.st_mtime_ns)
            seen[name] = signature
            if name in self._writing:
                continue  # its IN_CLOSE_WRITE will bring it
            unchanged = self._last_seen.get(name) == signature
            if unchanged or (not polling and now - info.st_mtime >= self._settle):
                self._enqueue(name)
            else:
                waiting = True
        self._last_seen = seen
        self._reported = {name: key for name, key in self._reported.items() if name in seen}
        return waiting

    def _enqueue(self, name: str) -> None:
        if not self._running or name.startswith(".") or name in self._queued or self._paused():
            return
        self._queued.add(name)
        self._queue.put_nowait(name)

    def _paused(self) -> bool:
        return self._loop is not None and self._loop.time() < self._paused_until

    # -- taking files

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while self._running:
            self._idle.add(task)
            try:
                name = await self._queue.get()
            finally:
                self._idle.discard(task)
            self._queued.discard(name)
            if not self._running or self._paused():
                continue  # the file stays in Pickup; the scan after the pause takes it
            claim = self._claim(name)
            if claim is not None:
                await self._process(name, claim)

    def _claim(self, name: str) -> Path | None:
        """Rename ``name`` from Pickup into SortTemp; None when it is gone or cannot be taken."""
        if name in self._writing:
            return None  # rewritten since it was queued: its IN_CLOSE_WRITE brings it again
        source = self._mailroot.pickup / name
        try:
            info = os.lstat(source)
        except FileNotFoundError:
            return None  # taken or removed meanwhile
        except OSError as exc:
            self._report_once(name, None, f"cannot examine {name!r} in Pickup: {exc.strerror or exc}")
            return None
        if stat.S_ISDIR(info.st_mode):
            return None
        if not stat.S_ISREG(info.st_mode):
            self._report_once(name, info, f"{name!r} in Pickup is not a regular file; it is left there")
            return None
        if info.st_size == 0 and time.time() - info.st_mtime < self._settle:
            self._schedule_scan(self._settle)  # likely created empty and written next: look again later
            return None
        claim = self._mailroot.sorttemp / _fit(f"{CLAIM_PREFIX}{self._claim_id_for(name)}-", name)
        try:
            os.rename(source, claim)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not os.path.lexists(source):
                return None
            self._report_once(
                name,
                info,
                f"cannot take {name!r} from Pickup ({exc.strerror or exc}); it is left there, not sent",
            )
            return None
        return claim

    def _claim_id_for(self, name: str) -> str:
        """The id the file is submitted under: the one its name asks for when that id is free, else a new one."""
        wanted = named_id(name)
        if wanted is None or wanted in self._taking_ids or _stored(self._mailroot, wanted):
            return new_id()
        return wanted

    async def _process(self, name: str, claim: Path) -> None:
        queue_id = _claim_id(claim.name)
        self._taking_ids.add(queue_id)
        try:
            await self._handle(name, claim)
        except asyncio.CancelledError:
            self._put_back(name, claim)
            raise
        except Exception as exc:  # an unexpected failure must neither lose the file nor kill the worker
            log.exception("Pickup: processing %r failed", name)
            self._put_back(name, claim)
            self._pause(f"processing {name!r} from Pickup failed ({exc})")
        finally:
            self._taking_ids.discard(queue_id)

    async def _handle(self, name: str, claim: Path) -> None:
        result = await asyncio.to_thread(self._load, claim, self._default_domain())
        if isinstance(result, (str, PickupError)):
            cause = result.cause if isinstance(result, PickupError) else PickupError.cause
            await self._badmail(name, claim, str(result), None, cause)
            return
        try:
            queue_id = await self._submit(result.sender, result.recipients, result.content, SOURCE,
                                          queue_id=_claim_id(claim.name), binarymime=result.binary)
        except MessageRejected as exc:
            await self._badmail(name, claim, str(exc) or "rejected by the queue", result,
                                exc.cause or PickupError.cause)
            return
        except QueueWriteError as exc:
            self._put_back(name, claim)
            self._pause(f"the queue could not store {name!r} from Pickup ({exc})")
            return
        self._retrieved += 1
        self._bus.publish(PickupTaken(queue_id, printable_name(name)))
        try:
            os.unlink(claim)
        except OSError as exc:
            why = exc.strerror or exc
            self._error(
                f"{name!r} was queued, but {claim} could not be removed ({why}): sent again at next start"
            )

    def _load(self, claim: Path, default_domain: str) -> PickupMessage | PickupError | str:
        """Read and parse the claimed file (in a worker thread); an error or a str is why it goes to Badmail."""
        try:
            fd = os.open(claim, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return f"cannot read the file: {exc.strerror or exc}"
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return "not a regular file"
            if info.st_size > self._max_file_bytes:
                return self._too_large(info.st_size)
            chunks: list[bytes] = []
            total = 0
            want = info.st_size + 1  # one read for the whole file, one more to see the end
            while chunk := os.read(fd, want):
                chunks.append(chunk)
                total += len(chunk)
                if total > self._max_file_bytes:
                    return self._too_large(total)
                want = min(1024 * 1024, self._max_file_bytes + 1 - total)
        except OSError as exc:
            return f"cannot read the file: {exc.strerror or exc}"
        finally:
            os.close(fd)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        del chunks
        try:
            return parse_pickup(data, default_domain)
        except PickupError as exc:
            return exc

    def _too_large(self, size: int) -> str:
        return f"file larger than {self._max_file_bytes} bytes (max_file_bytes); it has at least {size} bytes"

    async def _badmail(self, name: str, claim: Path, reason: str, message: PickupMessage | None,
                       cause: str = PickupError.cause) -> None:
        try:
            bad = await asyncio.to_thread(self._write_badmail, name, claim, reason, message)
        except OSError as exc:
            self._put_back(name, claim)
            self._pause(f"Badmail could not store {name!r} from Pickup ({exc})")
            return
        self._retrieved += 1
        log.info("Pickup: %r went to Badmail as %s: %s", name, bad, reason)
        self._bus.publish(MessageBadmailed(bad, reason, SOURCE, cause, queue_id=_claim_id(claim.name)))

    def _write_badmail(self, name: str, claim: Path, reason: str, message: PickupMessage | None) -> str:
        """Write the triple; the claimed file itself becomes the .BAD, byte for byte (in a worker thread)."""
        sender = message.sender if message else ""
        recipients = message.recipients if message else ()
        extra = {"pickup-file": printable_name(name)}
        try:
            return write_badmail(self._mailroot, claim, reason, sender=sender, recipients=recipients,
                                 source=SOURCE, extra=extra)
        except OSError as exc:  # the file could not be moved into Badmail: keep it, and say where
            kept = _move_no_replace(claim, self._mailroot.sorttemp, _fit("unsaved-", name))
            note = f"{reason}\n(the file could not be stored in Badmail ({exc.strerror or exc}); it was kept as {kept})"
            return write_badmail(self._mailroot, b"", note, sender=sender, recipients=recipients,
                                 source=SOURCE, extra=extra)

    # -- failures

    def _put_back(self, name: str, claim: Path) -> None:
        try:
            _move_no_replace(claim, self._mailroot.pickup, name)
        except OSError as exc:
            self._error(f"could not return {claim} to Pickup ({exc}); it is returned at the next start")

    def _pause(self, message: str) -> None:
        """Stop taking files for ``retry_delay`` seconds; report once per outage, not once per file."""
        assert self._loop is not None
        first = not self._paused()
        self._paused_until = self._loop.time() + self._retry_delay
        self._schedule_scan(self._retry_delay)
        if first:
            self._error(f"{message}; retrying in {self._retry_delay:g} s")

    def _report_once(self, name: str, info: os.stat_result | None, message: str) -> None:
        key = (info.st_ino, info.st_mtime_ns) if info else (0, 0)
        if self._reported.get(name) != key:
            self._reported[name] = key
            self._error(message)

    def _error(self, message: str) -> None:
        log.warning("Pickup: %s", message)
        self._bus.publish(ErrorEvent(SOURCE, message))
