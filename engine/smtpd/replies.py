"""Every SMTP reply the inbound side sends, in one table, with RFC 3463 enhanced status codes.

RFC 2034: the enhanced code prefixes every reply text except the 220 greeting and the
replies to HELO/EHLO. ``enhance`` adds one to replies produced by aiosmtpd's own code paths.
"""

from __future__ import annotations

import re

R: dict[str, str] = {
    "ok": "250 2.0.0 OK",
    "reset": "250 2.0.0 Resetting",
    "noop": "250 2.0.0 OK",
    "sender_ok": "250 2.1.0 <{addr}>....Sender OK",
    "rcpt_ok": "250 2.1.5 <{addr}>",
    "queued": "250 2.6.0 <{addr}> Queued mail for delivery",
    "start_data": "354 Start mail input; end with <CRLF>.<CRLF>",
    "bye": "221 2.0.0 {fqdn} Service closing transmission channel",
    "vrfy": "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery",
    "vrfy_disabled": "502 5.5.1 VRFY command is disabled",
    "help": "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY",
    "help_no_vrfy": "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP",
    "too_many_connections": "421 4.3.2 Too many connections, try again later",
    "too_many_from_peer": "421 4.3.2 Too many connections from your address, try again later",
    "paused": "421 4.3.2 Service paused, try again later",
    "shutting_down": "421 4.3.2 Service shutting down, closing transmission channel",
    "timeout": "421 4.4.2 {fqdn} Timeout, closing transmission channel",
    "terminated": "421 4.3.2 Session terminated by the administrator",
    "too_many_errors": "421 4.7.0 Too many errors, closing transmission channel",
    "session_size": "552 5.3.4 Session size limit exceeded",
    "storage": "452 4.3.1 Insufficient system storage",
    "local_error": "451 4.3.0 Requested action aborted: local error in processing",
    "too_many_rcpts": "452 4.5.3 Too many recipients",
    "message_size": "552 5.3.4 Message size exceeds fixed maximum message size",
    "need_mail": "503 5.5.1 Need MAIL command",
    "need_rcpt": "503 5.5.1 Need RCPT command",
    "nested_mail": "503 5.5.1 Sender already specified",
    "need_helo": "503 5.5.1 Send HELO/EHLO first",
    "bad_sequence": "503 5.5.1 Bad sequence of commands",
    "syntax_mail": "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]",
    "syntax_rcpt": "501 5.5.4 Syntax: RCPT TO:<address> [parameters]",
    "syntax_helo": "501 5.5.4 Syntax: {cmd} hostname",
    "syntax_data": "501 5.5.4 Syntax: DATA (no arguments)",
    "syntax_noarg": "501 5.5.4 Syntax: {cmd} (no arguments)",
    "bad_address": "501 5.1.3 Invalid address: {addr}",
    "bad_sender_address": "501 5.1.7 Invalid sender address: {addr}",
    "bad_param": "555 5.5.4 Parameter not recognized or not implemented: {param}",
    "bad_param_value": "501 5.5.4 Invalid value for {param}",
    "smtputf8_needed": "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter",
    "relay_denied": "550 5.7.1 Unable to relay for {addr}",
    "relay_deferred": "451 4.7.1 Cannot check your address for relaying to {addr} now, try again later",
    "bare_newline": "550 5.6.0 Message contains a bare CR or LF; lines must end with CRLF",
    "hop_count": "554 5.4.6 Hop count exceeded - possible mail loop",
    "no_valid_rcpts": "554 5.5.1 No valid recipients",
    "line_too_long": "500 5.5.2 Line too long",
    "unrecognized": "500 5.5.1 Command unrecognized: {cmd}",
    "syntax_error": "500 5.5.2 Syntax error",
    "not_implemented": "502 5.5.1 Command not implemented",
    # Connection control (at connect; the connection is closed after it)
    "access_denied": "554 5.7.1 {fqdn} Access denied for [{peer}]",
    "access_deferred": "421 4.7.1 {fqdn} Cannot check your address now, try again later",
    # TLS (RFC 3207)
    "tls_not_available": "454 4.7.0 TLS not available",
    "tls_active": "503 5.5.1 TLS already active",
    "tls_failed": "454 4.7.0 TLS handshake failed",
    "tls_required": "530 5.7.0 Must issue a STARTTLS command first",
    # Authentication (RFC 4954)
    "auth_ok": "235 2.7.0 Authentication successful",
    "auth_failed": "535 5.7.8 Authentication credentials invalid",
    "auth_locked": "454 4.7.0 Too many failed logins from your address, try again later",
    "auth_required": "530 5.7.0 Authentication required",
    "auth_needs_tls": "538 5.7.11 Encryption required for requested authentication mechanism",
    "auth_already": "503 5.5.1 Already authenticated",
    "auth_in_transaction": "503 5.5.1 AUTH not permitted during a mail transaction",
    "auth_mechanism": "504 5.5.4 Unrecognized authentication type",
    "auth_aborted": "501 5.7.0 Authentication aborted",
    "auth_bad_base64": "501 5.5.2 Cannot decode base64",
    "auth_bad_plain": "501 5.5.2 Malformed credentials",
    "auth_line_too_long": "500 5.5.6 Authentication exchange line is too long",
    "syntax_auth": "501 5.5.4 Syntax: AUTH mechanism [initial-response]",
}


def reply(key: str, **values: str) -> str:
    return R[key].format(**values)


_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
_UNRECOGNIZED = re.compile(r'^500 Error: command "(.*)" not recognized')

# Replies aiosmtpd's own paths produce, mapped to ours (prefix match on the original text).
_AIOSMTPD: tuple[tuple[str, str], ...] = (
    ("500 Command line too long", R["line_too_long"]),
    ("500 Line too long", R["line_too_long"]),
    ("500 Error: bad syntax", R["syntax_error"]),
    ("500 Error: strict ASCII mode", "500 5.6.7 Non-ASCII command requires SMTPUTF8"),
    ("503 Error: send HELO first", R["need_helo"]),
    ("503 Error: send EHLO first", "503 5.5.1 Send EHLO first"),
    ("502 5.5.1 Too many unrecognized commands", R["too_many_errors"]),
    ("554 Command refused due to lack of security", "554 5.7.0 Command refused due to lack of security"),
    ("530 Must issue a STARTTLS command first", R["tls_required"]),
)

_DEFAULT_DETAIL = {"2": "2.0.0", "3": "", "4": "4.0.0", "5": "5.0.0"}


def enhance(text: str) -> str:
    """Give a reply line an enhanced status code if it has none (RFC 2034); never to the 220 greeting."""
    for prefix, ours in _AIOSMTPD:
        if text.startswith(prefix):
            return ours
    if text.startswith("220") or _ENHANCED.match(text) or len(text) < 3 or not text[:3].isdigit():
        return text
    match = _UNRECOGNIZED.match(text)
    if match:
        return reply("unrecognized", cmd=match.group(1)[:64])
    detail = _DEFAULT_DETAIL.get(text[0], "")
    if not detail:
        return text
    separator = text[3:4] or " "
    rest = text[4:]
    if text.startswith("501 Syntax:"):
        detail = "5.5.4"
    return f"{text[:3]}{separator}{detail} {rest}".rstrip()


def is_syntax_or_sequence_error(text: str) -> bool:
    """The replies that count toward the bad-commands limit (RFC 5321 500-504)."""
    return text[:3] in ("500", "501", "502", "503", "504")
