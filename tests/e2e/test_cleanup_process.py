"""The cleanup process killed under load: every message that got a 250 is in Drop exactly once, none that got a 451."""

from __future__ import annotations

import os
import re
import smtplib
import threading
import time
from pathlib import Path

import pytest
from serve_support import ServeProcess, tokens_in

SESSIONS = 10
TOKEN = re.compile(rb"X-Token: (t\d+-\d+)")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _client(port: int, worker: int, accepted: list[str], refused: list[str], stop: threading.Event) -> None:
    sequence = 0
    while not stop.is_set() and sequence < 2000:  # (bounded: the test stops it long before)
        token = f"t{worker}-{sequence}"
        sequence += 1
        body = (f"From: w{worker}@example.test\r\nSubject: cleanup killed\r\nX-Token: {token}\r\n\r\n"
                + "payload line\r\n" * 50).encode()
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:  # one message per connection
                client.sendmail(f"w{worker}@example.test", [f"u{worker}@example.test"], body)
            accepted.append(token)  # only after the 250
        except smtplib.SMTPDataError as error:
            assert error.smtp_code == 451, error
            refused.append(token)


@pytest.mark.slow
def test_killing_the_cleanup_process_under_load_loses_and_doubles_nothing_acknowledged(serve: ServeProcess) -> None:
    serve.start()
    assert serve.proc is not None
    accepted: list[str] = []
    refused: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(serve.port, w, accepted, refused, stop))
               for w in range(SESSIONS)]
    for thread in threads:
        thread.start()
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(killed) < 4 and time.monotonic() < deadline:
            if len(accepted) < 100 * (len(killed) + 1):
                time.sleep(0.01)
                continue
            children = _children(serve.proc.pid)
            if children and children[0] not in killed:
                os.kill(children[0], 9)  # mid-load: commits in flight in the child
                killed.append(children[0])
        stop.set()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert len(killed) == 4, f"the load did not get going ({len(accepted)} accepted)"
    assert len(accepted) >= 400
    assert serve.stop() == 0
    assert serve.proc.poll() == 0

    dropped = tokens_in(serve.mailroot / "Drop", TOKEN)
    duplicates = {t for t in dropped if dropped.count(t) > 1}
    assert not duplicates, f"delivered twice: {sorted(duplicates)[:10]}"
    missing = set(accepted) - set(dropped)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
    # A commit the dead child had put in place is completed (250); one it had not is refused and not delivered.
    assert not set(refused) & set(dropped)
    assert set(dropped) == set(accepted)
    assert list((serve.mailroot / "SortTemp").glob("spool-*")) == []
    assert "the cleanup process (pid" in serve.log.read_text()
