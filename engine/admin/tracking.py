"""Message tracking ("where did my mail go?"): an SQLite index of every message the engine took, and its fate.

The engine side subscribes to the bus and writes in batches from a worker thread (one transaction per
batch, the loop never waits). A search is a lookup in indexed columns — sender, recipient (or @domain),
Message-ID, queue ID, arrival time — never a scan of logs. Message-ID and Subject come in the MessageQueued
event (the intake's header scan saw them); only an event without them has the stored file read. The index is
bounded: entries older than ``KEEP_DAYS`` go, and beyond ``MAX_MESSAGES`` the oldest go (checked every
``PRUNE_EVERY`` messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.cleanup.headers import HEADER_BYTES, normal_message_id, tracked_fields
from engine.events import (
    Event,
    EventBus,
    MessageBadmailed,
    MessageDropped,
    MessageQueued,
    MessageRemoved,
    PickupTaken,
    QueueChanged,
)
from engine.store.envelope import split_envelope

log = logging.getLogger(__name__)

DIR_NAME = "Tracking"
FILE_NAME = "tracking-v2.sqlite"  # v2: recipients carry the arrival time (a new schema: a new file)
KEEP_DAYS = 30
MAX_MESSAGES = 1_000_000  # about 0.8 GB of index
PRUNE_EVERY = 10_000  # messages indexed between two looks at the bounds
# The writer lets events gather this long (or until this many wait) before one transaction: at a thousand messages
# a second, one trip to the worker thread and one commit per few hundred messages rather than per few. A search
# through the engine writes what waits first, so it sees a message as soon as it is queued.
BATCH_SECONDS = 0.2
BATCH_EVENTS = 2_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    queue_id TEXT PRIMARY KEY, received REAL NOT NULL, sender TEXT NOT NULL, sender_domain TEXT NOT NULL,
    message_id TEXT NOT NULL DEFAULT '', subject TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL,
    source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recipients (queue_id TEXT NOT NULL, address TEXT NOT NULL, domain TEXT NOT NULL,
                                       received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS steps (queue_id TEXT NOT NULL, at REAL NOT NULL, what TEXT NOT NULL,
                                  detail TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS messages_received ON messages (received);
CREATE INDEX IF NOT EXISTS messages_sender ON messages (sender, received);
CREATE INDEX IF NOT EXISTS messages_sender_domain ON messages (sender_domain, received);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id, received);
CREATE INDEX IF NOT EXISTS recipients_address ON recipients (address, received);
CREATE INDEX IF NOT EXISTS recipients_domain ON recipients (domain, received);
CREATE INDEX IF NOT EXISTS recipients_queue_id ON recipients (queue_id);
CREATE INDEX IF NOT EXISTS steps_queue_id ON steps (queue_id);
CREATE VIRTUAL TABLE IF NOT EXISTS subjects USING fts5(subject, content='');
"""


def tracking_path(mailroot: Path) -> Path:
    return mailroot / DIR_NAME / FILE_NAME


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


@dataclass(frozen=True)
class Step:
    at: float
    what: str  # received | taken from Pickup | delivered to Drop | delivery attempt | frozen | thawed | retry
    #            scheduled | left the queue | moved to Badmail
    detail: str = ""


@dataclass(frozen=True)
class Track:
    """One message's timeline."""

    queue_id: str
    received: float
    sender: str
    recipients: tuple[str, ...]
    message_id: str
    subject: str
    size: int
    source: str
    steps: tuple[Step, ...] = field(default=())


