"""`smtpsvc serve` relays to another `smtpsvc serve` (which offers CHUNKING and BINARYMIME) by BDAT: what lands in
the next hop's Drop is the original, octet for octet — a BINARYMIME message unconverted, a 1.5 MB one in two
chunks — and the relay's protocol log shows BDAT, never DATA."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve_support import ServeProcess, free_port
from smtp_helpers import RawSMTP

from engine.log import formats
from engine.store.envelope import split_envelope

RELAY_CONFIG = """\
[server]
fqdn = "relay.example.test"
smart_host = "[127.0.0.1]:{hop}"
relay_allowed = ["127.0.0.0/8"]
outbound_timeout = 30
"""
HOP_CONFIG = """\
[server]
fqdn = "mx.dest.test"
"""


@dataclass
class Pair:
    relay: ServeProcess
    hop: ServeProcess

    def drop(self) -> list[Path]:
        return sorted((self.hop.mailroot / "Drop").glob("*.eml"))

    def queue(self) -> list[Path]:
        return sorted((self.relay.mailroot / "Queue").glob("*.eml"))

    def outbound_methods(self) -> list[str]:
        folder = self.relay.config.parent / "Logs" / "SMTPSVC1"
        lines = [line for path in sorted(folder.glob("*.log")) for line in path.read_text("utf-8").splitlines()]
        return [e["cs-method"] for e in formats.parse_w3c(lines) if e["cs-username"] == formats.OUTBOUND_USER]

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                logs = "\n".join(p.log.read_text(errors="replace")[-2000:] for p in (self.relay, self.hop))
                pytest.fail(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.05)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    hop = ServeProcess(tmp_path / "hop" / "Mailroot", free_port(), domain="dest.test")
    relay = ServeProcess(tmp_path / "relay" / "Mailroot", free_port(), domain="example.test")
    for process, text in ((hop, HOP_CONFIG), (relay, RELAY_CONFIG.format(hop=hop.port))):
        process.mailroot.parent.mkdir(parents=True)
        process.config.write_text(text)
    hop.start()
    try:
        relay.start()
        try:
            yield Pair(relay, hop)
        finally:
            assert relay.stop() == 0
    finally:
        assert hop.stop() == 0


def send_bdat(port: int, message: bytes, body: str) -> list[str]:
    raw = RawSMTP(port, timeout=30)
    replies = [raw.cmd("EHLO client.test"), raw.cmd(f"MAIL FROM:<s@example.test> BODY={body}"),
               raw.cmd("RCPT TO:<x@dest.test>")]
    raw.send(b"BDAT %d LAST\r\n" % len(message) + message)
    replies += [raw.read_reply()[-1], raw.cmd("QUIT")]
    raw.close()
    return replies


def stored(path: Path) -> bytes:
    """The message in a Drop file without the two Received fields the relay and the hop put on top."""
    data = path.read_bytes()
    lines = data[split_envelope(data)[2]:].split(b"\r\n")
    index = 0
    while lines[index].startswith(b"Received: ") or lines[index][:1] in (b" ", b"\t"):
        index += 1
    return b"\r\n".join(lines[index:])


BINARY = (b"From: s@example.test\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
          + random.Random(9).randbytes(100_000) + b"\r\n.\r\n\x00\n\r")
LARGE = b"Subject: large\r\n\r\n.first line\r\n" + b"".join(b"%076d\r\n" % n for n in range(20_000))


@pytest.mark.parametrize(("message", "body", "chunks"), [(BINARY, "BINARYMIME", 1), (LARGE, "8BITMIME", 2)],
                         ids=["binarymime", "1.5MB"])
def test_relayed_by_bdat_octet_for_octet(pair: Pair, message: bytes, body: str, chunks: int) -> None:
    replies = send_bdat(pair.relay.port, message, body)
    assert all(r.startswith(("2", "3")) for r in replies), replies
    pair.wait_for(lambda: pair.drop() and not pair.queue(), "the message in the next hop's Drop")
    [path] = pair.drop()
    assert stored(path) == message
    pair.wait_for(lambda: pair.outbound_methods().count("BDAT") >= chunks, "BDAT in the relay's protocol log")
    methods = pair.outbound_methods()
    assert methods.count("BDAT") == chunks and "DATA" not in methods, methods
