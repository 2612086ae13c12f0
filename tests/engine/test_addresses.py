"""Address parsing, stamping and domain matching (pure functions)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.conf.addresses import AddressError, classify, domain_matches, parse_path
from engine.conf.config import DomainConfig

DOMAINS = (DomainConfig("example.test", "default"), DomainConfig("alias.test", "alias"),
           DomainConfig("*.partner.test", "remote", relay_allowed=True))


@pytest.mark.parametrize(("arg", "address", "params"), [
    ("FROM:<a@example.test>", "a@example.test", {}),
    ("from:<a@example.test> SIZE=100 BODY=8BITMIME", "a@example.test", {"SIZE": "100", "BODY": "8BITMIME"}),
    ("FROM: <a@example.test>", "a@example.test", {}),
    ("FROM:a@example.test", "a@example.test", {}),
    ("FROM:<>", "", {}),
    ("FROM:<spamtest>", "spamtest@default.test", {}),
    ('FROM:<"john smith"@example.test>', '"john smith"@example.test', {}),
    ('FROM:<"a>b"@example.test> SMTPUTF8', '"a>b"@example.test', {"SMTPUTF8": None}),
    ("FROM:<@relay1,@relay2:user@example.test>", "user@example.test", {}),
    ("FROM:<user@[127.0.0.1]>", "user@[127.0.0.1]", {}),
    ("FROM:<jörg@bücher.test>", "jörg@bücher.test", {}),
])
def test_valid_paths(arg: str, address: str, params: dict[str, str | None]) -> None:
    path = parse_path(arg, "FROM:", "default.test", allow_null=True)
    assert path.address == address
    assert path.params == params


@pytest.mark.parametrize("arg", [
    "FROM:<a@example.test", "FROM:<a@@example.test>", "FROM:<a@-bad.test>", "FROM:<a b@example.test>",
    "FROM:<a@example.test>junk", "FROM:<a@example.test> SIZE=", "FROM:<a@example.test> SIZE=1 SIZE=2",
    "TO:<a@example.test>", "FROM:<a\x01@example.test>", "FROM:<@relay:>", "FROM:<.a@example.test>",
])
def test_invalid_paths(arg: str) -> None:
    with pytest.raises(AddressError):
        parse_path(arg, "FROM:", "default.test", allow_null=True)


def test_null_recipient_refused() -> None:
    with pytest.raises(AddressError):
        parse_path("TO:<>", "TO:", "default.test", allow_null=False)


def test_classification() -> None:
    assert classify("example.test", DOMAINS).kind == "local"
    assert classify("ALIAS.test.", DOMAINS).kind == "local"
    remote = classify("mx.partner.test", DOMAINS)
    assert remote.kind == "remote" and remote.domain is not None and remote.domain.relay_allowed
    assert classify("partner.test", DOMAINS).domain is None
    assert classify("elsewhere.test", DOMAINS) .domain is None
    assert domain_matches("*.a.test", "x.y.a.test") and not domain_matches("*.a.test", "xa.test")


local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", fullmatch=True).filter(lambda s: ".." not in s)
domain = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z][a-z0-9]{0,8}){1,3}", fullmatch=True)


@given(local=local, domain=domain, size=st.integers(0, 10**9))
def test_round_trip_of_generated_paths(local: str, domain: str, size: int) -> None:
    path = parse_path(f"TO:<{local}@{domain}> SIZE={size}", "TO:", "d.test", allow_null=False)
    assert path.address == f"{local}@{domain}"
    assert path.params == {"SIZE": str(size)}
    assert path.domain == domain


@given(st.text(max_size=80))
def test_arbitrary_text_only_ever_raises_address_error(text: str) -> None:
    with contextlib.suppress(AddressError):
        parse_path("TO:" + text, "TO:", "d.test", allow_null=False)
