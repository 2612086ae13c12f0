"""Tests of the Pickup file rules (engine.pickup.pickup): envelope, headers, line endings, dot lines, junk."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import EngineError
from engine.pickup.pickup import (
    MAX_HEADER_BYTES,
    PickupError,
    PickupMessage,
    parse_pickup,
)
from engine.store.envelope import envelope_lines, pickup_file

DOMAIN = "example.com"


def parse(text: str | bytes) -> PickupMessage:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_pickup(data, DOMAIN)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


# -- envelope


def test_envelope_lines_give_the_envelope_and_are_removed() -> None:
    message = parse("x-sender: <s@a.org>\nX-Receiver: r1@b.org\nx-receiver:<r2@c.org>\nFrom: f@a.org\n\nhi\n")
    assert message.sender == "s@a.org"
    assert message.recipients == ("r1@b.org", "r2@c.org")
    assert message.content == crlf("From: f@a.org\n\nhi\n")


def test_x_receiver_overrides_the_headers() -> None:
    message = parse("x-receiver: only@b.org\nFrom: f@a.org\nTo: t@b.org\nCc: c@b.org\n\nbody\n")
    assert message.recipients == ("only@b.org",)
    assert message.sender == "f@a.org"
    assert message.content == crlf("From: f@a.org\nTo: t@b.org\nCc: c@b.org\n\nbody\n")


def test_x_sender_alone_takes_recipients_from_headers() -> None:
    message = parse("x-sender: s@a.org\nFrom: f@a.org\nTo: t@b.org\n\n")
    assert (message.sender, message.recipients) == ("s@a.org", ("t@b.org",))


def test_null_sender() -> None:
    assert parse("x-sender: <>\nx-receiver: r@b.org\nFrom: f@a.org\n\n").sender == ""


def test_a_second_x_sender_is_a_message_header() -> None:
    message = parse("x-sender: s@a.org\nx-receiver: r@b.org\nX-Sender: eudora@a.org\nFrom: f@a.org\n\nx\n")
    assert message.sender == "s@a.org"
    assert message.content == crlf("X-Sender: eudora@a.org\nFrom: f@a.org\n\nx\n")


def test_envelope_addresses_are_checked() -> None:
    with pytest.raises(PickupError, match="x-receiver"):
        parse("x-receiver: a@b.org c@d.org\nFrom: f@a.org\n\n")
    with pytest.raises(PickupError, match="x-receiver line without an address"):
        parse("x-receiver: <>\nFrom: f@a.org\n\n")


def test_envelope_only_is_not_a_message() -> None:
    with pytest.raises(PickupError, match="after the x-sender/x-receiver lines"):
        parse("x-sender: s@a.org\nx-receiver: r@b.org\n")


# -- headers


def test_recipients_from_to_cc_bcc_and_bcc_is_removed() -> None:
    message = parse(
        'From: Fred <f@a.org>\nTo: t1@b.org, "Two, T" <t2@b.org>\nBcc: hidden@c.org,\n  also@c.org\n'
        "Cc: c@b.org\nSubject: hi\n\nbody\n"
    )
    assert message.sender == "f@a.org"
    assert message.recipients == ("t1@b.org", "t2@b.org", "c@b.org", "hidden@c.org", "also@c.org")
    assert b"hidden" not in message.content and b"Bcc" not in message.content
    assert message.content == crlf(
        'From: Fred <f@a.org>\nTo: t1@b.org, "Two, T" <t2@b.org>\nCc: c@b.org\nSubject: hi\n\nbody\n'
    )


def test_bcc_is_removed_also_with_x_receiver_lines() -> None:
    message = parse("x-receiver: r@b.org\nFrom: f@a.org\nBCC: secret@c.org\nTo: t@b.org\n\nx\n")
    assert message.recipients == ("r@b.org",)
    assert message.content == crlf("From: f@a.org\nTo: t@b.org\n\nx\n")


def test_recipients_are_deduplicated_case_insensitively_in_order() -> None:
    message = parse("From: f@a.org\nTo: B@b.org, a@a.org\nCc: b@B.ORG, c@c.org\nBcc: A@a.org\n\n")
    assert message.recipients == ("B@b.org", "a@a.org", "c@c.org")


def test_x_receivers_are_deduplicated() -> None:
    message = parse("x-receiver: r@b.org\nx-receiver: R@B.org\nFrom: f@a.org\n\n")
    assert message.recipients == ("r@b.org",)


def test_sender_header_wins_over_from() -> None:
    message = parse("From: f@a.org, g@a.org\nSender: s@a.org\nTo: t@b.org\n\n")
    assert message.sender == "s@a.org"


def test_first_from_address_is_the_sender() -> None:
    assert parse("From: f@a.org, g@a.org\nTo: t@b.org\n\n").sender == "f@a.org"


def test_addresses_without_domain_get_the_default_domain() -> None:
    message = parse("From: postmaster\nTo: spamtest, x@y.org\n\n")
    assert message.sender == f"postmaster@{DOMAIN}"
    assert message.recipients == (f"spamtest@{DOMAIN}", "x@y.org")
    assert parse("x-sender: me\nx-receiver: you\nFrom: f\n\n").recipients == (f"you@{DOMAIN}",)


def test_folded_headers_and_encoded_display_names() -> None:
    message = parse(
        "From: =?utf-8?q?J=C3=B6rg?= <j@a.org>\nTo: =?utf-8?b?w6lsaXNl?= <e@b.org>,\n\t"
        '"Doe, John" <jd@b.org>\nCc: Jörg Ünicode <ju@b.org>\n\n'
    )
    assert message.sender == "j@a.org"
    assert message.recipients == ("e@b.org", "jd@b.org", "ju@b.org")


def test_group_syntax_and_comments() -> None:
    message = parse("From: f@a.org (Fred)\nTo: undisclosed-recipients:;\nCc: Team: a@b.org, c@d.org;\n\n")
    assert message.recipients == ("a@b.org", "c@d.org")
    assert message.sender == "f@a.org"


def test_no_from_header_is_an_error_when_the_sender_would_come_from_it() -> None:
    with pytest.raises(PickupError, match=r"^no From: header$"):
        parse("To: t@b.org\nSubject: x\n\nbody\n")
    with pytest.raises(PickupError, match=r"^no From: header$"):
        parse("x-receiver: r@b.org\nSender: s@a.org\nTo: t@b.org\n\nbody\n")


def test_x_sender_makes_the_envelope_complete_without_a_from_header() -> None:
    message = parse("x-sender: s@a.org\nx-receiver: r@b.org\nTo: t@b.org\n\nbody\n")
    assert (message.sender, message.recipients) == ("s@a.org", ("r@b.org",))
    assert message.content == crlf("To: t@b.org\n\nbody\n")
    message = parse("x-sender: <>\nSubject: no From, recipients from To\nTo: t@b.org\n\n")
    assert (message.sender, message.recipients) == ("", ("t@b.org",))


@pytest.mark.parametrize("prefix", ["", "x-sender: s@a.org\nx-receiver: r@b.org\n"])
def test_an_mbox_from_line_is_named_in_the_reason(prefix: str) -> None:
    with pytest.raises(PickupError, match="mbox 'From ' separator line"):
        parse(prefix + "From s@a.org Mon Jan  1 00:00:00 2024\nFrom: s@a.org\nTo: t@b.org\n\nx\n")
    with pytest.raises(PickupError, match="no 'Name: value' header line"):
        parse(prefix + "just some text\nwith no header\n")


def test_no_recipients_is_an_error() -> None:
    with pytest.raises(PickupError, match="no recipients"):
        parse("From: f@a.org\nTo: undisclosed-recipients:;\n\nbody\n")


def test_unparseable_address_is_an_error_not_a_silent_loss() -> None:
    with pytest.raises(PickupError, match="To: header"):
        parse("From: f@a.org\nTo: x@y.org z@w.org\n\n")


def test_from_without_address_is_an_error() -> None:
    with pytest.raises(PickupError, match="From: header"):
        parse("From: \nTo: t@b.org\n\n")


def test_malformed_line_in_headers_is_kept() -> None:
    message = parse("From: f@a.org\nthis is no header\nTo: t@b.org\n\nx\n")
    assert message.recipients == ("t@b.org",)
    assert message.content == crlf("From: f@a.org\nthis is no header\nTo: t@b.org\n\nx\n")


def test_headers_only_file() -> None:
    message = parse("From: f@a.org\nTo: t@b.org")
    assert message.content == b"From: f@a.org\r\nTo: t@b.org\r\n"


# -- line endings and dot lines


def test_crlf_file_is_delivered_unchanged_and_uncopied() -> None:
    data = crlf("From: f@a.org\nTo: t@b.org\n\nline 1\n\nline 3\n")
    assert parse_pickup(data, DOMAIN).content is data


def test_bare_lf_and_mixed_endings_become_crlf() -> None:
    message = parse(b"From: f@a.org\r\nTo: t@b.org\n\nline 1\nline 2\r\nline 3")
    assert message.content == b"From: f@a.org\r\nTo: t@b.org\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"


HEAD = b"From: f@a.org\r\nTo: t@b.org\r\nMIME-Version: 1.0\r\n"
BINARY_PART = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"


@pytest.mark.parametrize(("body", "binary"), [
    (b"a NUL \x00 here\r\n", True),
    (b"a bare CR \r here\r\n", True),
    (b"x" * 999 + b"\r\n", True),
    (b"x" * 998 + b"\r\n", False),
    (b"bare LF\n in a part labelled binary\r\n", True),
])
def test_binary_content_is_kept_byte_for_byte_and_marked(body: bytes, binary: bool) -> None:
    data = HEAD + BINARY_PART + body
    message = parse(data)
    assert message.binary is binary and message.content == data


def test_bare_lf_in_a_crlf_file_without_a_binary_part_is_a_line_end() -> None:
    message = parse(HEAD + b"\r\ntext with\nbare LF\r\n")
    assert not message.binary and message.content == HEAD + b"\r\ntext with\r\nbare LF\r\n"


def test_a_file_of_lf_lines_with_binary_content_gets_crlf_line_ends_and_is_marked() -> None:
    message = parse(b"From: f@a.org\nTo: t@b.org\n\n" + b"y" * 1000 + b"\nNUL\x00\n")
    assert message.binary
    assert message.content == b"From: f@a.org\r\nTo: t@b.org\r\n\r\n" + b"y" * 1000 + b"\r\nNUL\x00\r\n"


def test_lone_dot_in_the_middle_loses_nothing() -> None:
    message = parse("From: f@a.org\nTo: t@b.org\n\nbefore\n.\nafter\n..two dots stay\n")
    assert message.content == crlf("From: f@a.org\nTo: t@b.org\n\nbefore\n.\nafter\n..two dots stay\n")


def test_file_ending_with_a_dot_line_is_unstuffed() -> None:
    message = parse("From: f@a.org\nTo: t@b.org\n\n..leading dot\n..\nmiddle.\n.\n")
    assert message.content == crlf("From: f@a.org\nTo: t@b.org\n\n.leading dot\n.\nmiddle.\n")


def test_stuffed_file_without_final_line_break() -> None:
    message = parse(b"From: f@a.org\r\nTo: t@b.org\r\n\r\nbody\r\n.")
    assert message.content == crlf("From: f@a.org\nTo: t@b.org\n\nbody\n")


# -- not a message


@pytest.mark.parametrize("data", [b"", b"\r\n", b"   \n\n\t\n", b".\r\n"])
def test_empty_file(data: bytes) -> None:
    with pytest.raises(PickupError, match="empty file"):
        parse(data)


@pytest.mark.parametrize(
    "data",
    [
        b"From: f@a.org\r\nTo: t@b.org\r\nX-Junk: \x00\x01\x02\r\n\r\nbody",
        bytes(range(256)) * 4,
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"Hello, this is not a mail.\nFrom: f@a.org\nTo: t@b.org\n\n",
        b"\nFrom: f@a.org\nTo: t@b.org\n",
    ],
)
def test_binary_junk_and_text_without_headers(data: bytes) -> None:
    with pytest.raises(PickupError) as info:
        parse(data)
    assert str(info.value)


def test_header_section_over_1_mb() -> None:
    big = b"From: f@a.org\r\nTo: t@b.org\r\n" + b"X-Pad: " + b"x" * 1000 + b"\r\n"
    data = big * (MAX_HEADER_BYTES // len(big) + 2) + b"\r\nbody\r\n"
    with pytest.raises(PickupError, match="larger than 1 MB"):
        parse(data)
    with pytest.raises(PickupError, match="larger than 1 MB"):
        parse(data[: -len(b"\r\nbody\r\n")])


def test_large_body_is_fine() -> None:
    body = b"y" * 998 + b"\r\n"
    data = b"From: f@a.org\r\nTo: t@b.org\r\n\r\n" + body * 3000
    assert parse(data).content is data


def test_pickup_error_is_an_engine_error() -> None:
    assert issubclass(PickupError, EngineError)


# -- envelope_lines / pickup_file


def test_envelope_lines_format() -> None:
    assert envelope_lines("s@a.org", ["r1@b.org", "r2@b.org"]) == (
        b"x-sender: s@a.org\r\nx-receiver: r1@b.org\r\nx-receiver: r2@b.org\r\n"
    )
    assert envelope_lines("", ["r@b.org"]).startswith(b"x-sender: <>\r\n")
    with pytest.raises(ValueError):
        envelope_lines("s@a.org\r\nx-receiver: evil@x.org", ["r@b.org"])


def test_pickup_file_round_trips_content_ending_with_a_dot_line() -> None:
    content = crlf("From: f@a.org\n\nlast line is a dot:\n.\n")
    file = pickup_file("s@a.org", ["r@b.org"], content)
    assert file.endswith(b"\r\n..\r\n.\r\n")
    assert parse(file) == PickupMessage("s@a.org", ("r@b.org",), content)


# -- properties

_atom = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~",
    min_size=1,
    max_size=12,
)
_domain = st.lists(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True), min_size=1, max_size=3
).map(".".join)
_address = st.builds(lambda local, domain: f"{local}@{domain}", _atom, _domain)
_recipients = st.lists(_address, min_size=1, max_size=8, unique_by=str.lower)
_text_line = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=60
).map(lambda text: text.encode("utf-8"))
_header_name = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda name: name.lower() not in ("bcc", "x-sender", "x-receiver", "from")
)
_header = st.builds(lambda name, value: name.encode() + b": " + value, _header_name, _text_line)


@st.composite
def _contents(draw: st.DrawFn) -> bytes:
    headers = [b"From: " + draw(_address).encode(), *draw(st.lists(_header, max_size=6))]
    draw(st.randoms()).shuffle(headers)
    lines = draw(st.lists(st.one_of(_text_line, st.sampled_from([b".", b"..", b".x", b""])), max_size=20))
    return b"".join(line + b"\r\n" for line in headers) + b"\r\n" + b"".join(line + b"\r\n" for line in lines)


def _last_line_is_dot(content: bytes) -> bool:
    return content.endswith(b"\r\n.\r\n")


@settings(max_examples=300)
@given(sender=st.one_of(st.just(""), _address), recipients=_recipients, content=_contents())
def test_envelope_and_content_round_trip(sender: str, recipients: list[str], content: bytes) -> None:
    expected = PickupMessage(sender, tuple(recipients), content)
    assert parse(pickup_file(sender, recipients, content)) == expected
    if not _last_line_is_dot(content):
        assert parse(envelope_lines(sender, recipients) + content) == expected
        assert parse(envelope_lines(sender, recipients) + content.replace(b"\r\n", b"\n")) == expected
    stuffed = b"".join(b"." + line if line.startswith(b".") else line for line in content.splitlines(True))
    assert parse(envelope_lines(sender, recipients) + stuffed + b".\r\n") == expected


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_pickup_error(data: bytes) -> None:
    try:
        parse(data)
    except PickupError as exc:
        assert str(exc)


@settings(max_examples=300)
@given(
    prefix=st.lists(
        st.sampled_from(
            [
                b"x-sender: a@b.org",
                b"x-receiver: <c@d>",
                b"X-RECEIVER:",
                b"From: f",
                b"To: t, u@v",
                b"Bcc: <",
                b"\tfolded",
                b".",
                b"..",
                b"",
                b'From: "x',
            ]
        ),
        max_size=10,
    ),
    tail=st.binary(max_size=50),
)
def test_mail_like_junk_raises_only_pickup_error(prefix: list[bytes], tail: bytes) -> None:
    data = b"\n".join(prefix) + tail
    try:
        message = parse(data)
    except PickupError:
        return
    assert message.recipients and message.content.endswith(b"\r\n")
