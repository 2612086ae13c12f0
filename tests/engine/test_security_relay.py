"""Relay restrictions: every relay trick is refused for clients that may not relay, in every address form, while the
same local recipients in plain form are accepted and clients that may relay (listed, authenticated) pass."""

from __future__ import annotations

import asyncio

import pytest
from engine_support import start_server
from security_support import Talk

from engine.conf.addresses import parse_path
from engine.conf.config import Config
from engine.smtpd.policy import recipient_refusal, relay_trick

# (RCPT argument, the trick it plays); example.test is local, relay.test a remote domain open for relay.
TRICKS = [
    ("<user%elsewhere.test@example.test>", "percent hack"),
    ("<user%elsewhere.test@relay.test>", "percent hack"),
    ('<"user%elsewhere.test"@example.test>', "percent hack"),
    ("<@example.test:user@elsewhere.test>", "source route"),
    ("<@example.test,@alias.test:user@example.test>", "source route"),
    ("<elsewhere.test!user@example.test>", "bang path"),
    ('<"elsewhere.test!user"@alias.test>', "bang path"),
    ('<"user@elsewhere.test"@example.test>', "'@' in the local part"),
    ('<"user\\@elsewhere.test"@example.test>', "'@' in the local part"),
    ("<user@elsewhere.test.>", "trailing dot"),
    ("<user@example.test.>", "trailing dot"),
    ("<user@[192.0.2.1]>", "domain literal"),
    ("<user@[127.0.0.1]>", "domain literal"),
    ("<user@[IPv6:2001:db8::1]>", "domain literal"),
]
PLAIN = ["<user@example.test>", "<USER@Alias.Test>", "<someone@relay.test>", "<\"john smith\"@example.test>", "user"]


@pytest.mark.parametrize(("arg", "trick"), TRICKS)
def test_relay_tricks_are_recognised(arg: str, trick: str) -> None:
    path = parse_path("TO:" + arg, "TO:", "example.test", allow_null=False)
    assert relay_trick(path) == trick


@pytest.mark.parametrize("arg", PLAIN)
def test_plain_recipients_are_no_trick(arg: str) -> None:
    assert relay_trick(parse_path("TO:" + arg, "TO:", "example.test", allow_null=False)) is None


def test_listed_and_authenticated_clients_may_use_them(config_factory) -> None:
    config: Config = config_factory(relay_allowed=("192.0.2.0/24",))
    path = parse_path("TO:<user%elsewhere.test@example.test>", "TO:", "example.test", allow_null=False)
    assert recipient_refusal(path, "198.51.100.1", False, config) == "percent hack"
    assert recipient_refusal(path, "192.0.2.9", False, config) is None
    assert recipient_refusal(path, "198.51.100.1", True, config) is None
    remote = parse_path("TO:<user@elsewhere.test>", "TO:", "example.test", allow_null=False)
    assert recipient_refusal(remote, "198.51.100.1", False, config) == "relay"


async def test_tricks_refused_on_the_wire(config_factory) -> None:
    running = await start_server(config_factory())
    try:
        def talk() -> dict[str, str]:
            client, _ = Talk.open(running.port)
            client.cmd("EHLO client.test")
            client.cmd("MAIL FROM:<a@example.test>")
            answers = {arg: client.cmd(f"RCPT TO:{arg}") for arg, _ in TRICKS}
            answers.update({arg: client.cmd(f"RCPT TO:{arg}") for arg in PLAIN})
            client.close()
            return answers

        answers = await asyncio.to_thread(talk)
        for arg, _ in TRICKS:
            assert answers[arg].startswith("550 5.7.1 Unable to relay for "), (arg, answers[arg])
        for arg in PLAIN:
            assert answers[arg].startswith("250 2.1.5"), (arg, answers[arg])
        snapshot = await running.server.counters_snapshot()
        assert snapshot["Messages Refused for Relay"] == len(TRICKS)
    finally:
        await running.server.stop()
