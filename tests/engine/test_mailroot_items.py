"""The Mailroot as the manager uses it: Drop listing and reading, Badmail resend/delete, Pickup preview and submit."""

from __future__ import annotations

import asyncio
import smtplib

import pytest
from engine_support import Running

from engine.errors import NotFoundError


def _send(port: int, rcpts: list[str], body: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("a@example.test", rcpts, body)


async def test_drop_listing_reading_and_delete(running: Running) -> None:
    body = b"From: a@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nhello\r\n"
    await asyncio.to_thread(_send, running.port, ["b@example.test"], body)
    [item] = await running.server.list_drop()
    assert item.sender == "a@example.test" and item.recipients == ("b@example.test",)
    assert item.subject == "Grüße" and item.size > len(body)
    message = await running.server.read_drop(item.name)
    assert message.endswith(body) and message.startswith(b"Received: ")
    with pytest.raises(NotFoundError):
        await running.server.read_drop("../Queue/x.eml")
    # Resend: a copy, envelope and all, goes through Pickup and is delivered again; the file stays.
    await running.server.resend_drop(item.name)
    await running.wait_for(lambda: len(running.drop_files()) == 2)
    copies = await running.server.list_drop()
    assert {c.recipients for c in copies} == {("b@example.test",)} and {c.subject for c in copies} == {"Grüße"}
    with pytest.raises(NotFoundError):
        await running.server.resend_drop("../smtpsvc.toml")
    for copy in copies:
        await running.server.delete_drop(copy.name)
    assert await running.server.list_drop() == []


async def test_pickup_preview_submit_and_badmail_resend(running: Running) -> None:
    good = b"From: a@example.test\r\nTo: c@example.test\r\nSubject: dropped\r\n\r\nbody\r\n"
    bad = b"To: c@example.test\r\nSubject: no from\r\n\r\nbody\r\n"
    preview = await running.server.preview_pickup(good)
    assert (preview.sender, preview.recipients, preview.problem) == ("a@example.test", ("c@example.test",), "")
    assert "From" in (await running.server.preview_pickup(bad)).problem
    await running.server.submit_to_pickup(good, "my message.eml")
    await running.server.submit_to_pickup(bad, "broken")
    await running.wait_for(lambda: len(running.drop_files()) == 1)
    badmail = running.server.mailroot.badmail
    await running.wait_for(lambda: len(list(badmail.glob("*.BDR"))) == 1)
    [item] = await running.server.list_badmail()
    assert "From" in item.reason
    assert await running.server.read_badmail(item.name) == bad
    # Resend: back through Pickup; still no From, so it is badmailed again, under a new name.
    await running.server.resend_badmail(item.name)
    await running.wait_for(lambda: len(list(badmail.glob("*.BDR"))) == 1
                           and not list(badmail.glob(f"{item.name}.*")))
    [again] = await running.server.list_badmail()
    await running.server.delete_badmail(again.name)
    assert await running.server.list_badmail() == []
