"""The hostile pass's SMTP reproductions (shared/reviews/adversarial.md), against a real engine on loopback."""

from __future__ import annotations

import asyncio
import socket
import time

from engine_support import start_server
from smtp_helpers import RawSMTP


async def test_smuggling_in_normalize_mode_split_after_the_dot_line(config_factory) -> None:
    """Finding 1: ``hello\\n.\\r\\nM`` with a read boundary after the ``M`` must not end DATA."""
    run = await start_server(config_factory(bare_newline="normalize"))
    try:
        def talk() -> list[str]:
            raw = RawSMTP(run.port)
            raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for line in ("EHLO x", "MAIL FROM:<legit@x.test>", "RCPT TO:<x@example.test>", "DATA"):
                raw.cmd(line)
            raw.send(b"Subject: legit\r\n\r\nhello\n.\r\nM")
            # The server's read boundary cannot be observed from here; a pause makes the split all but certain
            # (tests/engine/test_data_stream.py proves every split deterministically).
            time.sleep(0.3)
            raw.send(b"AIL FROM:<spoof@bank.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
                     b"Subject: smuggled\r\nFrom: ceo@bank.test\r\n\r\nevil\r\n.\r\n")
            replies = [raw.read_reply()[-1]]
            replies.append(raw.cmd("QUIT"))
            raw.close()
            return replies

        replies = await asyncio.to_thread(talk)
        assert replies[0].startswith("250 2.6.0") and replies[1].startswith("221"), replies
        [drop] = run.drop_files()
        data = drop.read_bytes()
        assert b"x-sender: legit@x.test" in data.lower() and b"spoof@bank.test" in data  # one message, all content
        assert b"x-receiver: victim" not in data.lower()
    finally:
        await run.server.stop()
