"""The Received header smtpsvc adds to every message it accepts (RFC 5321 §4.4, RFC 3848 protocol names)."""

from __future__ import annotations

import email.utils
import time

_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"(", ")"}


class _SecondClock:
    """The RFC 5322 date of now, formatted once per second: ``formatdate`` costs tens of microseconds, and every
    connection's greeting and every message's Received header ask for it."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._text = email.utils.formatdate(second, localtime=True)
            self._second = second
        return self._text


rfc5322_now = _SecondClock().now


def protocol_name(extended: bool, tls: bool, authenticated: bool) -> str:
    if not extended:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def _clean(text: str) -> str:
    """Keep client-supplied words from breaking the header (no CR/LF, no parentheses games)."""
    if _SAFE.issuperset(text):  # the usual case: printable ASCII
        return text[:255]
    return "".join(c if c.isprintable() and c not in "()" else "?" for c in text)[:255]


def received_header(
    *,
    helo: str,
    peer_ip: str,
    peer_name: str,
    fqdn: str,
    protocol: str,
    queue_id: str,
    recipients: list[str],
    tls_info: str = "",
    auth_user: str = "",
    when: float | None = None,
) -> bytes:
    peer = f"{_clean(peer_name)} [{peer_ip}]" if peer_name else f"[{peer_ip}]"
    lines = [f"Received: from {_clean(helo) or 'unknown'} ({peer})"]
    if tls_info:
        lines.append(f"\t({_clean(tls_info)})")
    if auth_user:
        lines.append(f"\t(authenticated as {_clean(auth_user)})")
    by = f"\tby {fqdn} with {protocol} id {queue_id}"
    if len(recipients) == 1:
        by += f"\r\n\tfor <{_clean(recipients[0])}>"
    lines.append(by + ";")
    lines.append("\t" + (rfc5322_now() if when is None else email.utils.formatdate(when, localtime=True)))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", errors="replace")
