"""A large queue after a restart: SMTP answers and new mail is delivered while the queue is still being read back
(the listing says it is partial), and kill -9 at points of that recovery loses and duplicates nothing."""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from queue_support import queue_id, write_queued
from serve_support import ServeProcess

from app.cli import main
from engine.admin.control import request_sync, socket_path

COUNT = 30_000  # enough that reading it back from the files takes seconds, not milliseconds
TOKEN = re.compile(rb"X-Token: (\S+)")


def _state(serve: ServeProcess) -> dict[str, Any]:
    return dict(request_sync(socket_path(serve.mailroot), "state", timeout=30))


def _until(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _send(serve: ServeProcess, token: str, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", serve.port, timeout=30) as client:
        client.sendmail("new@example.test", [rcpt], f"Subject: during recovery\r\nX-Token: {token}\r\n\r\nhi\r\n")


def _tokens(folder: Path, names: str = "*.eml") -> list[str]:
    found = []
    for path in folder.glob(names):
        match = TOKEN.search(path.read_bytes())
        if match:
            found.append(match.group(1).decode())
    return found


@pytest.mark.slow
def test_serves_during_recovery_and_kill_9_during_recovery_loses_nothing(serve: ServeProcess,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    serve.config.write_text('[server]\nsmart_host = "[127.0.0.1]:1"\n\n'
                            '[[domain]]\nname = "relay.test"\ntype = "remote"\nrelay_allowed = true\n')
    queue = serve.mailroot / "Queue"
    write_queued(queue, COUNT, now=time.time(), frozen_every=10)
    local: list[str] = []
    remote: list[str] = []

    # 1. No index yet: everything is read from the files. SMTP answers at once, the listing says partial,
    #    new mail is accepted and a local message is delivered into Drop while the old queue is still read.
    serve.start()
    assert _state(serve)["recovering"]
    page = request_sync(socket_path(serve.mailroot), "queue.list", limit=5)
    assert page["recovering"] and page["total"] < COUNT
    assert main(["queue", "list", "--limit", "3", "--config", str(serve.config), "--mailroot",
                 str(serve.mailroot)]) == 0  # what `smtpsvc queue list` prints (in this process: no start-up)
    listing = capsys.readouterr().out
    assert listing.startswith("-- Partial list") and "so far" in listing
    _send(serve, "local-0", "user@example.test")
    _send(serve, "remote-0", "far@relay.test")
    local.append("local-0")
    remote.append("remote-0")
    _until(lambda: "local-0" in _tokens(serve.mailroot / "Drop"))
    state = _state(serve)
    assert state["recovering"], "recovery ended before the test could see mail served during it"
    # kill -9 halfway through reading the queue back
    _until(lambda: _state(serve)["recovery"]["recovered"] >= COUNT // 2)
    serve.kill()

    # 2. and 3. Restarts with a partial index (the messages read so far): killed early, then late.
    for round_, share in ((1, 0.1), (2, 0.9)):
        serve.start()
        _send(serve, f"local-{round_}", "user@example.test")
        _send(serve, f"remote-{round_}", "far@relay.test")
        local.append(f"local-{round_}")
        remote.append(f"remote-{round_}")
        _until(lambda share=share: (s := _state(serve))["recovery"]["recovered"] >= COUNT * share  # type: ignore[misc]
               or not s["recovering"])
        serve.kill()

    # 4. The whole queue, each message once, its state as it was; every new message once, where it belongs.
    serve.start()
    _until(lambda: not _state(serve)["recovering"])
    page = request_sync(socket_path(serve.mailroot), "queue.list", limit=COUNT * 2, timeout=60)
    items = page["items"]
    assert not page["recovering"] and page["total"] == len(items) == COUNT + len(remote)
    ids = [item["queue_id"] for item in items]
    assert len(set(ids)) == len(ids)
    old = {item["queue_id"]: item for item in items if item["sender"] == "sender@example.test"}
    assert set(old) == {queue_id(n) for n in range(COUNT)}
    assert {q for q, item in old.items() if item["state"] == "frozen"} == {queue_id(n) for n in range(0, COUNT, 10)}
    assert all(item["attempts"] == 1 for item in old.values())
    assert serve.stop() == 0
    dropped = _tokens(serve.mailroot / "Drop")
    assert sorted(dropped) == sorted(local)  # each local message delivered exactly once
    queued = [t for t in _tokens(queue) if t.startswith("remote-")]
    assert sorted(queued) == sorted(remote)  # each remote one queued exactly once (its smart host is down)
