"""The DATA state machine: chunking never changes the result; only CRLF.CRLF ends DATA."""

from __future__ import annotations

from hypothesis import given
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
