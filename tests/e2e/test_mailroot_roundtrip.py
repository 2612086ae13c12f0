"""Drop → Pickup round trip and Pickup end to end with `smtpsvc serve`."""

from __future__ import annotations

import os
import smtplib
import time
from pathlib import Path

import pytest
from serve_support import ServeProcess

from engine.pickup.pickup import parse_pickup
from engine.store.envelope import split_envelope


def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


BODIES = [
    b"From: a@example.test\r\nSubject: plain\r\n\r\nhello\r\n",
    b"From: a@example.test\r\nSubject: dots\r\n\r\n.leading\r\n..two\r\n.\r\nafter a lone dot\r\n",
    b"From: a@example.test\r\nSubject: ends in a dot line\r\n\r\nlast line is a dot\r\n.\r\n",
    "From: a@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "\r\nGrüße\r\n".encode(),
]


@pytest.mark.parametrize("body", BODIES, ids=["plain", "dots", "final-dot", "8bit"])
def test_drop_file_put_back_into_pickup_is_delivered_identically(serve: ServeProcess, body: bytes) -> None:
    serve.start()
    with smtplib.SMTP("127.0.0.1", serve.port) as client:
        client.sendmail("a@example.test", ["b@example.test", "c@example.test"], body)
    drop = serve.mailroot / "Drop"
    _wait(lambda: len(list(drop.glob("*.eml"))) == 1)
    [first] = drop.glob("*.eml")
    original = parse_pickup(first.read_bytes(), "example.test")
    assert original.content.endswith(body)
    # Re-submit: write it elsewhere, then rename into Pickup (the atomic way).
    staging = serve.mailroot.parent / "staging.eml"
    staging.write_bytes(first.read_bytes())
    first.rename(serve.mailroot.parent / "first.eml")
    os.replace(staging, serve.mailroot / "Pickup" / "again.eml")
    _wait(lambda: len(list(drop.glob("*.eml"))) == 1)
    [second] = drop.glob("*.eml")
    again = parse_pickup(second.read_bytes(), "example.test")
    assert (again.sender, again.recipients) == (original.sender, original.recipients)
    assert again.content == original.content
    assert not list((serve.mailroot / "Pickup").iterdir())
    assert serve.stop() == 0


def test_pickup_files_of_every_shape(serve: ServeProcess) -> None:
    serve.start()
    pickup = serve.mailroot / "Pickup"
    files = {
        "envelope.eml": b"x-sender: s@example.test\r\nx-receiver: r1@example.test\r\nx-receiver: r2@example.test\r\n"
                        b"From: s@example.test\r\nSubject: env\r\n\r\nbody\r\n",
        "headers.txt": b"From: s@example.test\nTo: t1@example.test\nCc: t2@example.test\nBcc: hidden@example.test\n"
                       b"Subject: lf only\n\nbody\n",
        "nofrom.eml": b"To: t@example.test\r\nSubject: no from\r\n\r\nbody\r\n",
        "junk.bin": bytes(range(256)) * 10,
    }
    for name, data in files.items():
        staging = serve.mailroot.parent / name
        staging.write_bytes(data)
        os.replace(staging, pickup / name)
    drop = serve.mailroot / "Drop"
    badmail = serve.mailroot / "Badmail"
    _wait(lambda: len(list(drop.glob("*.eml"))) == 2 and len(list(badmail.glob("*.BDR"))) == 2)
    envelopes = {}
    for path in drop.glob("*.eml"):
        data = path.read_bytes()
        envelopes[split_envelope(data)[1]] = data
    assert ("r1@example.test", "r2@example.test") in envelopes
    from_headers = envelopes[("t1@example.test", "t2@example.test", "hidden@example.test")]
    headers = from_headers[split_envelope(from_headers)[2]:].split(b"\r\n\r\n", 1)[0]
    assert b"Bcc:" not in headers and b"hidden" not in headers
    reasons = sorted(p.read_text() for p in badmail.glob("*.BDR"))
    assert any("From" in r for r in reasons)
    assert len(list(badmail.glob("*.BAD"))) == 2 and len(list(badmail.glob("*.BDP"))) == 2
    _wait(lambda: not list(pickup.iterdir()))
    assert serve.stop() == 0


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern)))
