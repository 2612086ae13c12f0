"""Queued messages written straight into a Mailroot's Queue in the engine's format (fast: no SMTP, no fsync)."""

from __future__ import annotations

import os
from pathlib import Path

from engine.store.envelope import RecipientState, StateRecord, envelope_lines


def queue_id(number: int) -> str:
    """Ids that sort by number, as the engine's sort by arrival."""
    return f"Q{number:010d}"


def write_queued(queue: Path, count: int, *, now: float, domain: str = "relay.test", start: int = 0,
                 size: int = 2048, records: bool = True, frozen_every: int = 0) -> list[str]:
    """``count`` messages to ``rcpt<n>@domain``, deferred once with their next attempt an hour ahead
    (``records``: with a state record; else only the message file, as the engine leaves a new message)."""
    queue.mkdir(parents=True, exist_ok=True)
    body = b"Subject: queued\r\n\r\n" + b"x" * 74 + b"\r\n"
    body += (b"y" * 74 + b"\r\n") * max(0, (size - len(body)) // 76)
    ids = []
    for number in range(start, start + count):
        name = queue_id(number)
        rcpt = f"rcpt{number}@{domain}"
        path = queue / f"{name}.eml"
        path.write_bytes(envelope_lines("sender@example.test", [rcpt]) + body)
        if records:
            error = "451 4.7.1 Greylisted, try again later"
            record = StateRecord(name, "sender@example.test",
                                 [RecipientState(rcpt, last_error=error, attempts=1, enhanced="4.7.1")],
                                 now - 600, attempts=1, last_attempt=now - 60, next_attempt=now + 3600,
                                 last_error=error, frozen=bool(frozen_every) and number % frozen_every == 0)
            path.with_suffix(".env").write_bytes(record.to_bytes())
        os.utime(path, (now - 600, now - 600))
        ids.append(name)
    return ids
