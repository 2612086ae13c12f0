"""Message tracking: the index's query rules, header reading, and timelines from the real engine on loopback."""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from engine_support import start_server

from engine.admin import tracking
from engine.admin.control import request
from engine.admin.tracking import Query
from engine.cleanup import headers
from engine.conf.config import Config


@pytest.mark.parametrize(("query", "sql", "params"), [
    (Query(), "1", []),
    (Query(sender="A@Example.test"), "m.sender = ?", ["a@example.test"]),
    (Query(sender="@Example.test"), "m.sender_domain = ?", ["example.test"]),
    (Query(recipient="@b.test"), "1", []),  # the recipient is the walk itself (Query.sql)
    (Query(message_id=" <ID@Host> "), "m.message_id = ?", ["id@host"]),
    (Query(queue_id="abc", since=5.0), "m.queue_id = ? AND m.received >= ?", ["ABC", 5.0]),
    (Query(subject='Q3 "report" OR x*'), "m.rowid IN (SELECT rowid FROM subjects WHERE subjects MATCH ?)",
     ['"Q3" AND "report" AND "OR" AND "x"']),  # the user's words, never full-text syntax
])
def test_queries_use_indexed_columns(query: Query, sql: str, params: list[object]) -> None:
    assert query.where() == (sql, params)


