"""VRFY on and off (IIS AllowVerify), applied to a running engine, seen by a real client (smtplib)."""

from __future__ import annotations

import asyncio
import smtplib
from dataclasses import replace

from engine_support import Running


def verify_and_help(port: int) -> tuple[tuple[int, bytes], bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        return client.verify("someone@example.test"), client.help()


async def test_vrfy_answers_252_and_stops_when_allow_verify_is_turned_off(running: Running) -> None:
    (code, text), help_text = await asyncio.to_thread(verify_and_help, running.port)
    assert code == 252 and text.startswith(b"2.1.5 Cannot VRFY user") and b"VRFY" in help_text
    config = running.server.config()
    await running.server.apply_config(replace(config, server=replace(config.server, allow_verify=False)))
    (code, text), help_text = await asyncio.to_thread(verify_and_help, running.port)
    assert (code, text) == (502, b"5.5.1 VRFY command is disabled") and b"VRFY" not in help_text
