"""Exim, a real MTA that sends with BDAT when CHUNKING is offered, delivers into smtpsvc (RFC 3030 end to end).

Exim 4.96 sends CHUNKING but never BODY=BINARYMIME (it has no BINARYMIME), so that part is covered by raw
BDAT commands (tests/engine/test_inbound_bdat.py, test_delivery_binarymime.py), not here.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from engine_support import start_server
from exim_support import missing, private_exim

from engine.conf.config import Config
from engine.conf.options import W3C_LOG_FIELDS
from engine.log import formats
from engine.store.envelope import split_envelope

pytestmark = pytest.mark.skipif(bool(missing()), reason=missing() or "-")

SMALL = b"Subject: small\nTo: b@example.test\n\nhello from Exim\n.\nthe line above is a lone dot\n"


def big_message() -> bytes:
    """About 4 MB: base64 lines of random bytes (Exim sends it as several BDAT chunks)."""
    blob = base64.encodebytes(random.Random(3030).randbytes(3_000_000))
    return b"Subject: big\nTo: b@example.test\n\n" + blob


def stored_body(path: Path) -> tuple[str, bytes]:
    """The Subject and body of a Drop file (what follows the first blank line)."""
    data = path.read_bytes()
    message = data[split_envelope(data)[2]:]
    head, _, body = message.partition(b"\r\n\r\n")
    subject = next(line for line in head.split(b"\r\n") if line.startswith(b"Subject: "))
    return subject[len(b"Subject: "):].decode(), body


async def test_exim_delivers_into_smtpsvc_with_bdat(tmp_path: Path, config_factory: Callable[..., Config]) -> None:
    running = await start_server(config_factory(max_message_size_kb=10_240, log_dir=str(tmp_path / "Logs"),
                                                log_fields=W3C_LOG_FIELDS))
    messages = {"small": SMALL, "big": big_message()}
    try:
        with private_exim(running.port) as exim:
            for message in messages.values():
                done = await asyncio.to_thread(exim.send, "sender@exim.test", ["b@example.test"], message)
                assert done.returncode == 0, done.stderr.decode(errors="replace")
            await running.wait_for(lambda: len(running.drop_files()) == 2)
            mainlog = exim.mainlog()
    finally:
        await running.server.stop()  # (the protocol log is flushed at stop)
    # Exim's own word: both delivered to smtpsvc, "K" = sent with CHUNKING.
    deliveries = [line for line in mainlog.splitlines() if " => b@example.test " in line]
    assert len(deliveries) == 2, mainlog
    assert all(" K " in line and "[127.0.0.1]" in line for line in deliveries), mainlog
    # smtpsvc's protocol log: BDAT commands, no DATA; the big message took several chunks.
    [log_file] = (tmp_path / "Logs").rglob("*.log")
    entries = formats.parse_w3c(log_file.read_text("utf-8").splitlines())
    methods = [entry["cs-method"] for entry in entries]
    assert "DATA" not in methods and methods.count("MAIL") == 2
    assert methods.count("BDAT") > 2, methods
    assert all(entry["sc-status"] == "250" for entry in entries if entry["cs-method"] == "BDAT")
    # Byte for byte: the bodies as sent (Exim puts CRLF line ends on the wire), the lone dot line included.
    stored = dict(stored_body(path) for path in running.drop_files())
    for subject, message in messages.items():
        assert stored[subject] == message.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n")
