"""`smtpsvc events` and the journal: `smtpsvc serve` under systemd (JOURNAL_STREAM) prints each event-log
entry with a syslog priority and its event ID; `smtpsvc events` reads the log back with filters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from serve_support import REPO, ServeProcess


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_events_from_serve_to_the_journal_and_the_command_line(serve: ServeProcess, monkeypatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # what systemd sets for a service whose stderr is the journal
    started = time.time()
    serve.start()
    assert serve.stop() == 0
    journal = serve.log.read_text().splitlines()
    assert "<6>smtpsvc.events: [1000] Service: The virtual server is started." in journal
    assert "<6>smtpsvc.events: [1001] Service: The virtual server is stopped." in journal
    assert all(line.startswith("<") for line in journal)  # every line has its priority, no time stamp
    args = ("--config", str(serve.config), "--mailroot", str(serve.mailroot))
    shown = cli("events", *args)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 2 and "Information  1000  Service" in lines[0] and "1001" in lines[1]
    as_json = cli("events", "--json", "--since", "10m", *args)
    assert [json.loads(line)["id"] for line in as_json.stdout.splitlines()] == [1000, 1001]
    assert all(json.loads(line)["at"] >= started - 1 for line in as_json.stdout.splitlines())
    assert cli("events", "--level", "Warning", *args).stdout == ""
    bad = cli("events", "--since", "yesterday-ish", *args)
    assert bad.returncode == 2 and "not a date" in bad.stderr
    assert Path(serve.mailroot / "EventLog" / "events.jsonl").exists()


def test_counters_from_the_running_engine(serve: ServeProcess) -> None:
    import smtplib

    args = ("--config", str(serve.config), "--mailroot", str(serve.mailroot))
    stopped = cli("counters", *args)
    assert stopped.returncode == 1 and "no engine runs" in stopped.stderr
    serve.start()
    with smtplib.SMTP("127.0.0.1", serve.port, timeout=10) as client:
        client.sendmail("a@example.test", ["b@example.test"], b"Subject: count me\r\n\r\nhi\r\n")
    as_json = cli("counters", "--json", *args)
    assert as_json.returncode == 0, as_json.stderr
    values = json.loads(as_json.stdout)
    assert values["Messages Received Total"] == 1 and "Messages Received/sec" in values
    table = cli("counters", *args)
    assert any(line.startswith("Messages Received Total") and line.endswith(" 1") for line in table.stdout.splitlines())
    assert serve.stop() == 0


def test_track_finds_a_message_sent_with_swaks(serve: ServeProcess) -> None:
    import shutil

    swaks = shutil.which("swaks")
    if swaks is None:
        import pytest

        pytest.skip("swaks is installed by tests/run")
    serve.start()
    done = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(serve.port), "--from", "ann@example.test",
                           "--to", "zed@example.test", "--header", "Message-Id: <track-me@swaks.test>",
                           "--header", "Subject: find me"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert serve.stop() == 0
    args = ("--config", str(serve.config), "--mailroot", str(serve.mailroot))
    found = cli("track", "--message-id", "track-me@swaks.test", *args)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert "from ann@example.test to zed@example.test" in lines[0] and '"find me"' in lines[0]
    assert "received" in lines[1] and "delivered to Drop" in lines[2]
    by_subject = cli("track", "--subject", "FIND", *args)
    assert by_subject.returncode == 0 and by_subject.stdout.splitlines()[0] == lines[0]
    as_json = cli("track", "--recipient", "@example.test", "--since", "1h", "--json", *args)
    assert json.loads(as_json.stdout)["subject"] == "find me"
    missing = cli("track", "--sender", "nobody@example.test", *args)
    assert missing.returncode == 1 and "no message matches" in missing.stderr


def _read_until(proc: subprocess.Popen[bytes], wanted: str, timeout: float = 30.0) -> list[str]:
    """Lines of a following command's stdout until one contains ``wanted`` (select on the pipe: no busy wait,
    and os.read so that no line waits in a file object's buffer while select says the pipe is empty)."""
    import selectors

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffered = b""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffered += chunk
            *complete, buffered = buffered.split(b"\n")
            lines += [line.decode() for line in complete]
            if any(wanted in line.decode() for line in complete):
                return lines
    raise AssertionError(f"{wanted!r} not seen in {lines}")


def test_following_the_protocol_log_and_the_event_log(serve: ServeProcess) -> None:
    import smtplib

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ("--config", str(serve.config))
    serve.start()
    follow = [sys.executable, "-m", "app.cli"]
    tail = subprocess.Popen([*follow, "log", "tail", "-n", "0", "-f", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    events = subprocess.Popen([*follow, "events", "--follow", "--mailroot", str(serve.mailroot), *args], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert "1000" in _read_until(events, "1000")[-1]
        with smtplib.SMTP("127.0.0.1", serve.port, timeout=10) as client:
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: follow\r\n\r\nhi\r\n")
        lines = _read_until(tail, " QUIT ")
        assert [line.split(" ")[8] for line in lines if not line.startswith("#")][-5:] == \
            ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
        assert serve.stop() == 0
        assert "1001" in _read_until(events, "1001")[-1]
    finally:
        for proc in (tail, events):
            proc.terminate()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
