"""A real `smtpsvc serve`'s live panes over HTTPS: a connected session's transcript (AUTH secret masked) and the
files waiting in its Pickup folder while the server is stopped; its protocol log file read from here."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from admin_support import OPERATORS, AdminServe

SECRET = "AHVzZXIAaHVudGVyMg=="  # base64 of "\0user\0hunter2": the initial response of AUTH PLAIN


@pytest.fixture
def engine(admin_serve: AdminServe) -> AdminServe:
    return admin_serve


async def post(engine: AdminServe, user: str, op: str, args: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": aiohttp.encode_basic_auth(user, OPERATORS[user][0])}
    async with aiohttp.ClientSession(engine.url, headers=headers) as session, \
            session.post(f"/api/v1/{op}", json=args, ssl=False) as response:
        return response.status, await response.json()


async def test_live_transcript_and_pickup_folder_over_https(engine: AdminServe) -> None:
    client = smtplib.SMTP("127.0.0.1", engine.port, timeout=10)
    try:
        await asyncio.to_thread(client.ehlo, "live.test")
        await asyncio.to_thread(client.docmd, "AUTH", f"PLAIN {SECRET}")  # refused here (no TLS): still recorded
        code, _ = await asyncio.to_thread(client.mail, "sender@live.test")
        assert code == 250
        status, reply = await post(engine, "watcher", "sessions.list", {})
        assert status == 200
        [session] = reply["result"]
        status, reply = await post(engine, "watcher", "sessions.transcript", {"id": session["session_id"]})
        assert status == 200  # a viewer may read it
        text = "\n".join(reply["result"])
        said = text.lower()  # smtplib sends its commands in lower case
        assert ">>> ehlo live.test" in said and ">>> mail from:<sender@live.test>" in said
        assert ">>> auth plain *** (masked)" in said and SECRET not in text and "hunter2" not in said
    finally:
        await asyncio.to_thread(client.quit)
    status, reply = await post(engine, "watcher", "sessions.transcript", {"id": session["session_id"]})
    assert status == 404 and "has ended" in str(reply)
    status, reply = await post(engine, "watcher", "sessions.transcript", {"id": 7})
    assert status == 400

    status, _ = await post(engine, "boss", "server.stop", {})
    assert status == 200
    for _ in range(400):  # the stop runs after its reply: wait until the Pickup service no longer takes files
        if (await post(engine, "watcher", "state", {}))[1]["result"]["state"] == "stopped":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the server did not stop")
    (engine.mailroot / "Pickup" / "waiting.eml").write_bytes(b"From: a@example.test\r\n\r\nwaits\r\n")
    status, reply = await post(engine, "watcher", "pickup.list", {})
    assert status == 200
    assert [(f["name"], f["size"]) for f in reply["result"]] == [("waiting.eml", 31)]


async def test_protocol_log_over_https(engine: AdminServe) -> None:
    """log.tail (the window's Protocol Log) and log.lines (`smtpsvc log tail`) read that computer's protocol log
    file; a viewer may; arguments out of their bounds are refused, saying which and why."""
    with smtplib.SMTP("127.0.0.1", engine.port, timeout=10) as client:
        await asyncio.to_thread(client.ehlo, "logged.test")
        await asyncio.to_thread(client.sendmail, "ann@example.test", ["bob@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    entries: list[dict[str, str]] = []
    for _ in range(400):  # the writer coalesces its lines: wait for the QUIT's (bounded)
        status, reply = await post(engine, "watcher", "log.tail", {"limit": 50})
        assert status == 200  # a viewer may read it
        entries = reply["result"]["entries"]
        if [e["cs-method"] for e in entries][-1:] == ["QUIT"]:
            break
        await asyncio.sleep(0.05)
    assert [e["cs-method"] for e in entries] == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert entries[0]["cs-username"] == "logged.test" and entries[0]["c-ip"] == "127.0.0.1"
    result = reply["result"]
    assert result["enabled"] and result["fmt"] == "w3c" and result["unreadable"] == 0
    assert Path(result["path"]).parent == engine.config.parent / "Logs" / "SMTPSVC1"
    status, reply = await post(engine, "watcher", "log.lines", {"lines": 2})
    assert status == 200 and reply["result"]["exists"] and reply["result"]["path"] == result["path"]
    assert [f" {e['cs-method']} " in line for e, line in zip(entries[-2:], reply["result"]["lines"], strict=True)] \
        == [True, True]  # the file's last two lines as they are: DATA's and QUIT's
    end = reply["result"]["offset"]
    status, reply = await post(engine, "watcher", "log.lines", {"offset": end})
    assert status == 200 and reply["result"]["lines"] == [] and reply["result"]["offset"] == end

    for op, args, problem in (
            ("log.tail", {"limit": 10_001}, "'limit' must be at most 10000"),
            ("log.tail", {"limit": -1}, "'limit' must be a whole number >= 0"),
            ("log.tail", {"limit": "all"}, "'limit' must be a whole number >= 0"),
            ("log.tail", {"path": "/etc/passwd"}, "unknown argument 'path'"),
            ("log.lines", {"lines": 1_000_000}, "'lines' must be at most 10000"),
            ("log.lines", {"offset": True}, "'offset' must be a whole number >= 0")):
        status, reply = await post(engine, "watcher", op, args)
        assert status == 400, (op, args, reply)
        assert reply["error"]["type"] == "RequestError" and problem in reply["error"]["message"], reply
