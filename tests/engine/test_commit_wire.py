"""The cleanup process's records: requests and answers framed, split anywhere, and refused when malformed."""

from __future__ import annotations

import struct

import pytest

from engine.cleanup.commit_wire import (
    Reply,
    Request,
    decode_replies,
    decode_requests,
    encode_reply,
    encode_request,
)


def _request(rid: int, kind: str = "create", source: bytes = b"/m/SortTemp/s.eml",
             target: bytes = b"/m/Drop/q.eml", data: bytes = b"body", sync: bool = True) -> bytes:
    return encode_request(rid, kind, source, target, sync, len(data)) + data  # type: ignore[arg-type]


REQUESTS = [
    # (what was sent, the requests decoded, bytes left over)
    (b"", [], 0),
    (_request(1), [Request(1, "create", b"/m/SortTemp/s.eml", b"/m/Drop/q.eml", b"body", True)], 0),
    (_request(7, "open", data=b"", sync=False),
     [Request(7, "open", b"/m/SortTemp/s.eml", b"/m/Drop/q.eml", b"", False)], 0),
    (_request(1) + _request(2, data=b"x" * 70000),
     [Request(1, "create", b"/m/SortTemp/s.eml", b"/m/Drop/q.eml", b"body", True),
      Request(2, "create", b"/m/SortTemp/s.eml", b"/m/Drop/q.eml", b"x" * 70000, True)], 0),
    (_request(1) + _request(2)[:5], [Request(1, "create", b"/m/SortTemp/s.eml", b"/m/Drop/q.eml", b"body", True)], 5),
    (_request(2)[:-1], [], _request(2)[:-1].__len__()),
    (_request(9, "prepare", target=b"", data=b"", sync=False),
     [Request(9, "prepare", b"/m/SortTemp/s.eml", b"", b"", False)], 0),
    (_request(0xFFFFFFFF, source="/m/é".encode(), target=b"/\xff/t"),
     [Request(0xFFFFFFFF, "create", "/m/é".encode(), b"/\xff/t", b"body", True)], 0),
]


@pytest.mark.parametrize(("stream", "expected", "left"), REQUESTS)
def test_requests_are_decoded_whole_and_a_partial_one_waits(stream: bytes, expected: list[Request],
                                                            left: int) -> None:
    found, used = decode_requests(bytearray(stream))
    assert found == expected
    assert len(stream) - used == left


def test_a_request_split_at_every_byte_decodes_the_same() -> None:
    stream = _request(3, data=b"a\r\nb") + _request(4, "open", data=b"")
    for cut in range(len(stream) + 1):
        first, used = decode_requests(stream[:cut])
        rest, used_rest = decode_requests(stream[used:])
        assert [r.rid for r in first + rest] == [3, 4]
        assert used + used_rest == len(stream)


BAD_REQUESTS = [
    struct.pack("<IBBHHI", 1, 9, 1, 1, 1, 0) + b"st",  # unknown kind
    struct.pack("<IBBHHI", 1, 1, 4, 1, 1, 0) + b"st",  # unknown flag
    struct.pack("<IBBHHI", 1, 1, 1, 0, 1, 0) + b"t",  # no source
    struct.pack("<IBBHHI", 1, 1, 1, 1, 0, 0) + b"s",  # no target
    struct.pack("<IBBHHI", 1, 3, 0, 1, 1, 0) + b"st",  # a target for a spool to prepare
]


@pytest.mark.parametrize("stream", BAD_REQUESTS)
def test_a_malformed_request_is_refused(stream: bytes) -> None:
    with pytest.raises(ValueError, match="malformed commit request"):
        decode_requests(stream)


REPLIES = [
    (encode_reply(1, "durable"), [Reply(1, "durable", 0, "")], 0),
    (encode_reply(2, "failed", 28, "No space left on device"), [Reply(2, "failed", 28, "No space left on device")], 0),
    (encode_reply(3, "unavailable", 2, "gone") + encode_reply(4, "durable"),
     [Reply(3, "unavailable", 2, "gone"), Reply(4, "durable", 0, "")], 0),
    (encode_reply(5, "failed", 5, "x" * 5000), [Reply(5, "failed", 5, "x" * 1024)], 0),  # the text is cut
    (encode_reply(6, "failed", 5, "half")[:-2], [], len(encode_reply(6, "failed", 5, "half")) - 2),
]


@pytest.mark.parametrize(("stream", "expected", "left"), REPLIES)
def test_replies_are_decoded_whole_and_a_partial_one_waits(stream: bytes, expected: list[Reply], left: int) -> None:
    found, used = decode_replies(stream)
    assert found == expected
    assert len(stream) - used == left


@pytest.mark.parametrize("stream", [struct.pack("<IBiH", 1, 7, 0, 0), struct.pack("<IBiH", 1, 0, 0, 5000)])
def test_a_malformed_reply_is_refused(stream: bytes) -> None:
    with pytest.raises(ValueError, match="malformed commit answer"):
        decode_replies(stream)
