"""Our side of an outbound SMTP connection after EHLO: MAIL/RCPT/DATA or BDAT pipelined when offered, RSET, QUIT.

The connection is opened, greeted, secured and authenticated by aiosmtplib; its transport is then handed to a
``Connection`` (``asyncio.BaseTransport.set_protocol``, public API of both), which sends a transaction's MAIL, RCPT
and DATA (or BDAT with its chunk, RFC 3030) in one write when the server offers PIPELINING, and reads their replies
together (aiosmtplib sends one command per round trip, cannot take replies that arrive together, and has no BDAT).
Replies are parsed by ``parse_replies``, a pure function.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import cast

MAX_LINE = 8192  # a reply line longer than this is no SMTP (RFC 5321 allows 512)
_FORBIDDEN = re.compile(rb"[\x00-\x1f\x7f]")  # in a command argument: CR/LF would inject commands
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    message: str  # the text of every line, joined by "\n" (as aiosmtplib's SMTPResponse)


class ReplyError(ValueError):
    """What the server sent is not an SMTP reply."""


def parse_replies(buffer: bytes | bytearray) -> tuple[list[Reply], int]:
    """The complete replies at the start of ``buffer`` and the number of bytes they take; a partial one is left.

    A line is ``DDD<sp>text`` (last line) or ``DDD-text`` (more follow), ended by LF (CRLF or a bare LF, as
    servers send); a line of just the code counts as a last line."""
    replies: list[Reply] = []
    consumed = 0
    start = 0
    lines: list[str] = []
    while True:
        end = buffer.find(b"\n", start)
        if end < 0:
            if len(buffer) - start > MAX_LINE:
                raise ReplyError("reply line too long")
            return replies, consumed
        if end - start > MAX_LINE:
            raise ReplyError("reply line too long")
        line = bytes(buffer[start:end]).rstrip(b"\r")
        start = end + 1
        code_text, separator = line[:3], line[3:4]
        if len(code_text) != 3 or not code_text.isdigit() or code_text[:1] not in b"12345" \
                or separator not in (b" ", b"-", b""):
            raise ReplyError(f"malformed reply line: {line[:80].decode('utf-8', 'replace')!r}")
        lines.append(line[4:].strip(b" \t").decode("utf-8", "surrogateescape"))
        if separator != b"-":
            replies.append(Reply(int(code_text), "\n".join(lines)))
            lines = []
            consumed = start


def command(verb: str, argument: str = "", options: Sequence[str] = (), encoding: str = "ascii") -> bytes:
    """One command line; ValueError for a control character (a CR/LF would smuggle in a command)."""
    text = " ".join([f"{verb} {argument}".rstrip() if argument else verb, *options])
    line = text.encode(encoding)
    if _FORBIDDEN.search(line):
        raise ValueError(f"control character in {verb} command")
    return line + b"\r\n"


def crlf_lines(content: bytes) -> bytes:
    """``content`` with every line end CRLF (a bare CR or LF made one): what DATA and a non-BINARYMIME BDAT carry."""
    crlf = content.count(b"\r\n")
    if content.count(b"\n") != crlf or content.count(b"\r") != crlf:  # (counts in C: a queued message is CRLF)
        content = _LINE_ENDINGS.sub(b"\r\n", content)
    return content


def data_block(content: bytes) -> bytes:
    """The message as sent after 354: CRLF line ends, leading dots doubled, ended by CRLF.CRLF (RFC 5321 4.5.2)."""
    content = crlf_lines(content)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    if content.startswith(b".") or b"\n." in content:
        content = _LEADING_DOT.sub(b"..", content)
    return content + b".\r\n"


def bdat_command(size: int, last: bool) -> bytes:
    """``BDAT <size> [LAST]`` (RFC 3030); the chunk's octets follow it as they are: no dot-stuffing, no end mark."""
    return b"BDAT %d%s\r\n" % (size, b" LAST" if last else b"")


