"""SMTP address parsing (RFC 5321 paths and parameters), default-domain stamping and domain matching.

Pure functions only. A path is ``<local@domain>`` (angle brackets optional, as many clients omit
them), an optional source route (``<@a,@b:user@c>``) is parsed and dropped as RFC 5321 §3.3 says,
and addresses without a domain get the default domain (IIS behaviour).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import idna

from engine.conf.config import DomainConfig

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\x80-\U0010ffff]+"
_DOT_STRING = re.compile(rf"{_ATOM}(?:\.{_ATOM})*\Z")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x20-\x7e])*"\Z')
_LABEL = r"[A-Za-z0-9\x80-\U0010ffff](?:[A-Za-z0-9\-\x80-\U0010ffff]{0,61}[A-Za-z0-9\x80-\U0010ffff])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z")
_LITERAL = re.compile(r"\[(?:IPv6:[0-9A-Fa-f:.]+|\d{1,3}(?:\.\d{1,3}){3})\]\Z")
_PARAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*\Z")

MAX_LOCAL = 64 * 4  # RFC 5321 says 64 octets; lenient for UTF-8 and old clients
MAX_DOMAIN = 255


class AddressError(ValueError):
    """A path or parameter that cannot be parsed; ``str`` is a short reason."""


class ParamSyntaxError(AddressError):
    """An ESMTP parameter that cannot be parsed (the address itself was fine): 501 5.5.4, not 5.1.x."""


@dataclass(frozen=True)
class Path:
    """A parsed MAIL FROM / RCPT TO argument."""

    address: str  # "" for the null sender <>
    params: dict[str, str | None]
    had_domain: bool = True
    source_route: str = ""  # "@a,@b" of "<@a,@b:user@c>" (dropped from the address, kept for relay checks)

    @property
    def domain(self) -> str:
        return domain_of(self.address)


def domain_of(address: str) -> str:
    """The lower-cased domain of an address, without one trailing dot."""
    _, _, domain = address.rpartition("@")
    return domain.lower().removesuffix(".")


def _split_angle(text: str) -> tuple[str, str]:
    """Split ``<path> rest`` honouring quoted strings; returns (inside, rest)."""
    in_quote = False
    escaped = False
    for index, char in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif char == "\\" and in_quote:
            escaped = True
        elif char == '"':
            in_quote = not in_quote
        elif char == ">" and not in_quote:
            return text[1:index], text[index + 1 :]
    raise AddressError("missing '>'")


def parse_mailbox(text: str, default_domain: str) -> tuple[str, bool]:
    """Validate ``local@domain`` (or bare ``local``); returns (address, had_domain)."""
    if not text:
        raise AddressError("empty address")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise AddressError("control character in address")
    local, at, domain = text.rpartition("@")
    if not at:
        local, domain = text, ""
    if not local:
        raise AddressError("empty local part")
    if len(local) > MAX_LOCAL:
        raise AddressError("local part too long")
    if not (_DOT_STRING.match(local) or _QUOTED.match(local)):
        raise AddressError("invalid local part")
    if not at:
        if not default_domain:
            raise AddressError("address has no domain")
        return f"{local}@{default_domain}", False
    if len(domain) > MAX_DOMAIN or not (_DOMAIN.match(domain) or _LITERAL.match(domain)):
        raise AddressError("invalid domain")
    return f"{local}@{domain}", True


def parse_params(text: str) -> dict[str, str | None]:
    """ESMTP parameters ``KEY[=VALUE] ...``; keys upper-cased, duplicates refused."""
    params: dict[str, str | None] = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if not _PARAM.match(key) or (eq and not value):
            raise ParamSyntaxError(f"bad parameter {item[:40]!r}")
        key = key.upper()
        if key in params:
            raise ParamSyntaxError(f"duplicate parameter {key}")
        params[key] = value if eq else None
    return params


def parse_path(arg: str, keyword: str, default_domain: str, *, allow_null: bool) -> Path:
    """Parse the argument of ``MAIL``/``RCPT``: ``FROM:<addr> params`` with ``keyword`` 'FROM:'/'TO:'."""
    if not arg.isascii() and not is_utf8(arg):
        raise AddressError("not valid UTF-8")
    if arg[: len(keyword)].upper() != keyword:
        raise AddressError(f"expected {keyword}")
    rest = arg[len(keyword) :].lstrip()
    if rest.startswith("<"):
        inside, tail = _split_angle(rest)
        if tail and not tail.startswith(" "):
            raise AddressError("garbage after '>'")
    else:
        inside, _, tail = rest.partition(" ")
        tail = " " + tail
    route = ""
    if inside.startswith("@"):  # source route: @a,@b:user@c -> user@c
        route, colon, inside = inside.partition(":")
        if not colon or not all(hop.startswith("@") and len(hop) > 1 for hop in route.split(",")):
            raise AddressError("bad source route")
        if not inside:
            raise AddressError("source route without a mailbox")
    params = parse_params(tail)
    if not inside:
        if allow_null and rest.startswith("<"):
            return Path("", params)
        raise AddressError("empty address")
    address, had_domain = parse_mailbox(inside, default_domain)
    return Path(address, params, had_domain, route)


def is_ascii(text: str) -> bool:
    return text.isascii()


def is_utf8(text: str) -> bool:
    """False for text decoded with surrogateescape from bytes that were not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def domain_matches(pattern: str, domain: str) -> bool:
    """``*.example.com`` matches any sub-domain of example.com; otherwise exact (case-insensitive)."""
    pattern = pattern.lower().rstrip(".")
    domain = domain.lower().rstrip(".")
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


@dataclass(frozen=True)
class Route:
    kind: str  # "local" | "remote"
    domain: DomainConfig | None  # the configured domain that matched, if any


@functools.lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """The domain as A-labels (UTS-46: ``tëst.example`` → ``xn--tst-jma.example``), the form the configuration
    holds; unchanged when it is ASCII already or not a valid IDN."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return domain


def classify(domain: str, domains: Iterable[DomainConfig]) -> Route:
    """Local (default or alias) or remote; a matching remote DomainConfig carries its settings."""
    domain = ascii_domain(domain)  # an SMTPUTF8 client names IDN domains with U-labels
    remote_match: DomainConfig | None = None
    for candidate in domains:
        if candidate.type in ("default", "alias"):
            if domain_matches(candidate.name, domain) and not candidate.name.startswith("*."):
                return Route("local", candidate)
        elif remote_match is None and domain_matches(candidate.name, domain):
            remote_match = candidate
    return Route("remote", remote_match)