@dataclass(frozen=True)
class Query:
    sender: str = ""  # an address, or @domain
    recipient: str = ""  # an address, or @domain
    message_id: str = ""  # with or without <>
    queue_id: str = ""
    subject: str = ""  # words of the Subject (full-text index), e.g. "quarterly report"
    source: str = ""  # smtp | pickup | dsn (the Pickup pane's history)
    since: float | None = None
    until: float | None = None
    limit: int = 100

    def sql(self) -> tuple[str, list[object]]:
        """The statement and its parameters: newest first, always walking an index in arrival order (a
        recipient search walks the recipients' (address or domain, received) index and joins the messages)."""
        where, params = self.where()
        columns = "m.queue_id, m.received, m.sender, m.message_id, m.subject, m.size, m.source"
        if self.recipient:
            column = "domain" if self.recipient.startswith("@") else "address"
            value = self.recipient[1:].lower() if self.recipient.startswith("@") else self.recipient.lower()
            return (f"SELECT {columns} FROM recipients r JOIN messages m ON m.queue_id = r.queue_id "
                    f"WHERE r.{column} = ? AND {where} ORDER BY r.received DESC LIMIT ?",
                    [value, *params, self.limit])
        return f"SELECT {columns} FROM messages m WHERE {where} ORDER BY m.received DESC LIMIT ?", [*params, self.limit]

    def where(self) -> tuple[str, list[object]]:
        """The conditions on the message itself (indexed columns only) and their parameters."""
        clauses: list[str] = []
        params: list[object] = []
        if self.sender:
            column = "sender_domain" if self.sender.startswith("@") else "sender"
            clauses.append(f"m.{column} = ?")
            params.append(self.sender[1:].lower() if self.sender.startswith("@") else self.sender.lower())
        if self.message_id:
            clauses.append("m.message_id = ?")
            params.append(normal_message_id(self.message_id))
        if self.queue_id:
            clauses.append("m.queue_id = ?")
            params.append(self.queue_id.upper())
        if self.source:
            clauses.append("m.source = ?")
            params.append(self.source)
        words = subject_words(self.subject)
        if words:
            clauses.append("m.rowid IN (SELECT rowid FROM subjects WHERE subjects MATCH ?)")
            params.append(words)
        if self.since is not None:
            clauses.append("m.received >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("m.received < ?")
            params.append(self.until)
        return (" AND ".join(clauses) or "1"), params


def subject_words(text: str) -> str:
    """A full-text query matching every word of ``text`` (each quoted: the user's words are never syntax)."""
    words = re.findall(r"\w+", text)
    return " AND ".join('"' + word + '"' for word in words[:20])


def header_fields(data: bytes, queue_id: str = "") -> tuple[str, str, str]:
    """Message-ID (normalised), Subject, and how it was received (``received_summary``) of a stored message
    (envelope lines first, as in Queue and Drop): for an event that does not carry them."""
    try:
        _sender, _recipients, offset = split_envelope(data)
    except ValueError:
        offset = 0
    fields = tracked_fields(data[offset:], queue_id=queue_id)
    return fields.message_id, fields.subject, fields.via


def open_index(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")  # readers (`smtpsvc track`) never wait for the writer
        connection.execute("PRAGMA synchronous=NORMAL")  # an index: losing the last batch in a crash is fine
        connection.executescript(SCHEMA)
    return connection


def search(connection: sqlite3.Connection, query: Query) -> list[Track]:
    statement, params = query.sql()
    rows = connection.execute(statement, params).fetchall()
    tracks = []
    seen: set[str] = set()
    for queue_id, received, sender, message_id, subject, size, source in rows:
        if queue_id in seen:  # two recipients of one message in the domain searched for
            continue
        seen.add(queue_id)
        recipients = tuple(r for (r,) in connection.execute(
            "SELECT address FROM recipients WHERE queue_id = ?", (queue_id,)))
        steps = tuple(Step(at, what, detail) for at, what, detail in connection.execute(
            "SELECT at, what, detail FROM steps WHERE queue_id = ? ORDER BY at, rowid", (queue_id,)))
        tracks.append(Track(queue_id, received, sender, recipients, message_id, subject, size, source, steps))
    return tracks


class TrackingIndex:
    """The writer: ``publish`` is a bus subscriber; a task writes batches in a worker thread."""

    def __init__(self, path: Path, queue_dir: Path, bus: EventBus, *, max_messages: int = MAX_MESSAGES,
                 prune_every: int = PRUNE_EVERY, badmail_dir: Callable[[], Path] | None = None) -> None:
        self.path = path
        self.queue_dir = queue_dir
        self.badmail_dir = badmail_dir  # where a badmailed item's .BDP says which queued message it was
        self.max_messages = max_messages
        self.prune_every = prune_every
        self._since_prune = 0
        self._pending: list[Event] = []
        self._wake = asyncio.Event()  # something waits to be written
        self._hurry = asyncio.Event()  # ... and it should be written now (BATCH_EVENTS, or stopping)
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connection: sqlite3.Connection | None = None
        self._unsubscribe = bus.subscribe(self.publish)

    def publish(self, event: Event) -> None:
        if isinstance(event, MessageQueued | MessageDropped | MessageRemoved | QueueChanged | MessageBadmailed
                      | PickupTaken):
            self._pending.append(event)
            self._wake.set()
            if len(self._pending) >= BATCH_EVENTS:
                self._hurry.set()

    async def start(self) -> None:
        self._connection = await asyncio.to_thread(self._open)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tracking-index")

    def _open(self) -> sqlite3.Connection:
        connection = open_index(self.path)
        self.prune(connection)
        return connection

    def prune(self, connection: sqlite3.Connection) -> int:
        """Remove what is older than KEEP_DAYS or beyond the newest ``max_messages``; returns how many went."""
        cutoff = time.time() - KEEP_DAYS * 86400
        row = connection.execute("SELECT received FROM messages ORDER BY received DESC LIMIT 1 OFFSET ?",
                                 (self.max_messages,)).fetchone()
        if row is not None:
            cutoff = max(cutoff, float(row[0]) + 1e-6)
        gone = connection.execute("SELECT queue_id, rowid, subject FROM messages WHERE received < ?",
                                  (cutoff,)).fetchall()
        old = [(queue_id,) for queue_id, _rowid, _subject in gone]
        with connection:
            # A contentless full-text table forgets a row when told its old text.
            connection.executemany("INSERT INTO subjects (subjects, rowid, subject) VALUES ('delete', ?, ?)",
                                   [(rowid, subject) for _queue_id, rowid, subject in gone if subject])
            for table in ("recipients", "steps", "messages"):
                connection.executemany(f"DELETE FROM {table} WHERE queue_id = ?", old)
        return len(old)

    async def stop(self) -> None:
        self._closing = True
        self._wake.set()
        self._hurry.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        await self.flush()
        self._unsubscribe()
        connection, self._connection = self._connection, None
        if connection is not None:
            await asyncio.to_thread(connection.close)

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BATCH_SECONDS):
                    await self._hurry.wait()
            await self.flush()

    async def flush(self) -> None:
        async with self._writing:
            self._wake.clear()
            self._hurry.clear()
            batch, self._pending = self._pending, []
            if not batch or self._connection is None:
                return
            try:
                await asyncio.to_thread(self.write_batch, self._connection, batch)
            except (sqlite3.Error, OSError) as error:  # tracking is lost for this batch; mail is not
                log.error("message tracking: cannot write the index %s: %s", self.path, error)

    def write_batch(self, connection: sqlite3.Connection, batch: Sequence[Event]) -> None:
        """Index a batch of events in one transaction (worker thread; bench/tracking.py fills an index with it)."""
        dropped = {e.queue_id: e.path for e in batch if isinstance(e, MessageDropped)}
        messages, recipients, steps = [], [], []
        for event in batch:
            if isinstance(event, MessageQueued):
                if event.scanned:
                    message_id, subject, via = event.message_id, event.subject, event.via
                else:  # a producer that did not scan the header (none of the engine's own): read the file
                    message_id, subject, via = self._headers(dropped.get(event.queue_id) or
                                                             str(self.queue_dir / f"{event.queue_id}.eml"),
                                                             event.queue_id)
                messages.append((event.queue_id, event.at, event.sender.lower(), _domain(event.sender),
                                 message_id, subject, event.size, event.source))
                recipients += [(event.queue_id, r.lower(), _domain(r), event.at) for r in event.recipients]
                steps.append((event.queue_id, event.at, "received",
                              f"from {event.sender or '<>'} by {event.source}, {event.size} bytes"
                              + (f"; {via}" if via else "")))
            elif isinstance(event, MessageDropped):
                steps.append((event.queue_id, event.at, "delivered to Drop", ", ".join(event.recipients)))
            elif isinstance(event, MessageRemoved):
                steps.append((event.queue_id, event.at, "left the queue", event.reason))
            elif isinstance(event, PickupTaken):
                steps.append((event.queue_id, event.at, "taken from Pickup", event.name))
            elif isinstance(event, MessageBadmailed):
                queue_id = self._badmailed_queue_id(event.name)
                if queue_id:
                    steps.append((queue_id, event.at, "moved to Badmail", f"{event.name}: {event.reason}"))
            elif isinstance(event, QueueChanged):
                steps.append((event.queue_id, event.at, "delivery attempt" if event.what == "attempted"
                              else event.what, event.detail))
        self._since_prune += len(messages)
        if self._since_prune >= self.prune_every:
            self._since_prune = 0
            self.prune(connection)
        with connection:
            connection.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)", messages)
            # The full-text row shares the message's rowid (found through the primary key).
            connection.executemany("INSERT INTO subjects (rowid, subject) SELECT rowid, subject FROM messages "
                                   "WHERE queue_id = ?", [(m[0],) for m in messages if m[5]])
            connection.executemany("INSERT INTO recipients VALUES (?, ?, ?, ?)", recipients)
            connection.executemany("INSERT INTO steps VALUES (?, ?, ?, ?)", steps)

    def _badmailed_queue_id(self, name: str) -> str:
        if self.badmail_dir is None:
            return ""
        with contextlib.suppress(OSError), open(self.badmail_dir() / f"{name}.BDP", "rb") as file:
            for line in file.read(HEADER_BYTES).decode("utf-8", "replace").splitlines():
                key, _, value = line.partition(":")
                if key.strip().lower() == "x-queue-id":
                    return value.strip()
        return ""  # not from the queue (Pickup), or gone already

    @staticmethod
    def _headers(path: str, queue_id: str) -> tuple[str, str, str]:
        with contextlib.suppress(OSError), open(path, "rb") as file:
            return header_fields(file.read(HEADER_BYTES), queue_id)
        return "", "", ""  # delivered and gone already: the message is tracked without them

    def search(self, query: Query) -> list[Track]:
        """For the engine's own readers (the control op); runs in a worker thread."""
        with contextlib.closing(open_index(self.path, readonly=True)) as connection:
            return search(connection, query)


def iter_tracks(path: Path, query: Query) -> Iterator[Track]:
    """`smtpsvc track` without the engine: the index read-only."""
    if not path.exists():
        return iter(())
    with contextlib.closing(open_index(path, readonly=True)) as connection:
        return iter(search(connection, query))
