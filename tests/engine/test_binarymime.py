"""BINARYMIME conversion (RFC 3030 §3) as a pure function: what must change changes, the rest stays byte-exact."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.smtp.binarymime import Unconvertible, convert, line_safe

BLOB = bytes(range(256)) * 3 + b"\r\n.\r\n\n\r\x00end"  # every octet, bare CR and LF, NUL, a lone-dot line
HEADERS = b"From: a@example.test\r\nTo: b@elsewhere.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n" \
          b"X-Folded: one\r\n\ttwo\r\nMIME-Version: 1.0\r\n"


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_dataable(data: bytes) -> None:
    """What DATA can carry unchanged: CRLF lines of at most 998 octets, no NUL, and no CTE 'binary' left."""
    assert line_safe(data), "the converted message is not line-safe"
    assert b"binary" not in data.lower().replace(b"binarymime", b""), "a 'binary' label is left"


def single(cte: bytes = b"binary", ctype: bytes = b"application/octet-stream", body: bytes = BLOB) -> bytes:
    return HEADERS + b"Content-Type: " + ctype + b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body


def mixed(attachment: bytes, boundary: bytes = b"==b1==", outer: bytes = b"") -> bytes:
    return (HEADERS + b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n" + outer + b"\r\n"
            b"preamble stays\r\n--" + boundary + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--"
            + boundary + b"\r\n" + attachment + b"\r\n--" + boundary + b"--\r\nepilogue stays\r\n")


ATTACHMENT = (b"Content-Type: application/octet-stream; name=\"x.bin\"\r\nContent-Disposition: attachment; "
              b"filename=\"x.bin\"\r\nContent-Transfer-Encoding: binary\r\n\r\n" + BLOB)


def test_binary_single_part_becomes_base64_with_headers_untouched() -> None:
    out = convert(single())
    assert_dataable(out)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head == HEADERS + b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64"
    assert parsed(out).get_content() == BLOB
    assert max(len(line) for line in body.split(b"\r\n")) == 76


def test_multipart_with_binary_attachment() -> None:
    message = mixed(ATTACHMENT, outer=b"Content-Transfer-Encoding: binary\r\n")
    out = convert(message)
    assert_dataable(out)
    # the top-level label is fixed (a multipart can only be 7bit, 8bit or binary); the other headers are kept
    assert out.startswith(HEADERS + b"Content-Type: multipart/mixed; boundary=\"==b1==\"\r\n"
                                    b"Content-Transfer-Encoding: 7bit\r\n\r\npreamble stays\r\n--==b1==\r\n")
    assert out.endswith(b"\r\n--==b1==--\r\nepilogue stays\r\n")
    text, attachment = parsed(out).iter_parts()
    assert text.get_content() == "hello"
    assert attachment.get_filename() == "x.bin" and attachment.get_content() == BLOB
    assert attachment["Content-Transfer-Encoding"] == "base64"


def test_nested_message_rfc822() -> None:
    inner = b"Subject: inner\r\nMIME-Version: 1.0\r\n" + single()[len(HEADERS):]
    part = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: binary\r\n\r\n" + inner
    out = convert(mixed(part))
    assert_dataable(out)
    _, forwarded = parsed(out).iter_parts()
    assert forwarded["Content-Transfer-Encoding"] == "7bit"
    [nested] = forwarded.iter_parts()
    assert nested["Subject"] == "inner" and nested.get_content() == BLOB


@pytest.mark.parametrize("body", [b"line\rbare CR\r\n", b"bare LF\nhere\r\n", b"a NUL \x00 here\r\n",
                                  b"x" * 999 + b"\r\n"], ids=["CR", "LF", "NUL", "long line"])
@pytest.mark.parametrize("cte", [b"binary", b"8bit", b"7bit"])
def test_a_part_with_bare_cr_lf_nul_or_a_long_line_is_base64_whatever_its_label(body: bytes, cte: bytes) -> None:
    out = convert(single(cte=cte, ctype=b"text/plain; charset=us-ascii", body=body))
    assert_dataable(out)
    message = parsed(out)
    assert message["Content-Transfer-Encoding"] == "base64"
    assert message.get_payload(decode=True) == body


def test_a_text_part_binary_in_name_only_is_relabelled_not_encoded() -> None:
    body = "déjà vu\r\nline two\r\n".encode()
    out = convert(single(ctype=b"text/plain; charset=utf-8", body=body))
    assert out == single(cte=b"8bit", ctype=b"text/plain; charset=utf-8", body=body)


def test_line_safe_parts_and_encoded_parts_stay_byte_exact() -> None:
    base64_part = b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    message = mixed(base64_part)
    assert convert(message) == message
    plain = HEADERS + b"\r\njust text\r\n"
    assert convert(plain) == plain


def test_a_folded_cte_field_is_replaced_whole() -> None:
    message = HEADERS + b"Content-Transfer-Encoding:\r\n  binary\r\nX-After: kept\r\n\r\n" + BLOB
    out = convert(message)
    assert out.startswith(HEADERS + b"Content-Transfer-Encoding: base64\r\nX-After: kept\r\n\r\n")
    assert parsed(out).get_payload(decode=True) == BLOB


def test_a_part_without_headers_gets_a_cte_field() -> None:
    out = convert(mixed(b"\r\n" + BLOB))
    _, part = parsed(out).iter_parts()
    assert part["Content-Transfer-Encoding"] == "base64" and part.get_payload(decode=True) == BLOB


SIGNED = (b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; "
          b"boundary=\"sig\"\r\n\r\n--sig\r\n{signed}\r\n--sig\r\nContent-Type: application/pkcs7-signature\r\n"
          b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--sig--\r\n")


@pytest.mark.parametrize("signed", [ATTACHMENT, b"Content-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n"
                                    + ATTACHMENT + b"\r\n--in--"], ids=["binary part", "binary part nested"])
def test_signed_content_that_would_change_is_refused(signed: bytes) -> None:
    with pytest.raises(Unconvertible, match="multipart/signed"):
        convert(HEADERS + SIGNED.replace(b"{signed}", signed))
    with pytest.raises(Unconvertible):  # as well when the signed message is an attachment
        convert(mixed(b"Content-Type: message/rfc822\r\n\r\n" + HEADERS + SIGNED.replace(b"{signed}", signed)))


def test_signed_content_that_needs_nothing_passes_unchanged() -> None:
    message = HEADERS + SIGNED.replace(b"{signed}", b"Content-Type: text/plain\r\n\r\nsigned text")
    assert convert(message) == message


def test_a_message_without_a_final_line_end_gets_one() -> None:
    assert convert(b"Subject: x\r\n\r\nno end") == b"Subject: x\r\n\r\nno end\r\n"


@pytest.mark.parametrize("data, safe", [(b"", True), (b"a\r\nb\r\n", True), (b"a\nb", False), (b"a\rb", False),
                                         (b"\x00", False), (b"x" * 998, True), (b"x" * 999, False),
                                         (b"\r\r\n", False), (b"\r\n\n", False)])
def test_line_safe(data: bytes, safe: bool) -> None:
    assert line_safe(data) is safe


# -- properties (hypothesis) --------------------------------------------------------------------------------

LEAF = st.tuples(st.sampled_from([b"application/octet-stream", b"text/plain; charset=utf-8", b"image/png"]),
                 st.sampled_from([b"binary", b"8bit", b"7bit", None]), st.binary(max_size=2000))
BOUNDARY = b"=_hypothesis_boundary_="


def leaf_entity(ctype: bytes, cte: bytes | None, body: bytes) -> bytes:
    head = b"Content-Type: " + ctype + b"\r\n" + (b"Content-Transfer-Encoding: " + cte + b"\r\n" if cte else b"")
    return head + b"\r\n" + body


@given(st.binary(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_a_message_or_a_reason(data: bytes) -> None:
    try:
        out = convert(data)
    except Unconvertible:
        return
    assert out.endswith(b"\r\n")


@given(st.lists(LEAF, min_size=1, max_size=4), st.booleans())
@settings(max_examples=200, deadline=None)
def test_every_part_comes_out_line_safe_with_the_same_bytes(leaves: list[tuple[bytes, bytes | None, bytes]],
                                                              nested: bool) -> None:
    assume(all(BOUNDARY not in body for _, _, body in leaves))
    parts = [leaf_entity(*leaf) for leaf in leaves]
    body = b"".join(b"--" + BOUNDARY + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + BOUNDARY + b"--\r\n"
    message = b"Subject: p\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + BOUNDARY \
              + b"\"\r\nContent-Transfer-Encoding: binary\r\n\r\n" + body
    if nested:  # the same, forwarded as an attachment
        message = mixed(b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: binary\r\n\r\n" + message)
    out = convert(message)
    assert line_safe(out)
    top = parsed(out)
    inner = next(p for p in top.walk() if p.get_content_type() == "message/rfc822").get_payload(0) if nested else top
    assert isinstance(inner, EmailMessage)
    got = [part.get_payload(decode=True) for part in inner.iter_parts()]
    assert got == [body for _, _, body in leaves]
