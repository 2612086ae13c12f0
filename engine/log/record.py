"""One protocol-log record: an SMTP command and its reply, as a session reports it (no formatting here)."""

from __future__ import annotations

from typing import Literal, NamedTuple

Direction = Literal["in", "out"]


class ProtocolRecord(NamedTuple):
    """What a session knows about one command once its reply is sent (inbound) or received (outbound).

    ``argument`` is the raw argument: the log masks secrets (``formats.loggable_argument``) itself, so a
    session cannot forget to. ``reply`` is the last reply line (DATA's names the queue ID). A named tuple:
    one is made per SMTP command, and a frozen dataclass costs five times as much to create.
    """

    direction: Direction
    client_ip: str  # inbound: the client; outbound: the remote server (the IIS "c-ip" of outbound lines)
    username: str  # inbound: the HELO/EHLO name, as IIS logs it; outbound: "OutboundConnectionCommand"
    server_ip: str
    server_port: int
    verb: str
    argument: str
    reply: str
    sc_bytes: int
    cs_bytes: int
    time_taken_ms: int