class Connection(asyncio.Protocol):
    """An SMTP client connection past EHLO. Every command written has a waiter for its reply, in order."""

    def __init__(self, extensions: dict[str, str], timeout: float) -> None:
        self.extensions = {name.lower(): value for name, value in extensions.items()}
        self.timeout = timeout
        self._transport: asyncio.WriteTransport | None = None
        self._buffer = bytearray()
        self._waiters: deque[asyncio.Future[Reply]] = deque()
        self._early: deque[Reply] = deque()  # replies no command waits for yet (a 421 before shutting down)
        self._lost: Exception | None = None
        self._writable: asyncio.Future[None] | None = None

    @classmethod
    def take_over(cls, transport: asyncio.BaseTransport, extensions: dict[str, str], timeout: float) -> Connection:
        """Become the protocol of ``transport`` (between commands: nothing is left unread on it)."""
        connection = cls(extensions, timeout)
        transport.set_protocol(connection)
        connection.connection_made(transport)
        return connection

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.WriteTransport, transport)  # (uvloop's transports do not subclass it)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            replies, used = parse_replies(self._buffer)
        except ReplyError as error:
            self._fail(ConnectionError(f"bad reply from the server: {error}"))
            self.close()
            return
        del self._buffer[:used]
        for reply in replies:
            if not self._waiters:
                self._early.append(reply)
                continue
            waiter = self._waiters.popleft()
            if not waiter.done():  # (one given up on, cancelled, still takes its own reply)
                waiter.set_result(reply)

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost fails what still waits

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(exc if exc is not None else ConnectionResetError("the server closed the connection"))
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- use ---------------------------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    def send(self, *lines: bytes | memoryview, replies: int | None = None) -> list[asyncio.Future[Reply]]:
        """Write ``lines`` in one go; one reply future per line (or ``replies`` of them)."""
        if self._lost is not None or self._transport is None or self._transport.is_closing():
            raise ConnectionResetError(f"connection lost: {self._lost}" if self._lost else "connection lost")
        loop = asyncio.get_running_loop()
        futures = []
        for _ in range(len(lines) if replies is None else replies):
            future: asyncio.Future[Reply] = loop.create_future()
            if self._early:
                future.set_result(self._early.popleft())
            else:
                self._waiters.append(future)
            futures.append(future)
        self._transport.write(b"".join(lines))
        return futures

    async def writable(self) -> None:
        """Until the transport takes more (flow control), within the timeout; a timeout closes the connection.

        Chunks written one after another wait here, so that a large message never sits whole in the buffer."""
        if self._writable is None or self._writable.done():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._writable
        except BaseException:
            self.close()
            raise

    async def replies(self, futures: Sequence[asyncio.Future[Reply]]) -> list[Reply]:
        """The replies, in order; on a timeout or a lost connection the connection is closed and the error raised."""
        try:
            async with asyncio.timeout(self.timeout):
                if self._writable is not None and not self._writable.done():
                    await self._writable  # a large message waits for the socket rather than memory
                return [await future for future in futures]
        except BaseException:
            self.close()
            raise

    def deadline(self) -> _Deadline:
        """``async with connection.deadline():`` bounds every wait inside by one timeout (a timer per wait costs
        the loop more than the wait); any error inside closes the connection, which would be out of step."""
        return _Deadline(self)

    async def execute(self, *lines: bytes) -> list[Reply]:
        return await self.replies(self.send(*lines))

    async def quit(self, timeout: float | None = None) -> Reply | None:
        """QUIT and close; None when the server went away first."""
        try:
            if timeout is not None:
                async with asyncio.timeout(timeout):
                    reply = (await self.execute(b"QUIT\r\n"))[0]
            else:
                reply = (await self.execute(b"QUIT\r\n"))[0]
        except (OSError, TimeoutError):
            reply = None
        self.close()
        return reply

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._fail(ConnectionResetError("connection closed"))

    def _fail(self, error: Exception) -> None:
        if self._lost is None:
            self._lost = error
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: a pipelined reply nobody awaits any more is no warning


class _Deadline:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._timeout = asyncio.timeout(connection.timeout)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        try:
            await self._timeout.__aexit__(kind, error, trace)  # raises TimeoutError for an expired deadline
        finally:
            if kind is not None:
                self._connection.close()