def test_every_query_is_an_index_lookup(tmp_path: Path) -> None:
    connection = tracking.open_index(tmp_path / "t.sqlite")
    for query in (Query(sender="a@b"), Query(sender="@b"), Query(recipient="a@b"), Query(recipient="@b"),
                  Query(message_id="x"), Query(queue_id="Q"), Query(since=1.0), Query(), Query(subject="word"),
                  Query(recipient="@b", since=1.0, sender="@c"), Query(source="pickup")):
        statement, params = query.sql()
        plan = [str(row[-1]) for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
        scans = [step for step in plan if step.startswith("SCAN") and "USING INDEX" not in step
                 and "VIRTUAL TABLE INDEX" not in step]  # (the full-text index's own lookup reads "SCAN")
        assert not scans, (query, plan)
        if not query.subject:  # the words' matches are sorted by time; everything else walks in order
            assert not [step for step in plan if "TEMP B-TREE" in step], (query, plan)
    connection.close()


def test_header_fields_after_envelope_lines() -> None:
    data = (b"x-sender: a@example.test\r\nx-receiver: b@example.test\r\n"
            b"Received: from x\r\nMessage-ID: <ABC.123@Host.Test>\r\nSubject: Quarterly\r\n  report\r\n\r\nbody\r\n")
    assert tracking.header_fields(data) == ("abc.123@host.test", "Quarterly report", "")
    assert tracking.header_fields(b"no header at all") == ("", "", "")
    folded = (b"X-Long: a\r\n  Subject: not this\r\nsubject:  first\r\n\tline\r\nSubject: second\r\n\r\n"
              b"Subject: body\r\n")
    assert headers.first_fields(folded) == {"subject": "first line"}


@pytest.mark.parametrize(("received", "summary"), [
    ("from client.test ([192.0.2.1])\r\n\t(TLSv1.3 TLS_AES_256_GCM_SHA384 256 bits)\r\n\t(authenticated as alice)"
     "\r\n\tby mx.example.test with ESMTPSA id Q1;\r\n\tMon, 7 Dec 2026 15:00:00 +0000",
     "from client.test ([192.0.2.1]) with ESMTPSA, TLSv1.3 TLS_AES_256_GCM_SHA384 256 bits, authenticated as alice"),
    ("from x (host.test [192.0.2.2]) by mx.example.test with ESMTP id Q1\r\n\tfor <a@b.test>; date",
     "from x (host.test [192.0.2.2]) with ESMTP"),
    ("from x ([192.0.2.2]) by mx.example.test with ESMTP id OTHER; date", ""),  # another message's
    ("from elsewhere by relay.example with SMTP; date", ""),
])
def test_received_summary(received: str, summary: str) -> None:
    assert headers.received_summary(received, "Q1") == summary


async def test_timelines_from_the_engine(tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    running = await start_server(config_factory())
    server = running.server
    started = time.time()

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            for n in range(3):
                client.sendmail("Alice@Example.test", ["b@example.test", f"c{n}@alias.test"],
                                f"Message-ID: <m{n}@client.test>\r\nSubject: number {n}\r\n\r\nhi\r\n".encode())
            client.sendmail("bob@example.test", ["far@relay.test"],
                            b"Message-ID: <far@client.test>\r\nSubject: away\r\n\r\nhi\r\n")

    try:
        await asyncio.to_thread(send)
        await running.wait_for(lambda: len(running.drop_files()) == 3)
        by_sender = await server.track_messages(Query(sender="alice@example.test"))
        assert [t.message_id for t in by_sender] == ["m2@client.test", "m1@client.test", "m0@client.test"]
        local = by_sender[0]
        assert local.recipients == ("b@example.test", "c2@alias.test") and local.subject == "number 2"
        assert [s.what for s in local.steps] == ["received", "delivered to Drop"]
        assert local.steps[0].detail.endswith("([127.0.0.1]) with ESMTP")  # how it came: the Received header
        assert [t.subject for t in await server.track_messages(Query(recipient="c1@ALIAS.test"))] == ["number 1"]
        assert [t.subject for t in await server.track_messages(Query(subject="NUMBER 2"))] == ["number 2"]
        assert len(await server.track_messages(Query(subject="number"))) == 3
        assert len(await server.track_messages(Query(recipient="@alias.test", since=started - 1))) == 3
        [far] = await server.track_messages(Query(message_id="<FAR@client.test>"))
        assert far.sender == "bob@example.test" and far.steps[0].what == "received"
        await running.wait_for(lambda: any(e.__class__.__name__ == "QueueChanged" for e in running.events))
        reply = await request(server.mailroot.root / "control.sock", "track", queue_id=far.queue_id)
        assert [r["queue_id"] for r in reply] == [far.queue_id]
        attempts = [s for s in reply[0]["steps"] if s["what"] == "delivery attempt"]
        assert attempts and attempts[0]["detail"].startswith("far@relay.test: ")  # the reason it is still here
        assert await server.track_messages(Query(sender="nobody@example.test")) == []
    finally:
        await server.stop()
    path = tracking.tracking_path(server.mailroot.root)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone() == (4,)


def test_the_index_is_bounded(tmp_path: Path) -> None:
    from engine.events import EventBus, MessageDropped, MessageQueued

    index = tracking.TrackingIndex(tmp_path / "t.sqlite", tmp_path, EventBus(), max_messages=50, prune_every=20)
    for n in range(200):  # the stored messages the writer reads the Subject from
        (tmp_path / f"Q{n:04}.eml").write_bytes(f"Subject: {'ancient' if n < 10 else 'recent'} words\r\n\r\n".encode())
    connection = tracking.open_index(index.path)
    now = time.time()
    old = MessageQueued("OLD", "a@b.test", ("c@d.test",), 10, "smtp", at=now - (tracking.KEEP_DAYS + 1) * 86400)
    index.write_batch(connection, [old])
    for start in range(0, 200, 10):
        batch: list[object] = []
        for n in range(start, start + 10):
            batch += [MessageQueued(f"Q{n:04}", "a@b.test", ("c@d.test",), 10, "smtp", at=now + n),
                      MessageDropped(f"Q{n:04}", "", ("c@d.test",), at=now + n)]
        index.write_batch(connection, batch)  # type: ignore[arg-type]
    count = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert 50 <= count <= 50 + 20  # pruned to the bound at each look, then filled again
    assert connection.execute("SELECT count(*) FROM messages WHERE queue_id = 'OLD'").fetchone() == (0,)
    assert index.prune(connection) == count - 50
    ids = [q for (q,) in connection.execute("SELECT queue_id FROM messages ORDER BY received")]
    assert ids == [f"Q{n:04}" for n in range(150, 200)]
    orphans = connection.execute("SELECT count(*) FROM steps WHERE queue_id NOT IN (SELECT queue_id FROM messages)")
    assert orphans.fetchone() == (0,)
    assert tracking.search(connection, Query(subject="ancient")) == []  # pruned from the full-text index too
    assert len(tracking.search(connection, Query(subject="recent words", limit=1000))) == 50
    connection.close()


async def test_a_badmailed_message_ends_its_timeline_in_badmail(config_factory: Callable[..., Config]) -> None:
    running = await start_server(config_factory())
    server = running.server

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.sendmail("<>", ["far@relay.test"], b"Subject: a bounce of a bounce\r\n\r\nhi\r\n")

    try:
        await asyncio.to_thread(send)
        [track] = await server.track_messages(Query(recipient="far@relay.test"))
        await running.wait_for(lambda: any(e.__class__.__name__ == "QueueChanged" for e in running.events))
        await server.bounce_now(track.queue_id)  # nobody to return it to: Badmail
        await running.wait_for(lambda: any(e.__class__.__name__ == "MessageBadmailed" for e in running.events))
        [track] = await server.track_messages(Query(queue_id=track.queue_id))
    finally:
        await server.stop()
    whats = [step.what for step in track.steps]
    assert whats[0] == "received" and "moved to Badmail" in whats, whats


async def test_tracking_takes_the_header_from_the_event_not_the_file(config_factory: Callable[..., Config]) -> None:
    """The intake's header scan carries Message-ID, Subject and how the message came in MessageQueued: the
    index has them although the stored file is gone before the writer looks (removed the moment it is dropped)."""
    from engine.events import Event, MessageDropped, MessageQueued

    running = await start_server(config_factory())
    server = running.server
    removed: list[str] = []

    def remove_at_once(event: Event) -> None:  # a bus subscriber runs as the event is published
        if isinstance(event, MessageDropped):
            Path(event.path).unlink()
            removed.append(event.queue_id)

    server.subscribe(remove_at_once)
    long_subject = "x" * 400

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
            client.sendmail("a@example.test", ["b@example.test"],
                            b"Message-ID:\r\n <Gone.1@Client.test>\r\nSubject: read\r\n  from the\tscan\r\n\r\nhi\r\n")
            client.sendmail("a@example.test", ["b@example.test"], f"Subject: {long_subject}\r\n\r\nhi\r\n".encode())
            client.sendmail("a@example.test", ["b@example.test"], b"\r\nno header at all\r\n")

    try:
        await asyncio.to_thread(send)
        await running.wait_for(lambda: len(removed) == 3)
        queued = [e for e in running.events if isinstance(e, MessageQueued)]
        assert [(e.message_id, e.subject, e.scanned) for e in queued] == [
            ("gone.1@client.test", "read from the scan", True), ("", "x" * 300, True), ("", "", True)]
        assert all(e.via.endswith("([127.0.0.1]) with ESMTP") for e in queued)
        [track] = await server.track_messages(Query(message_id="<GONE.1@client.test>"))
        assert track.queue_id == removed[0] and track.subject == "read from the scan"
        assert track.steps[0].detail.endswith("([127.0.0.1]) with ESMTP")
        assert [t.queue_id for t in await server.track_messages(Query(subject="scan"))] == [removed[0]]
        assert [t.subject for t in await server.track_messages(Query(queue_id=removed[1]))] == ["x" * 300]
        assert not running.drop_files()  # (every file was gone before tracking wrote)
    finally:
        await server.stop()


async def test_submitted_messages_carry_their_header_too(config_factory: Callable[..., Config]) -> None:
    """Pickup, the Posting Acceptor (through Pickup) and DSNs commit through Intake.submit: scanned as well."""
    from engine.events import MessageQueued

    running = await start_server(config_factory())
    server = running.server
    try:
        queue_id = await server.submit("", ("b@example.test",), b"Subject: Delivery Status Notification (Failure)"
                                       b"\r\nMessage-ID: <dsn.1@mx.test>\r\n\r\nsorry\r\n", "dsn")
        [event] = [e for e in running.events if isinstance(e, MessageQueued)]
        assert (event.queue_id, event.message_id, event.subject, event.via, event.scanned) == (
            queue_id, "dsn.1@mx.test", "Delivery Status Notification (Failure)", "", True)
        [track] = await server.track_messages(Query(queue_id=queue_id))
        assert track.message_id == "dsn.1@mx.test" and track.source == "dsn"
    finally:
        await server.stop()


def test_an_event_without_the_header_has_the_file_read(tmp_path: Path) -> None:
    """A producer that did not scan (``scanned`` False): the writer reads the stored file, as before."""
    from engine.events import EventBus, MessageQueued

    index = tracking.TrackingIndex(tmp_path / "t.sqlite", tmp_path, EventBus())
    (tmp_path / "Q1.eml").write_bytes(b"x-sender: a@b.test\r\nx-receiver: c@d.test\r\n"
                                      b"Message-ID: <from.file@x>\r\nSubject: from the file\r\n\r\nhi\r\n")
    connection = tracking.open_index(index.path)
    index.write_batch(connection, [MessageQueued("Q1", "a@b.test", ("c@d.test",), 10, "smtp"),
                                   MessageQueued("Q2", "a@b.test", ("c@d.test",), 10, "smtp", "in.event@x",
                                                 "in the event", scanned=True)])
    found = {t.queue_id: (t.message_id, t.subject) for t in tracking.search(connection, Query())}
    assert found == {"Q1": ("from.file@x", "from the file"), "Q2": ("in.event@x", "in the event")}
    assert [t.queue_id for t in tracking.search(connection, Query(subject="event"))] == ["Q2"]
    connection.close()


def test_message_queued_serialises_for_the_event_stream() -> None:
    """The admin server's event stream sends events as JSON; the new fields go along and come back."""
    import json

    from engine.admin.http_server import event_json
    from engine.events import MessageQueued

    event = MessageQueued("Q1", "a@b.test", ("c@d.test", "e@f.test"), 10, "smtp", "id@x", "Grüße", "from x",
                          scanned=True, at=5.0)
    data = json.loads(json.dumps(event_json(event)))
    assert data == {"type": "MessageQueued", "at": 5.0, "queue_id": "Q1", "sender": "a@b.test",
                    "recipients": ["c@d.test", "e@f.test"], "size": 10, "source": "smtp", "message_id": "id@x",
                    "subject": "Grüße", "via": "from x", "scanned": True}
