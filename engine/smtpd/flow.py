"""One inbound connection's bytes in and out: input waiting its turn, replies batched, and when reading pauses."""

from __future__ import annotations

import asyncio

from engine.smtpd.tls_layer import TlsFailed, TlsLayer

INPUT_HIGH_WATER = 1024 * 1024  # input buffered while the session waits before we stop reading


class Flow:
    """The connection's queues and pauses (no SMTP in here).

    Input waits in ``input`` while the session is busy (a check, a commit) and reading pauses once it passes
    ``INPUT_HIGH_WATER``; nothing is read either while the client does not read what we write. Replies wait
    in ``replies`` until ``flush`` writes them in one go: one write per batch of input (RFC 2920 PIPELINING).
    Once TLS starts (``tls``), every byte written goes through it.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tls: TlsLayer | None = None
        self.input = bytearray()
        self.replies: list[bytes] = []
        self.reading_paused = False
        self.writing_paused = False
        self.closing = False

    def hold(self) -> None:
        """Input arrived while the session cannot take it: stop reading once too much waits."""
        if len(self.input) > INPUT_HIGH_WATER:
            self.pause_reading()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closing:
            self.reading_paused = False
            self.transport.resume_reading()

    def flush(self) -> None:
        """Write the waiting replies in one write (none to a client in the middle of its TLS handshake)."""
        replies = self.replies
        if not replies:
            return
        data = b"".join(replies) if len(replies) > 1 else replies[0]
        replies.clear()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        tls = self.tls
        if tls is not None:
            if not tls.established:
                return
            try:
                data = tls.send(data)
            except TlsFailed:
                transport.close()
                return
        transport.write(data)

    def close(self) -> None:
        """The replies, TLS's close_notify, then the close."""
        self.flush()
        self.closing = True
        transport = self.transport
        if transport is not None:
            tls = self.tls
            if tls is not None and tls.established and not transport.is_closing():
                transport.write(tls.close())
            transport.close()

    def abort(self) -> None:
        """Close without another word (TLS broken, no handshake in time)."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()
