"""The cleanup process's wire format: commit requests and their answers as length-framed records (pure functions).

Pure stdlib and no engine imports: the cleanup process imports it at start without the engine's dependencies.
"""

from __future__ import annotations

import struct
from typing import Literal, NamedTuple

# A request: id, kind, flags, then the lengths of the source path, the target path and the bytes to write.
_REQUEST = struct.Struct("<IBBHHI")
# An answer: id, outcome, errno, length of the message.
_REPLY = struct.Struct("<IBiH")

Kind = Literal["create", "open", "prepare"]
Outcome = Literal["durable", "failed", "unavailable"]

# "create": the cleanup process creates the source (O_EXCL) and writes the bytes; "open": the source exists (a
# spilled spool whose descriptor the engine closed), the bytes are appended to it; "prepare": an empty spool is
# created for the engine to fill (a large message spills to it), nothing is moved (no target).
_KIND_CODES: dict[Kind, int] = {"create": 1, "open": 2, "prepare": 3}
_KINDS: dict[int, Kind] = {code: kind for kind, code in _KIND_CODES.items()}
# "unavailable": the spool is durable but could not be renamed into place (commit.TargetUnavailable).
_OUTCOME_CODES: dict[Outcome, int] = {"durable": 0, "failed": 1, "unavailable": 2}
_OUTCOMES: dict[int, Outcome] = {code: outcome for outcome, code in _OUTCOME_CODES.items()}
_SYNC = 1  # flag: fsync the file and its target directory (off only in tests of logic that never crash)
_MAX_MESSAGE = 1024  # an answer's error text is cut to this many bytes


class Request(NamedTuple):
    rid: int
    kind: Kind
    source: bytes  # file system paths, as os.fsencode gives them
    target: bytes
    data: bytes
    sync: bool


class Reply(NamedTuple):
    rid: int
    outcome: Outcome
    errno: int
    message: str


def encode_request(rid: int, kind: Kind, source: bytes, target: bytes, sync: bool,
                   data_length: int) -> bytes:
    """The record's head (the bytes to write follow it, ``data_length`` of them, sent as they are)."""
    return _REQUEST.pack(rid, _KIND_CODES[kind], _SYNC if sync else 0, len(source), len(target),
                         data_length) + source + target


def decode_requests(buffer: bytes | bytearray) -> tuple[list[Request], int]:
    """The whole requests at the start of ``buffer`` and how many bytes they took; raises ValueError on a record
    no engine sends (the stream is then unusable)."""
    found: list[Request] = []
    at, size = 0, len(buffer)
    while size - at >= _REQUEST.size:
        rid, code, flags, source_length, target_length, data_length = _REQUEST.unpack_from(buffer, at)
        kind = _KINDS.get(code)
        if kind is None or flags & ~_SYNC or not source_length or (not target_length) != (kind == "prepare"):
            raise ValueError(f"malformed commit request at byte {at} (kind {code}, flags {flags})")
        start = at + _REQUEST.size
        end = start + source_length + target_length + data_length
        if end > size:
            break
        target_at = start + source_length
        data_at = target_at + target_length
        found.append(Request(rid, kind, bytes(buffer[start:target_at]), bytes(buffer[target_at:data_at]),
                             bytes(buffer[data_at:end]), bool(flags & _SYNC)))
        at = end
    return found, at


def encode_reply(rid: int, outcome: Outcome, errno: int = 0, message: str = "") -> bytes:
    text = message.encode("utf-8", "replace")[:_MAX_MESSAGE]
    return _REPLY.pack(rid, _OUTCOME_CODES[outcome], errno, len(text)) + text


def decode_replies(buffer: bytes | bytearray) -> tuple[list[Reply], int]:
    """The whole answers at the start of ``buffer`` and how many bytes they took; ValueError on a bad record."""
    found: list[Reply] = []
    at, size = 0, len(buffer)
    while size - at >= _REPLY.size:
        rid, code, errno, length = _REPLY.unpack_from(buffer, at)
        outcome = _OUTCOMES.get(code)
        if outcome is None or length > _MAX_MESSAGE:
            raise ValueError(f"malformed commit answer at byte {at} (outcome {code})")
        end = at + _REPLY.size + length
        if end > size:
            break
        found.append(Reply(rid, outcome, errno, bytes(buffer[at + _REPLY.size:end]).decode("utf-8", "replace")))
        at = end
    return found, at
