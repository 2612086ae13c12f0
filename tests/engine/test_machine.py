"""The inbound session machine without a socket: the RFC 5321 state table, every command and ESMTP parameter,
BDAT/BINARYMIME (RFC 3030), AUTH, STARTTLS, pipelining groups, and a hypothesis run over any command sequence."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest
from engine_support import make_config
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.smtpd.machine import (
    COMMANDS,
    BeginChunk,
    BeginData,
    BeginTls,
    BodyFacts,
    Challenge,
    CheckPassword,
    Close,
    Commit,
    Count,
    DropSpool,
    Etrn,
    LookUpName,
    Out,
    Publish,
    Reply,
    SmtpMachine,
)
from engine.smtpd.replies import R, is_table_reply
from engine.smtpd.security import AuthRefusedLocked, AuthSucceeded

CONFIG = make_config(Path("/nonexistent"))


def machine(*, tls_available: bool = False, tls_active: bool = False, locked: float = 0.0,
            **server: object) -> SmtpMachine:
    config = replace(CONFIG, server=replace(CONFIG.server, **server)) if server else CONFIG  # type: ignore[arg-type]
    return SmtpMachine(config, "192.0.2.7", tls_available=tls_available, tls_active=tls_active,
                       auth_locked=lambda: locked, stamp="Mon, 7 Dec 2026 12:00:00 +0000")


def replies(outs: list[Out]) -> list[str]:
    return [out.text for out in outs if isinstance(out, Reply | Challenge)]


def last(m: SmtpMachine, line: str) -> str:
    """The last line of the reply to one command."""
    [text] = replies(m.command(line.encode()))
    return text.split("\r\n")[-1]


def code(m: SmtpMachine, line: str) -> str:
    return last(m, line)[:3]


def in_state(state: str, **kw: object) -> SmtpMachine:
    m = machine(**kw)
    steps = {"fresh": [], "helo": ["EHLO c"], "mail": ["EHLO c", "MAIL FROM:<a@example.test>"],
             "rcpt": ["EHLO c", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>"]}[state]
    for line in steps:
        assert code(m, line) == "250", line
    return m


# -- RFC 5321 §4.3.2 and §3.3: which command is accepted in which state -------------------------------------

STATE_TABLE = {
    #  command                        fresh  helo   mail   rcpt
    "HELO c": ("250", "250", "250", "250"),
    "EHLO c": ("250", "250", "250", "250"),
    "MAIL FROM:<x@example.test>": ("503", "250", "503", "503"),
    "RCPT TO:<y@example.test>": ("503", "503", "250", "250"),
    "DATA": ("503", "503", "503", "354"),
    "RSET": ("250", "250", "250", "250"),
    "NOOP": ("250", "250", "250", "250"),
    "VRFY someone": ("252", "252", "252", "252"),
    "EXPN list": ("502", "502", "502", "502"),
    "HELP": ("214", "214", "214", "214"),
    "QUIT": ("221", "221", "221", "221"),
    "ETRN remote.test": ("503", "459", "459", "459"),
    "STARTTLS": ("454", "454", "454", "454"),
    "AUTH PLAIN": ("503", "502", "502", "502"),
    "TURN": ("500", "500", "500", "500"),
}


@pytest.mark.parametrize("state_index, state", list(enumerate(["fresh", "helo", "mail", "rcpt"])))
@pytest.mark.parametrize("line", list(STATE_TABLE))
def test_state_table(line: str, state_index: int, state: str) -> None:
    m = in_state(state)
    outs = m.command(line.encode())
    if isinstance(outs[0], Etrn):  # the machine asks; the protocol answers with what the queue said
        outs = m.etrn_done(outs[0].domain, None)
    if isinstance(outs[0], BeginData):
        assert outs[0].go_ahead.startswith("354 ")
        got = "354"
    else:
        got = replies(outs)[-1][:3]
    assert got == STATE_TABLE[line][state_index]


@pytest.mark.parametrize("state", ["helo", "mail", "rcpt"])
@pytest.mark.parametrize("line", ["RSET", "HELO again", "EHLO again"])
def test_rset_and_helo_end_the_transaction(state: str, line: str) -> None:
    m = in_state(state)
    m.command(line.encode())
    assert m.transaction is None
    assert code(m, "RCPT TO:<b@example.test>") == "503"
    assert code(m, "MAIL FROM:<a@example.test>") == "250"


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_every_command_answers_from_the_table_in_every_state(verb: str) -> None:
    for state in ("fresh", "helo", "mail", "rcpt"):
        for arg in ("", " x", " FROM:<a@example.test>", " TO:<b@example.test>", " 10"):
            m = in_state(state)
            for out in m.command(f"{verb}{arg}".encode()):
                if isinstance(out, Reply | Challenge):
                    for line in out.text.split("\r\n"):
                        assert is_table_reply(line), line


# -- greeting, EHLO, HELP, the bad-command limit -----------------------------------------------------------

def test_greeting_and_ehlo_keywords() -> None:
    m = machine()
    [greeting] = replies(m.greeting())
    assert greeting.startswith("220 mx.example.test smtpsvc ESMTP")
    lines = replies(m.command(b"EHLO client.test"))[0].split("\r\n")
    assert lines[0] == "250-mx.example.test Hello [192.0.2.7]"
    assert [line[4:] for line in lines[1:]] == ["SIZE 2097152", "PIPELINING", "8BITMIME", "BINARYMIME", "CHUNKING",
                                                "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "ETRN", "HELP"]
    assert all(line.startswith("250-") for line in lines[:-1]) and lines[-1] == "250 HELP"


@pytest.mark.parametrize("tls_available, tls_active, auth, plaintext, starttls, auth_line", [
    (False, False, False, False, False, False),
    (True, False, False, False, True, False),
    (True, True, False, False, False, False),
    (True, False, True, False, True, False),  # AUTH only after TLS
    (True, True, True, False, False, True),
    (False, False, True, True, False, True),  # clear-text AUTH allowed
])
def test_ehlo_offers_starttls_and_auth_as_configured(tls_available: bool, tls_active: bool, auth: bool,
                                                     plaintext: bool, starttls: bool, auth_line: bool) -> None:
    m = machine(tls_available=tls_available, tls_active=tls_active, auth_basic=auth, auth_plaintext_allowed=plaintext)
    lines = replies(m.command(b"EHLO c"))[0]
    assert ("STARTTLS" in lines) == starttls
    assert ("AUTH PLAIN LOGIN" in lines) == auth_line


def test_size_keyword_follows_the_limit() -> None:
    assert "250-SIZE\r\n" in replies(machine(max_message_size_kb=0).command(b"EHLO c"))[0]
    assert "250-SIZE 10240\r\n" in replies(machine(max_message_size_kb=10).command(b"EHLO c"))[0]


def test_help_names_every_command() -> None:
    text = last(machine(), "HELP")
    assert set(text.split(": ", 1)[1].split()) == set(COMMANDS) - {"EXPN"}


@pytest.mark.parametrize("line, reply", [
    (b"", R["syntax_error"]),
    (b"BOGUS", "500 5.5.1 Command unrecognized: BOGUS"),
    (b"\xff\xfe", "500 5.5.1 Command unrecognized: ?"),
    (b"HELO", "501 5.5.4 Syntax: HELO hostname"),
    (b"EHLO", "501 5.5.4 Syntax: EHLO hostname"),
    (b"RSET now", "501 5.5.4 Syntax: RSET (no arguments)"),
    (b"QUIT now", "501 5.5.4 Syntax: QUIT (no arguments)"),
    (b"VRFY", R["syntax_vrfy"]),
    (b"noop", R["noop"]),
    (b"NoOp with words", R["noop"]),
])
def test_command_syntax(line: bytes, reply: str) -> None:
    m = machine()
    assert replies(m.command(line)) == [reply]


def test_bad_commands_close_at_the_limit() -> None:
    m = machine(max_bad_commands=3)
    assert code(m, "BOGUS") == "500"
    assert code(m, "RCPT TO:<b@example.test>") == "503"
    outs = m.command(b"DATA")
    assert replies(outs) == [R["too_many_errors"]] and isinstance(outs[-1], Close)
    assert m.mode == "closed"


def test_good_commands_do_not_count() -> None:
    m = machine(max_bad_commands=2)
    for _ in range(20):
        assert code(m, "NOOP") == "250"
    assert code(m, "BOGUS") == "500"
    assert m.bad_commands == 1


def test_quit_and_timeout_close() -> None:
    m = in_state("rcpt")
    outs = m.command(b"QUIT")
    assert replies(outs) == ["221 2.0.0 mx.example.test Service closing transmission channel"]
    assert isinstance(outs[-1], Close)
    outs = machine().timed_out()
    assert replies(outs) == ["421 4.4.2 mx.example.test Timeout, closing transmission channel"]


def test_line_too_long() -> None:
    m = machine()
    assert replies(m.line_too_long()) == [R["line_too_long"]]
    assert m.line_limit == CONFIG.server.max_command_line


# -- MAIL FROM and its parameters --------------------------------------------------------------------------

MAIL_CASES = [
    ("MAIL FROM:<a@example.test>", "250 2.1.0 <a@example.test>....Sender OK"),
    ("MAIL FROM:<>", "250 2.1.0 <>....Sender OK"),
    ("MAIL FROM:<spamtest>", "250 2.1.0 <spamtest@example.test>....Sender OK"),
    ("mail from:<a@example.test>", "250 2.1.0 <a@example.test>....Sender OK"),
    ("MAIL", R["syntax_mail"]),
    ("MAIL TO:<a@example.test>", R["syntax_mail"]),
    ("MAIL FROM:<bad", "501 5.1.7"),
    ("MAIL FROM:<a@example.test> SIZE=100", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> SIZE=2097152", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> SIZE=2097153", R["message_size"]),
    ("MAIL FROM:<a@example.test> SIZE=abc", "501 5.5.4 Invalid value for SIZE"),
    ("MAIL FROM:<a@example.test> SIZE", "501 5.5.4 Invalid value for SIZE"),
    ("MAIL FROM:<a@example.test> SIZE=999999999999999999999", "501 5.5.4 Invalid value for SIZE"),
    ("MAIL FROM:<a@example.test> BODY=7BIT", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> BODY=8BITMIME", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> BODY=binarymime", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> BODY=9BIT", "501 5.5.4 Invalid value for BODY"),
    ("MAIL FROM:<a@example.test> BODY", "501 5.5.4 Invalid value for BODY"),
    ("MAIL FROM:<a@example.test> RET=HDRS", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> RET=FULL", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> RET=SOME", "501 5.5.4 Invalid value for RET"),
    ("MAIL FROM:<a@example.test> ENVID=abc+2Bdef", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> ENVID", "501 5.5.4 Invalid value for ENVID"),
    ("MAIL FROM:<a@example.test> AUTH=<>", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> SMTPUTF8", "250 2.1.0"),
    ("MAIL FROM:<a@example.test> SMTPUTF8=yes", "501 5.5.4 Invalid value for SMTPUTF8"),
    ("MAIL FROM:<a@example.test> FOO=bar", "555 5.5.4 Parameter not recognized or not implemented: FOO"),
    ("MAIL FROM:<jörg@example.test>", R["smtputf8_needed"]),
    ("MAIL FROM:<jörg@example.test> SMTPUTF8", "250 2.1.0 <jörg@example.test>"),
]


@pytest.mark.parametrize("line, expected", MAIL_CASES)
def test_mail_parameters(line: str, expected: str) -> None:
    assert last(in_state("helo"), line).startswith(expected)


def test_mail_parameters_are_recorded() -> None:
    m = in_state("helo")
    last(m, "MAIL FROM:<a@example.test> SIZE=10 BODY=BINARYMIME RET=HDRS ENVID=e1 SMTPUTF8")
    t = m.transaction
    assert t is not None
    assert (t.sender, t.size, t.body_type, t.ret, t.envid, t.smtputf8) == ("a@example.test", 10, "BINARYMIME",
                                                                           "HDRS", "e1", True)


def test_mail_parameters_need_ehlo() -> None:
    m = machine()
    m.command(b"HELO c")
    assert last(m, "MAIL FROM:<a@example.test> SIZE=10").startswith("555 5.5.4")


def test_size_refusal_is_counted() -> None:
    outs = in_state("helo").command(b"MAIL FROM:<a@example.test> SIZE=99999999")
    assert Count("messages_refused_for_size") in outs


def test_nested_mail_and_session_limit() -> None:
    m = in_state("mail")
    assert last(m, "MAIL FROM:<a@example.test>") == R["nested_mail"]
    m = in_state("helo", max_session_size_kb=1)
    m.session_bytes = 1024
    assert last(m, "MAIL FROM:<a@example.test>") == R["session_size"]


# -- RCPT TO and its parameters ----------------------------------------------------------------------------

RCPT_CASES = [
    ("RCPT TO:<b@example.test>", "250 2.1.5 <b@example.test>"),
    ("RCPT TO:<postmaster>", "250 2.1.5 <postmaster@example.test>"),
    ("RCPT TO:<c@alias.test>", "250 2.1.5"),
    ("RCPT TO:<r@relay.test>", "250 2.1.5"),
    ("RCPT TO:<x@elsewhere.test>", "550 5.7.1 Unable to relay for x@elsewhere.test"),
    ("RCPT TO:<b%x@example.test>", "550 5.7.1"),
    ("RCPT TO:<@a,@b:c@example.test>", "550 5.7.1"),
    ("RCPT TO:<b@[192.0.2.1]>", "550 5.7.1"),
    ("RCPT TO:<>", "501 5.1.3"),
    ("RCPT", R["syntax_rcpt"]),
    ("RCPT FROM:<b@example.test>", R["syntax_rcpt"]),
    ("RCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE", "250 2.1.5"),
    ("RCPT TO:<b@example.test> NOTIFY=NEVER", "250 2.1.5"),
    ("RCPT TO:<b@example.test> NOTIFY=NEVER,SUCCESS", "501 5.5.4 Invalid value for NOTIFY"),
    ("RCPT TO:<b@example.test> NOTIFY=SOMETIMES", "501 5.5.4 Invalid value for NOTIFY"),
    ("RCPT TO:<b@example.test> ORCPT=rfc822;b@example.test", "250 2.1.5"),
    ("RCPT TO:<b@example.test> ORCPT=b@example.test", "501 5.5.4 Invalid value for ORCPT"),
    ("RCPT TO:<b@example.test> SIZE=1", "555 5.5.4 Parameter not recognized or not implemented: SIZE"),
    ("RCPT TO:<müller@example.test>", R["smtputf8_needed"]),
]


@pytest.mark.parametrize("line, expected", RCPT_CASES)
def test_rcpt_parameters(line: str, expected: str) -> None:
    assert last(in_state("mail"), line).startswith(expected)


def test_rcpt_records_dsn_parameters_and_deduplicates() -> None:
    m = in_state("mail")
    last(m, "RCPT TO:<b@example.test> NOTIFY=SUCCESS ORCPT=rfc822;b@example.test")
    last(m, "RCPT TO:<b@example.test>")
    last(m, "RCPT TO:<c@example.test>")
    t = m.transaction
    assert t is not None and t.recipients == ["b@example.test", "c@example.test"]
    assert t.rcpt_params == {"b@example.test": ("SUCCESS", "rfc822;b@example.test")}


def test_relay_refusal_is_counted_and_relay_allowed_by_address_or_auth() -> None:
    outs = in_state("mail").command(b"RCPT TO:<x@elsewhere.test>")
    assert Count("messages_refused_for_relay") in outs
    assert code(in_state("mail", relay_allowed=("192.0.2.0/24",)), "RCPT TO:<x@elsewhere.test>") == "250"
    m = in_state("mail")
    m.user = "alice"
    assert code(m, "RCPT TO:<x@elsewhere.test>") == "250"


def test_recipient_limit() -> None:
    m = in_state("mail", max_recipients=2)
    assert [code(m, f"RCPT TO:<u{i}@example.test>") for i in range(4)] == ["250", "250", "452", "452"]


# -- DATA --------------------------------------------------------------------------------------------------

def test_data_flow_commit_and_reset() -> None:
    m = in_state("rcpt")
    [begin] = m.command(b"DATA")
    assert isinstance(begin, BeginData) and m.mode == "data"
    assert m.body_end(BodyFacts(100)) == [Commit()]
    assert m.mode == "commit"
    assert replies(m.committed("Q1")) == ["250 2.6.0 <Q1@mx.example.test> Queued mail for delivery"]
    assert m.transaction is None and m.mode == "command" and m.messages == 1 and m.session_bytes == 100


@pytest.mark.parametrize("facts, reply", [
    (BodyFacts(10, bare_newline=True), R["bare_newline"]),
    (BodyFacts(2097153), R["message_size"]),
    (BodyFacts(10, hops=16), R["hop_count"]),
    (BodyFacts(10, storage="storage"), R["storage"]),
    (BodyFacts(10, storage="local"), R["local_error"]),
])
def test_data_refusals_drop_the_spool_and_end_the_transaction(facts: BodyFacts, reply: str) -> None:
    m = in_state("rcpt")
    m.command(b"DATA")
    outs = m.body_end(facts)
    assert outs[0] == DropSpool() and replies(outs) == [reply]
    assert m.transaction is None and m.mode == "command"


def test_bare_newline_normalized_is_accepted_and_hops_at_the_limit_too() -> None:
    m = in_state("rcpt", bare_newline="normalize")
    m.command(b"DATA")
    assert m.body_end(BodyFacts(10, bare_newline=True, hops=15)) == [Commit()]


def test_session_size_counts_across_messages() -> None:
    m = in_state("rcpt", max_session_size_kb=1)
    m.command(b"DATA")
    m.body_end(BodyFacts(600))
    m.committed("Q1")
    for line in ("MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "DATA"):
        m.command(line.encode())
    assert replies(m.body_end(BodyFacts(600))) == [R["session_size"]]
    assert last(m, "MAIL FROM:<a@example.test>") == R["session_size"]


def test_data_syntax_and_failed_spool_keeps_the_transaction() -> None:
    m = in_state("rcpt")
    assert last(m, "DATA now") == R["syntax_data"]
    m.command(b"DATA")
    assert replies(m.spool_failed(storage=True)) == [R["storage"]]
    assert m.transaction is not None and m.mode == "command"
    assert isinstance(m.command(b"DATA")[0], BeginData)


def test_commit_failure() -> None:
    m = in_state("rcpt")
    m.command(b"DATA")
    m.body_end(BodyFacts(1))
    assert replies(m.commit_failed(storage=False)) == [R["local_error"]]
    assert m.transaction is None


# -- BDAT and BINARYMIME (RFC 3030) ------------------------------------------------------------------------

def test_bdat_chunks_then_last() -> None:
    m = in_state("rcpt")
    assert m.command(b"BDAT 100") == [BeginChunk(100, last=False, keep=True, first=True)]
    assert m.mode == "chunk" and not m.last_chunk_kept
    assert replies(m.chunk_end()) == ["250 2.0.0 100 octets received"]
    assert m.command(b"bdat 50 last") == [BeginChunk(50, last=True, keep=True, first=False)]
    assert m.last_chunk_kept
    assert m.body_end(BodyFacts(150)) == [Commit()]
    assert replies(m.committed("Q2"))[0].startswith("250 2.6.0 <Q2@")


def test_bdat_zero_last_ends_the_message() -> None:
    m = in_state("rcpt")
    m.command(b"BDAT 10")
    m.chunk_end()
    assert m.command(b"BDAT 0 LAST") == [BeginChunk(0, last=True, keep=True, first=False)]


@pytest.mark.parametrize("state, reply", [("fresh", R["need_helo"]), ("helo", R["need_mail"]),
                                          ("mail", R["need_rcpt"])])
def test_bdat_out_of_sequence_consumes_its_chunk_then_refuses(state: str, reply: str) -> None:
    m = in_state(state)
    assert m.command(b"BDAT 20 LAST") == [BeginChunk(20, last=True, keep=False, first=False)]
    assert not m.last_chunk_kept
    assert replies(m.chunk_end()) == [reply]
    assert m.mode == "command"


@pytest.mark.parametrize("arg", ["", "x", "-1", "10 MORE", "10 LAST x", "1" * 19])
def test_bdat_without_a_readable_size_closes(arg: str) -> None:
    m = in_state("rcpt")
    outs = m.command(f"BDAT {arg}".encode())
    assert replies(outs) == [R["syntax_bdat"]] and isinstance(outs[-1], Close)


def test_data_after_bdat_refused_and_rcpt_too() -> None:
    m = in_state("rcpt")
    m.command(b"BDAT 10")
    m.chunk_end()
    assert last(m, "DATA") == R["data_after_bdat"]
    assert last(m, "RCPT TO:<c@example.test>") == R["bad_sequence"]
    assert m.transaction is not None and m.transaction.body == "BDAT"


def test_bdat_after_data_is_a_new_transaction_need() -> None:
    m = in_state("rcpt")
    m.command(b"DATA")
    m.body_end(BodyFacts(5))
    m.committed("Q3")
    m.command(b"BDAT 5 LAST")
    assert replies(m.chunk_end()) == [R["need_mail"]]


def test_binarymime_needs_bdat() -> None:
    m = in_state("helo")
    m.command(b"MAIL FROM:<a@example.test> BODY=BINARYMIME")
    m.command(b"RCPT TO:<b@example.test>")
    assert last(m, "DATA") == R["binarymime_needs_bdat"]
    assert m.command(b"BDAT 3 LAST") == [BeginChunk(3, last=True, keep=True, first=True)]


@pytest.mark.parametrize("rcpt", ["b@example.test", "c@alias.test", "r@relay.test", "x@elsewhere.test"])
def test_binarymime_to_local_and_remote_recipients(rcpt: str) -> None:
    """Remote recipients too: delivery converts the message for a hop without BINARYMIME (RFC 3030 §3)."""
    m = in_state("helo", relay_allowed=("192.0.2.0/24",))
    m.command(b"MAIL FROM:<a@example.test> BODY=BINARYMIME")
    assert last(m, f"RCPT TO:<{rcpt}>").startswith("250 2.1.5")


def test_bdat_size_limit_across_chunks_keeps_the_session() -> None:
    m = in_state("rcpt", max_message_size_kb=1)
    assert m.command(b"BDAT 600") == [BeginChunk(600, last=False, keep=True, first=True)]
    m.chunk_end()
    assert m.command(b"BDAT 600") == [BeginChunk(600, last=False, keep=False, first=False)]
    outs = m.chunk_end()
    assert DropSpool() in outs and Count("messages_refused_for_size") in outs
    assert replies(outs) == [R["message_size"]]
    assert m.transaction is None
    assert code(m, "MAIL FROM:<a@example.test>") == "250"


def test_bdat_last_over_the_limit() -> None:
    m = in_state("rcpt", max_message_size_kb=1)
    assert m.command(b"BDAT 2000 LAST") == [BeginChunk(2000, last=True, keep=False, first=True)]
    assert not m.last_chunk_kept
    assert replies(m.chunk_end()) == [R["message_size"]]


def test_bdat_storage_error_ends_the_transaction() -> None:
    m = in_state("rcpt")
    m.command(b"BDAT 10")
    outs = m.chunk_end("storage")
    assert DropSpool() in outs and replies(outs) == [R["storage"]]


# -- STARTTLS ----------------------------------------------------------------------------------------------

def test_starttls() -> None:
    m = in_state("rcpt", tls_available=True)
    assert last(m, "STARTTLS x") == "501 5.5.4 Syntax: STARTTLS (no arguments)"
    outs = m.command(b"STARTTLS")
    assert replies(outs) == [R["tls_ready"]] and isinstance(outs[-1], BeginTls)
    m.tls_started()
    assert (m.helo, m.transaction, m.user, m.tls_active) == (None, None, "", True)
    assert last(m, "MAIL FROM:<a@example.test>") == R["need_helo"]
    m.command(b"EHLO c")
    assert last(m, "STARTTLS") == R["tls_active"]


@pytest.mark.parametrize("line, refused", [("NOOP", False), ("EHLO c", False), ("QUIT", False),
                                           ("HELO c", True), ("MAIL FROM:<a@example.test>", True),
                                           ("VRFY x", True), ("AUTH PLAIN", True), ("RSET", True)])
def test_require_tls_allows_only_the_way_to_tls(line: str, refused: bool) -> None:
    m = machine(require_tls=True, tls_available=True)
    assert (last(m, line) == R["tls_required"]) == refused
    m = machine(require_tls=True, tls_active=True)
    assert last(m, line) != R["tls_required"]


# -- AUTH --------------------------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def authable(**kw: object) -> SmtpMachine:
    m = machine(auth_basic=True, tls_active=True, **kw)
    m.command(b"EHLO c")
    return m


def test_auth_plain_with_initial_response() -> None:
    m = authable()
    outs = m.command(b"AUTH PLAIN " + b64(b"\0alice\0secret").encode())
    assert outs == [CheckPassword("alice", "secret", for_other=False)]
    outs = m.auth_checked("alice")
    assert isinstance(outs[0], Publish) and isinstance(outs[0].event, AuthSucceeded)
    assert (outs[0].event.peer, outs[0].event.user) == ("192.0.2.7", "alice") and replies(outs) == [R["auth_ok"]]
    assert m.authenticated and last(m, "AUTH PLAIN") == R["auth_already"]


def test_auth_plain_challenge_and_login() -> None:
    m = authable()
    assert m.command(b"AUTH PLAIN") == [Challenge("334 ")]
    assert m.line_limit == 12288
    assert m.command(b64(b"bob\0bob\0pw").encode()) == [CheckPassword("bob", "pw", for_other=False)]
    assert replies(m.auth_checked(None)) == [R["auth_failed"]]
    assert m.command(b"AUTH LOGIN") == [Challenge("334 VXNlcm5hbWU6")]
    assert m.command(b64(b"bob").encode()) == [Challenge("334 UGFzc3dvcmQ6")]
    assert m.command(b64(b"pw").encode()) == [CheckPassword("bob", "pw", for_other=False)]
    m.auth_checked("bob@example.test")
    assert m.user == "bob@example.test"


def test_auth_login_with_initial_name() -> None:
    m = authable()
    assert m.command(b"AUTH LOGIN " + b64(b"bob").encode()) == [Challenge("334 UGFzc3dvcmQ6")]


def test_auth_for_another_identity_is_a_failure_to_check() -> None:
    m = authable()
    assert m.command(b"AUTH PLAIN " + b64(b"bob\0alice\0pw").encode()) == [CheckPassword("alice", "pw", True)]


@pytest.mark.parametrize("lines, reply", [
    (["AUTH"], R["syntax_auth"]),
    (["AUTH PLAIN a b"], R["syntax_auth"]),
    (["AUTH CRAM-MD5"], R["auth_mechanism"]),
    (["AUTH PLAIN not*base64"], R["auth_bad_base64"]),
    (["AUTH PLAIN " + b64(b"x")], R["auth_bad_plain"]),
    (["AUTH PLAIN", "*"], R["auth_aborted"]),
    (["AUTH LOGIN", "*"], R["auth_aborted"]),
    (["AUTH LOGIN", b64(b"bob"), "*"], R["auth_aborted"]),
    (["AUTH LOGIN", "%%%"], R["auth_bad_base64"]),
    (["AUTH LOGIN", b64(b"bob"), "="], R["auth_bad_plain"]),
    (["MAIL FROM:<a@example.test>", "AUTH PLAIN"], R["auth_in_transaction"]),
])
def test_auth_errors(lines: list[str], reply: str) -> None:
    m = authable()
    for line in lines:
        outs = m.command(line.encode())
    assert replies(outs)[-1] == reply
    assert m.mode == "command"


def test_auth_offered_only_as_configured() -> None:
    assert last(in_state("helo"), "AUTH PLAIN") == R["not_implemented"]
    m = machine(auth_basic=True)
    m.command(b"EHLO c")
    assert last(m, "AUTH PLAIN") == R["auth_needs_tls"]
    m = machine(auth_basic=True, tls_active=True)
    m.command(b"HELO c")
    assert last(m, "AUTH PLAIN") == R["not_implemented"]  # AUTH is an ESMTP extension


def test_auth_locked_out_address() -> None:
    m = authable(locked=30.0)
    outs = m.command(b"AUTH PLAIN")
    assert isinstance(outs[0], Publish) and isinstance(outs[0].event, AuthRefusedLocked)
    assert outs[0].event.seconds_left == 30.0 and replies(outs) == [R["auth_locked"]]


def test_auth_line_too_long_leaves_the_exchange() -> None:
    m = authable()
    m.command(b"AUTH PLAIN")
    assert replies(m.line_too_long()) == [R["auth_line_too_long"]]
    assert m.mode == "command"


def test_anonymous_off_needs_auth_before_mail() -> None:
    m = authable(auth_anonymous=False)
    assert last(m, "MAIL FROM:<a@example.test>") == R["auth_required"]
    m.user = "alice"
    assert code(m, "MAIL FROM:<a@example.test>") == "250"


# -- ETRN --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arg, released, reply", [
    ("remote.test", None, "459 4.7.1 Node remote.test not allowed"),
    ("@Remote.Test", 0, "251 2.0.0 OK, no messages waiting for node remote.test"),
    ("remote.test", 3, "253 2.0.0 OK, 3 pending messages for node remote.test started"),
])
def test_etrn(arg: str, released: int | None, reply: str) -> None:
    m = in_state("helo")
    [etrn] = m.command(f"ETRN {arg}".encode())
    assert etrn == Etrn("remote.test")
    assert replies(m.etrn_done(etrn.domain, released))[0].startswith(reply)


@pytest.mark.parametrize("arg", ["", "a b", "#queue"])
def test_etrn_syntax(arg: str) -> None:
    assert last(in_state("helo"), f"ETRN {arg}") == R["syntax_etrn"]


# -- pipelining groups (RFC 2920): a group sent at once gets the same answers as one at a time ---------------

GROUPS = [
    ["EHLO c", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "RCPT TO:<x@far.test>", "DATA"],
    ["EHLO c", "RSET", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "BDAT 0 LAST"],
    ["EHLO c", "MAIL FROM:<a@example.test> SIZE=1", "MAIL FROM:<a@example.test>", "RCPT TO:<>", "DATA"],
    ["HELO c", "MAIL FROM:<a@example.test>", "RCPT TO:<b@example.test>", "NOOP", "VRFY x", "QUIT"],
]


@pytest.mark.parametrize("group", GROUPS)
def test_pipelining_group_replies_in_order(group: list[str]) -> None:
    together = machine()
    outs = [together.command(line.encode()) for line in group]
    kinds = [type(o[0]).__name__ for o in outs]
    assert len(outs) == len(group)
    one_by_one = machine()
    assert kinds == [type(one_by_one.command(line.encode())[0]).__name__ for line in group]


# -- any sequence: never a crash, only table replies -------------------------------------------------------

VERBS = [*COMMANDS, "TURN", "", "\xff"]
ARGS = st.sampled_from(["", "c", "FROM:<a@example.test>", "TO:<b@example.test>", "FROM:<> BODY=BINARYMIME",
                        "TO:<x@elsewhere.test>", "FROM:<a@example.test> SIZE=9999999999", "PLAIN", "LOGIN",
                        "PLAIN " + b64(b"\0alice\0pw"), "0", "5 LAST", "10", "x", "remote.test", "*", "="])
LINES = st.one_of(st.tuples(st.sampled_from(VERBS), ARGS).map(lambda va: f"{va[0]} {va[1]}".strip().encode()),
                  st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")))


def drive(m: SmtpMachine, outs: list[Out], accept: bool) -> list[str]:
    """Carry out actions as the protocol would, with fixed facts; the reply lines that came out."""
    lines: list[str] = []
    pending = list(outs)
    while pending:
        out = pending.pop(0)
        if isinstance(out, Reply | Challenge):
            lines += out.text.split("\r\n")
        elif isinstance(out, BeginData):
            lines.append(out.go_ahead)
            pending += m.body_end(BodyFacts(10, bare_newline=not accept))
        elif isinstance(out, BeginChunk):
            pending += m.body_end(BodyFacts(out.size)) if m.last_chunk_kept else m.chunk_end()
        elif isinstance(out, Commit):
            pending += m.committed("Q") if accept else m.commit_failed(storage=True)
        elif isinstance(out, CheckPassword):
            pending += m.auth_checked("alice" if accept else None)
        elif isinstance(out, Etrn):
            pending += m.etrn_done(out.domain, 1 if accept else None)
        elif isinstance(out, BeginTls):
            m.tls_started()
        elif isinstance(out, LookUpName):
            pending += m.name_found(None)
    return lines


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(LINES, max_size=30), accept=st.booleans(), tls=st.booleans(), auth=st.booleans())
def test_any_command_sequence(lines: list[bytes], accept: bool, tls: bool, auth: bool) -> None:
    m = machine(tls_available=tls, auth_basic=auth, auth_plaintext_allowed=True, max_bad_commands=1000)
    for line in lines:
        if m.mode == "closed":
            break
        for text in drive(m, m.command(line), accept):
            assert is_table_reply(text), text
        assert m.mode in ("command", "closed") or m.mode.startswith("auth_")
