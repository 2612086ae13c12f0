"""Relay restrictions: every relay trick is refused for clients that may not relay, in every address form, while the
same local recipients in plain form are accepted and clients that may relay (listed, authenticated) pass."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from dns_support import DnsRecords, running_dnsmasq
from engine_support import start_server
from security_support import Talk

from engine.conf.access import NameResult
from engine.conf.addresses import parse_path
from engine.conf.config import Config
from engine.smtpd.policy import RELAY_NAME_NEEDED, recipient_refusal, relay_trick

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


def test_all_except_listed_lets_everyone_but_the_list_relay(config_factory) -> None:
    config: Config = config_factory(relay_mode="all_except_listed", relay_allowed=("192.0.2.0/24",))
    remote = parse_path("TO:<user@elsewhere.test>", "TO:", "example.test", allow_null=False)
    assert recipient_refusal(remote, "192.0.2.9", False, config) == "relay"
    assert recipient_refusal(remote, "198.51.100.1", False, config) is None
    assert recipient_refusal(remote, "192.0.2.9", True, config) is None  # authenticated, regardless of the list
    local = parse_path("TO:<user@example.test>", "TO:", "example.test", allow_null=False)
    assert recipient_refusal(local, "192.0.2.9", False, config) is None


def test_a_name_in_the_relay_list_needs_the_clients_name(config_factory) -> None:
    config: Config = config_factory(relay_allowed=("lab.test", "192.0.2.1"))
    remote = parse_path("TO:<user@elsewhere.test>", "TO:", "example.test", allow_null=False)
    assert recipient_refusal(remote, "192.0.2.1", False, config) is None  # the address decides: no lookup
    assert recipient_refusal(remote, "192.0.2.2", False, config) == RELAY_NAME_NEEDED
    assert recipient_refusal(remote, "192.0.2.2", False, config, NameResult(name="mx.lab.test")) is None
    assert recipient_refusal(remote, "192.0.2.2", False, config, NameResult(unverified="mx.lab.test")) == "relay"
    assert recipient_refusal(remote, "192.0.2.2", False, config, NameResult(temporary=True)) == RELAY_NAME_NEEDED


NAMES = DnsRecords(
    hosts=[("good.lab.test", "127.0.0.2")],  # A and PTR: forward-confirmed
    extra=["--ptr-record=3.0.0.127.in-addr.arpa,fake.lab.test"],  # a PTR whose name has no matching A
    timeout=["4.0.0.127.in-addr.arpa"],  # the reverse zone of 127.0.0.4 does not answer
)


def rcpt_answers(port: int, source: str) -> tuple[str, str]:
    """(answer to a remote recipient, answer to a local one) for a client on ``source``."""
    talk, _ = Talk.open(port, source)
    talk.cmd("EHLO client.test")
    talk.cmd("MAIL FROM:<a@client.test>")
    answers = talk.cmd("RCPT TO:<user@elsewhere.test>"), talk.cmd("RCPT TO:<user@example.test>")
    talk.close()
    return answers


@pytest.mark.parametrize(("mode", "allowed"), [("only_listed", {"127.0.0.2"}),
                                               ("all_except_listed", {"127.0.0.3", "127.0.0.5"})])
async def test_relay_list_by_domain_name_is_forward_confirmed(tmp_path: Path, config_factory, mode: str,
                                                              allowed: set[str]) -> None:
    with running_dnsmasq(tmp_path / "dns", NAMES) as dns:
        running = await start_server(config_factory(dns_servers=(dns.server,), relay_mode=mode,
                                                    relay_allowed=("*.lab.test",)))
        try:
            answers = {source: await asyncio.to_thread(rcpt_answers, running.port, source)
                       for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")}
        finally:
            await running.server.stop()
    for source, (remote, local) in answers.items():
        assert local.startswith("250 2.1.5"), (source, local)  # local mail: no relaying, no lookup needed
        if source == "127.0.0.4":  # the reverse lookup times out: neither a relay nor a final refusal
            assert remote == "451 4.7.1 Cannot check your address for relaying to user@elsewhere.test now, " \
                             "try again later"
        elif source in allowed:
            assert remote.startswith("250 2.1.5"), (source, remote)
        else:
            assert remote.startswith("550 5.7.1 Unable to relay"), (source, remote)
