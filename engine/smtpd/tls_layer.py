"""Server-side TLS over memory buffers (``ssl.MemoryBIO``): bytes from the socket in, plaintext and bytes to send out.

The protocol owns the socket and passes every byte through this layer once TLS starts, so no byte can
slip past it whatever the event loop does between the STARTTLS reply (or the accept of an SMTPS
connection) and the handshake: ``loop.start_tls`` cannot promise that, uvloop delivers a ClientHello
that arrived with the connection to the protocol before any coroutine could switch it to TLS.
"""

from __future__ import annotations

import contextlib
import ssl

READ_SIZE = 256 * 1024


class TlsFailed(Exception):
    """The handshake or the record layer failed: close the connection, nothing to answer."""


class TlsLayer:
    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        self.closed = False  # the client sent close_notify

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Bytes from the socket -> (plaintext for the session, bytes to send back: handshake records)."""
        self._incoming.write(data)
        plain = bytearray()
        try:
            if not self.established:
                self.ssl_object.do_handshake()
                self.established = True
            while True:
                chunk = self.ssl_object.read(READ_SIZE)
                if not chunk:
                    self.closed = True
                    break
                plain += chunk
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLZeroReturnError:
            self.closed = True
        except ssl.SSLError as error:
            raise TlsFailed(str(error)) from error
        return bytes(plain), self._outgoing.read()

    def send(self, data: bytes) -> bytes:
        """Plaintext from the session -> bytes to write to the socket."""
        try:
            self.ssl_object.write(data)
        except ssl.SSLError as error:
            raise TlsFailed(str(error)) from error
        return self._outgoing.read()

    def close(self) -> bytes:
        """A close_notify to send, as far as the layer can say one now."""
        with contextlib.suppress(ssl.SSLError, ValueError):  # (it wants the client's close_notify: not waited for)
            self.ssl_object.unwrap()
        return self._outgoing.read()
