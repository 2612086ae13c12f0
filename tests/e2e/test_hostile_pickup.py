"""The hostile pass's Pickup reproductions (shared/reviews/adversarial.md), against a real engine."""

from __future__ import annotations

import os
from pathlib import Path

from engine_support import Running, make_config, start_server

from engine.events import ErrorEvent


async def test_bad_file_with_a_non_utf8_name_goes_to_badmail_once(running: Running) -> None:
    """Finding 10: the name could not be encoded for the .BDP; each retry left one more empty .BAD."""
    pickup = os.fsencode(running.server.mailroot.pickup)
    with open(pickup + b"/\xff\xfebad.eml", "wb") as handle:
        handle.write(b"junk\n")
    badmail = running.server.mailroot.badmail
    await running.wait_for(lambda: len(list(badmail.glob("*.BDR"))) == 1)
    assert not os.listdir(pickup)
    [bdp] = badmail.glob("*.BDP")
    assert "x-pickup-file: \\xff\\xfebad.eml" in bdp.read_text("utf-8")
    [bad] = badmail.glob("*.BAD")
    assert bad.read_bytes() == b"junk\n"
    assert not [e for e in running.events if isinstance(e, ErrorEvent)]


async def test_claims_already_queued_at_a_crash_are_not_sent_again(tmp_path: Path) -> None:
    """Finding 14: kill -9 between the commit of a Pickup file and the removal of its claim sent it twice."""
    mailroot = tmp_path / "Mailroot"
    for folder in ("SortTemp", "Drop", "Pickup"):
        (mailroot / folder).mkdir(parents=True)
    message = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: %s\r\n\r\nbody\r\n"
    sent, unsent = "18EEF00000000000000000A1", "18EEF00000000000000000A2"
    (mailroot / "SortTemp" / f"pickup-{sent}-sent.eml").write_bytes(message % b"sent")
    (mailroot / "Drop" / f"{sent}.eml").write_bytes(b"x-sender: a@example.test\r\nx-receiver: b@example.test\r\n"
                                                   + message % b"sent")  # committed just before the crash
    (mailroot / "SortTemp" / f"pickup-{unsent}-unsent.eml").write_bytes(message % b"unsent")
    run = await start_server(make_config(tmp_path))
    try:
        await run.wait_for(lambda: len(run.drop_files()) == 2 and not list((mailroot / "SortTemp").glob("pickup-*")))
        subjects = sorted(p.read_bytes().split(b"Subject: ")[1].split(b"\r\n")[0] for p in run.drop_files())
        assert subjects == [b"sent", b"unsent"]
        assert not list((mailroot / "Pickup").iterdir())
    finally:
        await run.server.stop()
