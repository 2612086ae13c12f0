"""A real `smtpsvc serve`'s live panes over HTTPS: a connected session's transcript (AUTH secret masked) and the
files waiting in its Pickup folder while the server is stopped."""

from __future__ import annotations

import asyncio
import smtplib
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
