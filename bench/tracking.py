"""Message-tracking benchmark: searches of the tracking index holding 1,000,000 messages.

    python bench/tracking.py                      # 1,000,000 messages (a few minutes to build)
    python bench/tracking.py --messages 100000    # a smaller index

The index is filled through the engine's own writer (``TrackingIndex.write_batch``, batches of 5,000 events:
each message received, then delivered or attempted and removed), with 20,000 senders, 50,000 recipients in
200 domains and a Message-ID each. Then each kind of search `smtpsvc track` makes runs 25 times on a warm
index; the median and the maximum are reported with the number of messages found. The figures are
absolute times on this (shared, noisy) machine; the point is that a search costs milliseconds whatever the
index size, as an index lookup does, where a scan of a million logged messages would take seconds.
Writes a JSON record to bench/out/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from engine.admin.tracking import Query, TrackingIndex, open_index, search  # noqa: E402
from engine.events import EventBus, MessageDropped, MessageQueued, MessageRemoved, QueueChanged  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
BATCH = 5000
RUNS = 25


def fill(index: TrackingIndex, path: Path, messages: int, rng: random.Random) -> tuple[float, dict[str, str]]:
    connection = open_index(path)
    start = time.time() - messages  # one message a second, ending now
    began = time.perf_counter()
    cpu = time.process_time()
    batch: list[object] = []
    examples: dict[str, str] = {}
    for n in range(messages):
        at = start + n
        queue_id = f"{n:024X}"
        sender = f"user{rng.randrange(20_000)}@sender{rng.randrange(100)}.test"
        recipients = tuple(f"rcpt{rng.randrange(50_000)}@dest{rng.randrange(200)}.test"
                           for _ in range(1 + (n % 3 == 0)))
        batch.append(MessageQueued(queue_id, sender, recipients, 4096, "smtp", f"m{n + 1}@client.test",
                                   scanned=True, at=at))  # (the header scan's Message-ID; no Subject)
        if n == messages // 2:
            examples = {"queue_id": queue_id, "sender": sender, "recipient": recipients[0],
                        "sender_domain": "@" + sender.partition("@")[2],
                        "recipient_domain": "@" + recipients[0].partition("@")[2]}
        if n % 4:
            batch.append(MessageDropped(queue_id, "", recipients, at=at + 0.01))
        else:
            batch.append(QueueChanged(queue_id, "attempted", at=at + 1))
            batch.append(MessageRemoved(queue_id, "delivered", at=at + 1))
        if len(batch) >= BATCH:
            index.write_batch(connection, batch)  # type: ignore[arg-type]
            batch = []
        if n and n % 200_000 == 0:
            print(f"  {n:,} messages indexed ({time.perf_counter() - began:.0f} s)", flush=True)
    if batch:
        index.write_batch(connection, batch)  # type: ignore[arg-type]
    with connection:
        connection.execute("ANALYZE")
    connection.close()
    cpu_us = (time.process_time() - cpu) / messages * 1e6
    print(f"  indexing cost: {cpu_us:.0f} µs of CPU per message (the writer thread's work per message)", flush=True)
    examples["cpu_us_per_message"] = f"{cpu_us:.0f}"
    return time.perf_counter() - began, examples


def timed(path: Path, query: Query) -> tuple[float, float, int]:
    connection = open_index(path, readonly=True)
    times, found = [], 0
    for _ in range(RUNS):
        began = time.perf_counter()
        found = len(search(connection, query))
        times.append((time.perf_counter() - began) * 1000)
    connection.close()
    return statistics.median(times), max(times), found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in the index (default 1,000,000)")
    args = parser.parse_args(argv)
    messages = max(1000, min(args.messages, 5_000_000))
    rng = random.Random(13)
    with tempfile.TemporaryDirectory(prefix="smtpsvc-tracking-") as workdir:
        path = Path(workdir) / "Tracking" / "tracking.sqlite"
        index = TrackingIndex(path, Path(workdir) / "Queue", EventBus())
        print(f"filling an index of {messages:,} messages…", flush=True)
        seconds, example = fill(index, path, messages, rng)
        size_mb = sum(p.stat().st_size for p in path.parent.iterdir()) / 1e6
        now = time.time()
        queries = {
            "queue ID": Query(queue_id=example["queue_id"]),
            "Message-ID": Query(message_id=f"<m{messages // 3}@client.test>"),
            "sender address": Query(sender=example["sender"]),
            "recipient address": Query(recipient=example["recipient"]),
            "sender domain, newest 100": Query(sender=example["sender_domain"]),
            "recipient domain, newest 100": Query(recipient=example["recipient_domain"]),
            "sender + since a day ago": Query(sender=example["sender"], since=now - 86400),
            "everything of the last 10 minutes": Query(since=now - 600, limit=10_000),
        }
        rows = []
        for label, query in queries.items():
            median_ms, max_ms, found = timed(path, query)
            rows.append({"search": label, "median_ms": median_ms, "max_ms": max_ms, "found": found})
            print(f"  {label:34s} median {median_ms:8.2f} ms  max {max_ms:8.2f} ms  ({found} found)", flush=True)
        with contextlib.suppress(OSError):
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = [f"Message tracking: {messages:,} messages indexed in {seconds:.0f} s "
            f"({messages / seconds:,.0f} messages/s, {example['cpu_us_per_message']} µs CPU each), "
            f"index {size_mb:.0f} MB; load average {load}", "",
            "| search | median | max | found |", "|---|---:|---:|---:|"]
    text += [f"| {r['search']} | {r['median_ms']:.2f} ms | {r['max_ms']:.2f} ms | {r['found']} |" for r in rows]
    print("\n" + "\n".join(text))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (OUT_DIR / f"tracking-{stamp}.json").write_text(json.dumps(
        {"messages": messages, "fill_seconds": seconds, "index_mb": size_mb, "searches": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
