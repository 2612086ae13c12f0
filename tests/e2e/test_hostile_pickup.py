"""The hostile pass's Pickup reproductions (shared/reviews/adversarial.md), against a real engine."""

from __future__ import annotations

import os

from engine_support import Running

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
