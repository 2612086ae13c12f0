"""The DATA state machine: chunking never changes the result; only CRLF.CRLF ends DATA."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cleanup.headers import HeaderScanner
from engine.smtpd.data_stream import DataStream

# Bytes rich in the characters that matter: CR, LF, dots.
stream_bytes = st.lists(st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"\r\n.", b"a", b"..", b" "]),
                        max_size=60).map(b"".join)


def feed_all(data: bytes, cuts: list[int], normalize: bool = False) -> tuple[bytes, bool, bytes, bool]:
    stream = DataStream(normalize)
    out = bytearray()
    position = 0
    leftover = b""
    for cut in [*sorted(set(cuts)), len(data)]:
        if cut <= position:
            continue
        content, rest = stream.feed(data[position:cut])
        out += content
        position = cut
        if stream.done:
            leftover = rest + data[position:]
            break
    return bytes(out), stream.done, leftover, stream.bare_newline


def reference(data: bytes) -> tuple[bytes, bool, bytes]:
    """Line by line, the way RFC 5321 §4.5.2 describes it (CRLF lines only)."""
    lines = []
    position = 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return b"".join(lines), False, b""
        line = data[position:end]
        position = end + 2
        if line == b".":
            return b"".join(lines), True, data[position:]
        lines.append((line[1:] if line.startswith(b".") else line) + b"\r\n")


@given(body=stream_bytes, cuts=st.lists(st.integers(0, 80), max_size=10))
def test_chunking_never_changes_the_result(body: bytes, cuts: list[int]) -> None:
    data = body + b"\r\n.\r\nNEXT"
    assert feed_all(data, cuts) == feed_all(data, [])


@given(body=stream_bytes)
def test_matches_the_rfc_line_algorithm_when_lines_are_clean(body: bytes) -> None:
    data = body + b"\r\n.\r\nQUIT\r\n"
    content, done, leftover, bare = feed_all(data, [])
    expected_content, expected_done, expected_leftover = reference(data)
    assert done and expected_done
    assert leftover == expected_leftover
    if not bare:
        assert content == expected_content


@given(body=stream_bytes, cuts=st.lists(st.integers(0, 80), max_size=10))
def test_normalize_mode_output_has_only_crlf_line_ends(body: bytes, cuts: list[int]) -> None:
    data = body + b"\r\n.\r\n"
    content, done, _, _ = feed_all(data, cuts, normalize=True)
    assert done
    assert content.count(b"\n") == content.count(b"\r\n") == content.count(b"\r")


def test_smuggling_variants_do_not_end_data() -> None:
    for marker in (b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r"):
        stream = DataStream()
        stream.feed(b"Subject: x\r\n\r\nbody" + marker + b"MAIL FROM:<e@x>\r\n")
        assert not stream.done, marker
        assert stream.bare_newline


def test_empty_message_and_leading_dot_line() -> None:
    assert DataStream().feed(b".\r\nQUIT\r\n") == (b"", b"QUIT\r\n")
    stream = DataStream()
    assert stream.feed(b"..\r\n.\r\n") == (b".\r\n", b"")


def test_header_scanner_counts_received_in_headers_only() -> None:
    scanner = HeaderScanner()
    scanner.feed(b"Received: a\r\nreceived: b\r\nSubj")
    scanner.feed(b"ect: x\r\n\r\nReceived: in the body\r\n")
    assert scanner.complete and scanner.received_count() == 2


def reference_stream(data: bytes, normalize: bool) -> tuple[bytes, bool, bytes, bool]:
    """RFC 5321 §4.5.2 on raw CRLF lines. A bare CR or LF is line content; when normalizing it ends a
    line for storage (as CRLF) and for unstuffing, never for the end of DATA."""
    out = bytearray()
    bare = False
    position = 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            return bytes(out), False, b"", bare
        line = data[position:end]
        position = end + 2
        if line == b".":
            return bytes(out), True, data[position:], bare
        if b"\r" in line or b"\n" in line:
            bare = True
        parts = re.split(rb"\r|\n", line) if normalize else [line]
        out += b"".join((part[1:] if part.startswith(b".") else part) + b"\r\n" for part in parts)


# Everything that can make a line start, an end marker or stuffing, plus ordinary bytes.
PIECES = [b"\r", b"\n", b".", b"\r\n", b"\n.", b"\r\n.", b".\r\n", b"\n.\r\n", b"a", b"M", b".."]
hostile_bytes = st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join)
chunkings = st.lists(st.integers(0, 120), max_size=12)


def check_same_in_every_chunking(body: bytes, cuts: list[int], normalize: bool, bytewise: bool = True) -> None:
    data = body + b"\r\n.\r\nNEXT"
    whole = feed_all(data, [], normalize)
    assert feed_all(data, cuts, normalize) == whole
    if bytewise:  # ... and every byte alone, the worst chunking of all
        assert feed_all(data, list(range(len(data))), normalize) == whole
    assert whole == reference_stream(data, normalize)


@pytest.mark.parametrize("normalize", [False, True], ids=["reject", "normalize"])
@settings(max_examples=5_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=hostile_bytes, cuts=chunkings)
def test_differential_any_chunking_same_messages(normalize: bool, body: bytes, cuts: list[int]) -> None:
    """Fed whole, in random chunks or byte by byte: the same content, end, leftover and bare-newline verdict."""
    check_same_in_every_chunking(body, cuts, normalize)




@pytest.mark.slow
@pytest.mark.parametrize("normalize", [False, True], ids=["reject", "normalize"])
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**64))
def test_differential_any_chunking_same_messages_million(normalize: bool, seed: int) -> None:
    """10⁶ streams: 2 modes × 500 seeds × 1,000 streams from a seeded generator (hypothesis' own generation
    would take ten times longer), each fed whole and in random chunks."""
    rng = random.Random(seed)
    for _ in range(1_000):
        body = b"".join(rng.choices(PIECES, k=rng.randrange(41)))
        cuts = [rng.randrange(121) for _ in range(rng.randrange(13))]
        try:
            check_same_in_every_chunking(body, cuts, normalize, bytewise=False)
        except AssertionError as error:
            raise AssertionError(f"body={body!r} cuts={cuts}") from error


def test_bare_lf_dot_crlf_split_after_the_next_byte_does_not_end_data() -> None:
    """The review's smuggling case: a read ending just after ``\\n.\\r\\nM`` must not end DATA."""
    stream = DataStream(normalize_bare_newlines=True)
    content, leftover = stream.feed(b"Subject: legit\r\n\r\nhello\n.\r\nM")
    assert not stream.done
    content2, leftover = stream.feed(b"AIL FROM:<spoof@bank.test>\r\n")
    assert not stream.done and leftover == b""
    content3, leftover = stream.feed(b"\r\n.\r\nQUIT\r\n")
    assert stream.done and leftover == b"QUIT\r\n"
    # One message: the bare LF became CRLF and the dot after it was unstuffed.
    assert content + content2 + content3 == b"Subject: legit\r\n\r\nhello\r\n\r\nMAIL FROM:<spoof@bank.test>\r\n\r\n"
