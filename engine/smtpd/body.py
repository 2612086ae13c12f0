"""An inbound message's body: DATA (dot-terminated) or BDAT chunks, read out of the input into its spool."""

from __future__ import annotations

from engine.cleanup.headers import HeaderScanner
from engine.cleanup.intake import DsnRequest, Intake, SpoolFile
from engine.smtpd.data_stream import DataStream
from engine.smtpd.machine import SmtpMachine
from engine.smtpd.received import protocol_name, received_header


class Body:
    """One transaction's message as it is read: its spool (None: refused, or it could not be opened, and what
    comes is only consumed), the header scan (for the hop count and message tracking), and its size without our
    Received header.

    Bytes beyond ``limit`` are counted, not kept: the machine refuses the message at its end.
    """

    def __init__(self, spool: SpoolFile | None = None, received: bytes = b"", limit: int = 0) -> None:
        self.spool = spool
        self.received = received  # our Received header (in the spool already; message tracking reads it)
        self.prefix = len(received)
        self.limit = limit
        self.headers = HeaderScanner()
        self.size = 0
        self.bare_newline = False
        self._stream: DataStream | None = None
        self._chunk_left = 0
        self._keep = False

    # -- DATA ---------------------------------------------------------------------------------------

    def begin_data(self, normalize_bare_newlines: bool) -> None:
        self._stream = DataStream(normalize_bare_newlines=normalize_bare_newlines)

    def feed_data(self, buffer: bytearray) -> bool:
        """Take what ``buffer`` holds; True once the end of data was read (what followed it stays in ``buffer``)."""
        stream = self._stream
        assert stream is not None
        content, leftover = stream.feed(bytes(buffer))
        buffer.clear()
        if content:
            self.size += len(content)
            if not self.limit or self.size <= self.limit:
                self._keep_bytes(content)
        if leftover:
            buffer += leftover  # commands pipelined after the end of DATA
        if not stream.done:
            return False
        self.bare_newline = stream.bare_newline
        self._stream = None
        return True

    # -- BDAT ---------------------------------------------------------------------------------------

    def begin_chunk(self, size: int, keep: bool) -> None:
        self._chunk_left = size
        self._keep = keep

    def feed_chunk(self, buffer: bytearray) -> bool:
        """Take this chunk's bytes out of ``buffer``; True once all of them were read."""
        take = min(self._chunk_left, len(buffer))
        if take:
            if self._keep and self.spool is not None:
                with memoryview(buffer) as view:
                    self._keep_bytes(bytes(view[:take]))
            del buffer[:take]
            self._chunk_left -= take
            self.size += take
        return not self._chunk_left

    # -- the spool ----------------------------------------------------------------------------------

    def _keep_bytes(self, data: bytes) -> None:
        self.headers.feed(data)
        if self.spool is not None:
            self.spool.write(data)

    def finish(self) -> None:
        """The body is complete: the spool learns its size (ours and the message's)."""
        if self.spool is not None:
            self.spool.size = self.size + self.prefix

    def drop(self) -> None:
        """The transaction failed (or the connection went): forget the message and its spool file."""
        spool, self.spool = self.spool, None
        self._stream = None
        if spool is not None:
            spool.discard()


def open_body(intake: Intake, machine: SmtpMachine, *, peer_ip: str, peer_name: str, fqdn: str,
              tls_info: str) -> Body:
    """The body of the machine's transaction, its spool started with the envelope and our Received header."""
    transaction = machine.transaction
    assert transaction is not None
    spool = intake.open_spool(transaction.sender, tuple(transaction.recipients))
    spool.dsn = DsnRequest(transaction.ret, transaction.envid, dict(transaction.rcpt_params))
    spool.binarymime = transaction.body_type == "BINARYMIME"
    received = received_header(
        helo=machine.helo or "",
        peer_ip=peer_ip,
        peer_name=peer_name,
        fqdn=fqdn,
        protocol=protocol_name(machine.extended, machine.tls_active, machine.authenticated),
        queue_id=spool.queue_id,
        recipients=transaction.recipients,
        tls_info=tls_info,
    )
    spool.write(received)
    return Body(spool, received, machine.message_limit)
