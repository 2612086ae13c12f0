"""RFC 3461 DSN parameters of MAIL (RET, ENVID) and RCPT (NOTIFY, ORCPT): parsing and validation, pure."""

from __future__ import annotations

import re

NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
# RFC 6533 utf-8-addr-xtext / -unitext: printable ASCII but "+", "=" and "\\", UTF-8 beyond the C1 controls,
# and \x{HEX} escapes; never a control character.
_UTF8_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e]|[^\x00-\x9f]|\\x\{[0-9A-F]{1,6}\})+\Z")


class DsnParamError(ValueError):
    """A DSN parameter that is not valid; ``str`` names it."""


def parse_ret(value: str | None) -> str:
    if value is None or value.upper() not in ("FULL", "HDRS"):
        raise DsnParamError("RET must be FULL or HDRS")
    return value.upper()


def parse_envid(value: str | None) -> str:
    if not value or len(value) > MAX_ENVID or not _XTEXT.match(value):
        raise DsnParamError("ENVID must be xtext of at most 100 characters")
    return value


def parse_notify(value: str | None) -> str:
    """NEVER, or a comma list of SUCCESS, FAILURE, DELAY; returned upper-cased in a canonical order."""
    if not value:
        raise DsnParamError("NOTIFY needs a value")
    words = [w.upper() for w in value.split(",")]
    if words == ["NEVER"]:
        return "NEVER"
    if len(set(words)) != len(words) or not set(words) <= NOTIFY_WORDS:
        raise DsnParamError("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
    return ",".join(w for w in ("SUCCESS", "FAILURE", "DELAY") if w in words)


def parse_orcpt(value: str | None) -> str:
    """``addr-type;xtext`` (e.g. ``rfc822;a+2Bb@example``), kept as received."""
    if not value or len(value) > MAX_ORCPT:
        raise DsnParamError("ORCPT must be addr-type;address")
    addr_type, semicolon, address = value.partition(";")
    if not semicolon or not address or not _ADDR_TYPE.match(addr_type):
        raise DsnParamError("ORCPT must be addr-type;address")
    if addr_type.lower() == "utf-8":
        if not _UTF8_XTEXT.match(address):
            raise DsnParamError("ORCPT utf-8 address must be utf-8-addr-xtext (RFC 6533)")
    elif not _XTEXT.match(address):
        raise DsnParamError("ORCPT address must be xtext")
    return value


def wants_success(notify: str) -> bool:
    return "SUCCESS" in notify.split(",")
