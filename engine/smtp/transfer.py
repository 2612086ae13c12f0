"""How a message goes to a hop: DATA or BDAT (RFC 3030), its BODY= parameter, and whether it is converted first."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Literal

Command = Literal["DATA", "BDAT"]
Body = Literal["", "8BITMIME", "BINARYMIME"]  # "" = no BODY= parameter

# A message larger than this goes in several BDAT chunks of this size, not in one. A receiver may hold a whole
# chunk before it answers it (RFC 3030 lets it), and after a refused chunk no more are sent (RFC 3030 §4.2),
# so a 20 MB message refused early does not cross the wire whole. Most mail is far smaller: one chunk.
CHUNK_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Hop:
    """What the next hop said in its EHLO reply that matters here."""

    chunking: bool = False
    binarymime: bool = False
    eightbitmime: bool = False

    @classmethod
    def of(cls, extensions: Container[str]) -> Hop:
        """From the EHLO keywords (lower-case names, as ``Connection.extensions`` keeps them)."""
        return cls("chunking" in extensions, "binarymime" in extensions, "8bitmime" in extensions)


@dataclass(frozen=True, slots=True)
class Transfer:
    command: Command
    body: Body
    convert: bool  # a BINARYMIME message made fit for a hop without it first (RFC 3030 §3); then ask again


def choose(hop: Hop, binary: bool, eight_bit: bool) -> Transfer:
    """The transfer of a message (``binary``: it came with BODY=BINARYMIME; ``eight_bit``: it has octets > 127).

    BDAT whenever the hop offers CHUNKING; BINARYMIME unconverted only with BDAT to a hop that offers both
    (RFC 3030 §3: BINARYMIME needs BDAT), else converted, and the converted message is asked about again.
    BODY=8BITMIME is said for 8-bit content when offered; 8-bit content to a hop without 8BITMIME goes as it is,
    as today (and as Postfix does by default)."""
    command: Command = "BDAT" if hop.chunking else "DATA"
    if binary:
        if hop.chunking and hop.binarymime:
            return Transfer("BDAT", "BINARYMIME", False)
        return Transfer(command, "", True)
    return Transfer(command, "8BITMIME" if eight_bit and hop.eightbitmime else "", False)


def chunk_spans(length: int, size: int = CHUNK_SIZE) -> list[tuple[int, int]]:
    """(start, end) of each BDAT chunk of a ``length``-octet message; an empty message is one empty chunk."""
    if size < 1:
        raise ValueError("chunk size must be positive")
    return [(start, min(start + size, length)) for start in range(0, length, size)] or [(0, 0)]
