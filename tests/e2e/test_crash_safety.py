"""Nothing that got a 250 is lost: SIGKILL `smtpsvc serve` under concurrent load, restart, count every message."""

from __future__ import annotations

import re
import smtplib
import threading
import time

from serve_support import ServeProcess, tokens_in

from engine.store.envelope import split_envelope

SESSIONS = 12
TOKEN = re.compile(rb"X-Token: (t\d+-\d+-\d+)")


def _client(port: int, worker: int, rounds: int, accepted: list[str], stop: threading.Event) -> None:
    sequence = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                for _ in range(5):  # a few messages per connection, then a new connection
                    token = f"t{rounds}-{worker}-{sequence}"
                    sequence += 1
                    # Every third message also has a remote (relay-allowed) recipient: it goes via Queue.
                    rcpts = [f"u{worker}@example.test"] + (["far@relay.test"] if sequence % 3 == 0 else [])
                    body = (f"From: w{worker}@example.test\r\nSubject: crash test\r\nX-Token: {token}\r\n\r\n"
                            + "payload line\r\n" * 50).encode()
                    client.sendmail(f"w{worker}@example.test", rcpts, body)
                    accepted.append(token)  # only after the 250
        except (OSError, smtplib.SMTPException):
            time.sleep(0.01)
            if stop.is_set():
                return


def test_sigkill_under_load_loses_nothing_acknowledged(serve: ServeProcess) -> None:
    config = serve.config
    # Remote mail goes to a smart host that refuses connections: it must stay queued across the crashes.
    config.write_text('[server]\nsmart_host = "[127.0.0.1]:1"\n\n'
                      '[[domain]]\nname = "relay.test"\ntype = "remote"\nrelay_allowed = true\n')
    all_accepted: list[str] = []
    for rounds in range(3):
        serve.start()
        accepted: list[str] = []
        stop = threading.Event()
        threads = [threading.Thread(target=_client, args=(serve.port, w, rounds, accepted, stop))
                   for w in range(SESSIONS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(accepted) < 150 + rounds * 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        serve.kill()  # mid-load: sessions are in every state, commits in flight
        stop.set()
        for thread in threads:
            thread.join(30)
        assert len(accepted) >= 100, "the load did not get going"
        all_accepted += accepted

    serve.start()  # recovery
    drop = serve.mailroot / "Drop"
    queue = serve.mailroot / "Queue"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending_local = [p for p in queue.glob("*.eml")
                         if any(r.endswith("@example.test") for r in split_envelope(p.read_bytes())[1])]
        if not pending_local:
            break
        time.sleep(0.1)
    assert serve.stop() == 0

    dropped = tokens_in(drop, TOKEN)
    duplicates = {t for t in dropped if dropped.count(t) > 1}
    assert not duplicates, f"delivered twice: {sorted(duplicates)[:10]}"
    missing = set(all_accepted) - set(dropped)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
    # Messages with a remote recipient keep it queued (no outbound delivery in this build), each once.
    queued = tokens_in(queue, TOKEN)
    assert len(queued) == len(set(queued))
    with_remote = {t for t in all_accepted if (int(t.rsplit("-", 1)[1]) + 1) % 3 == 0}
    assert with_remote <= set(queued), "an acknowledged remote recipient left the queue"
    for path in queue.glob("*.eml"):
        assert split_envelope(path.read_bytes())[1] == ("far@relay.test",) or path.with_suffix(".env").exists()
    assert list((serve.mailroot / "SortTemp").glob("spool-*")) == []
