"""Every SMTP reply the inbound side sends, in one table, with RFC 3463 enhanced status codes.

RFC 2034: the enhanced code prefixes every reply text except the 220 greeting and the
replies to HELO/EHLO. Nothing else writes reply text: ``is_table_reply`` tells a line of the table's from any other.
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
    "help": "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY ETRN STARTTLS AUTH",
    "help_no_vrfy": "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP ETRN STARTTLS AUTH",
    "greeting": "220 {fqdn} smtpsvc ESMTP MAIL Service, Version: {version} ready at {stamp}",
    "helo": "250 {fqdn} Hello [{peer}]",
    "ehlo_first": "250-{fqdn} Hello [{peer}]",
    "ehlo_keyword": "250-{keyword}",
    "ehlo_last": "250 {keyword}",
    "syntax_vrfy": "501 5.5.4 Syntax: VRFY <address>",
    "local_error_closing": "421 4.3.0 Local error in processing, closing transmission channel",
    # ETRN (RFC 1985)
    "syntax_etrn": "501 5.5.4 Syntax: ETRN <domain> | ETRN @<domain>",
    "etrn_denied": "459 4.7.1 Node {domain} not allowed: it is not queued for remote triggered delivery",
    "etrn_none": "251 2.0.0 OK, no messages waiting for node {domain}",
    "etrn_started": "253 2.0.0 OK, {count} pending messages for node {domain} started",
    # CHUNKING and BINARYMIME (RFC 3030)
    "chunk_ok": "250 2.0.0 {size} octets received",
    "syntax_bdat": "421 4.5.4 Syntax: BDAT size [LAST]; its chunk cannot be found, closing transmission channel",
    "data_after_bdat": "503 5.5.1 DATA not permitted in a BDAT transaction",
    "binarymime_needs_bdat": "503 5.6.1 BODY=BINARYMIME requires BDAT",
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
    "bad_param_syntax": "501 5.5.4 Syntax error in parameters: {addr}",
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
    "tls_ready": "220 2.0.0 Ready to start TLS",
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
    "auth_challenge": "334 {prompt}",
}


def reply(key: str, **values: object) -> str:
    return R[key].format(**values)


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile("(?s)" + ".*".join(re.escape(part) for part in parts))


_PATTERNS = tuple(_pattern(template) for template in R.values())


def is_table_reply(line: str) -> bool:
    """True when ``line`` is one line the table can produce (for tests and the machine's own checks)."""
    return any(pattern.fullmatch(line) for pattern in _PATTERNS)


def is_syntax_or_sequence_error(text: str) -> bool:
    """The replies that count toward the bad-commands limit (RFC 5321 500-504)."""
    return text[:3] in ("500", "501", "502", "503", "504")
