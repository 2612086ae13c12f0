"""Soak: `smtpsvc serve` killed with SIGKILL under load, SMTP and Pickup at once, round after round.

Nothing acknowledged may be lost: every message answered 250 and every file put into Pickup ends in Drop.
Nothing may be stored twice, except a Pickup file that was being taken at the very moment of a kill.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from serve_support import ServeProcess, free_port
from smtp_helpers import RawSMTP

ROUNDS = 50
PER_ROUND = 15  # at least this many SMTP acknowledgements and Pickup files before each kill
SUBJECT = re.compile(rb"^Subject: (\S+)\r?$", re.M)


@dataclass
class Load:
    """What the clients of one round did, for the checks at the end."""

    acked: list[str] = field(default_factory=list)  # SMTP subjects answered 250
    unanswered: list[str] = field(default_factory=list)  # SMTP subjects whose end of DATA got no reply
    pickup: list[str] = field(default_factory=list)  # Pickup files written (each one is handed over)
    stop: threading.Event = field(default_factory=threading.Event)


def smtp_client(port: int, tag: str, load: Load) -> None:
    for connection in range(1000):  # bounded; ends at the kill
        try:
            raw = RawSMTP(port, timeout=10)
        except OSError:
            return
        try:
            raw.cmd("EHLO soak.test")
            for n in range(10):
                subject = f"S-{tag}-{connection}-{n}"
                raw.send(b"MAIL FROM:<soak@example.test>\r\nRCPT TO:<box@example.test>\r\nDATA\r\n")
                if not [raw.read_reply()[-1] for _ in range(3)][-1].startswith("354"):
                    return
                raw.send(f"Subject: {subject}\r\n\r\n{'x' * 500}\r\n.\r\n".encode())
                load.unanswered.append(subject)
                if not raw.read_reply()[-1].startswith("250"):
                    return
                load.unanswered.remove(subject)
                load.acked.append(subject)
        except OSError:
            return
        finally:
            raw.close()
        if load.stop.is_set():
            return


def pickup_writer(pickup: Path, tag: str, load: Load) -> None:
    for n in range(1000):  # bounded; ends at the kill
        if load.stop.is_set():
            return
        name = f"P-{tag}-{n}"
        temp = pickup / f".{name}.tmp"  # hidden while written, then moved in: the way to hand a file over
        temp.write_bytes(f"From: soak@example.test\r\nTo: box@example.test\r\nSubject: {name}\r\n\r\nbody\r\n".encode())
        os.rename(temp, pickup / f"{name}.eml")
        load.pickup.append(name)
        time.sleep(0.002)  # a steady trickle, not a burst that the kill always finds unread


def claims_in(sorttemp: Path) -> set[str]:
    """Pickup files being taken at this moment (their claims), by Subject."""
    names = set()
    for claim in sorttemp.glob("pickup-*"):
        match = SUBJECT.search(claim.read_bytes())
        if match:
            names.add(match.group(1).decode())
    return names


def wait_until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing(tmp_path: Path) -> None:
    mailroot = tmp_path / "Mailroot"
    serve = ServeProcess(mailroot, free_port())
    serve.config.write_text('name = "soak"\n')
    acked: list[str] = []
    unanswered: list[str] = []
    written: list[str] = []
    in_flight: set[str] = set()
    started = time.monotonic()
    for round_number in range(ROUNDS):
        serve.start()
        load = Load()
        threads = [threading.Thread(target=smtp_client, args=(serve.port, f"{round_number}.{i}", load))
                   for i in range(3)]
        threads.append(threading.Thread(target=pickup_writer, args=(mailroot / "Pickup", str(round_number), load)))
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda load=load: len(load.acked) >= PER_ROUND and len(load.pickup) >= PER_ROUND, 60)
        finally:
            serve.kill()
            load.stop.set()
            for thread in threads:
                thread.join(30)
        in_flight |= claims_in(mailroot / "SortTemp")
        acked += load.acked
        unanswered += load.unanswered
        written += load.pickup
    # One last start: everything left (queue, Pickup, claims) is taken and delivered.
    serve.start()
    wait_until(lambda: not list((mailroot / "Pickup").glob("*.eml"))
               and not list((mailroot / "SortTemp").glob("pickup-*"))
               and not list((mailroot / "Queue").glob("*.eml")), 120)
    assert serve.stop() == 0
    elapsed = time.monotonic() - started

    stored = Counter(match.group(1).decode() for path in (mailroot / "Drop").glob("*.eml")
                     if (match := SUBJECT.search(path.read_bytes())))
    lost_smtp = [s for s in acked if not stored[s]]
    lost_pickup = [s for s in written if not stored[s]]
    duplicates = {s: n for s, n in stored.items() if n > 1}
    print(f"soak: {ROUNDS} rounds of kill -9 in {elapsed:.0f} s; {len(acked)} SMTP messages acknowledged "
          f"({len(unanswered)} more unanswered at a kill), {len(written)} Pickup files; "
          f"{len(in_flight)} Pickup files in flight at a kill, {len(duplicates)} duplicates")
    assert not lost_smtp and not lost_pickup, (lost_smtp[:10], lost_pickup[:10])
    assert not [s for s in duplicates if s.startswith("S-")], duplicates  # SMTP: never stored twice
    assert set(duplicates) <= in_flight, duplicates  # Pickup: only a file being taken at a kill
    assert not list((mailroot / "Badmail").glob("*.BAD"))
