"""Test support for the security tests: trustme certificates, users files, raw TLS talk, a threaded engine."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from engine.conf.config import Config
from engine.events import Event
from engine.server import VirtualServer
from engine.smtpd.users import UserStore

FQDN = "mx.example.test"


@dataclass
class TlsFiles:
    ca: trustme.CA
    certificate: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def tls_files(directory: Path, name: str = FQDN, *, tag: str = "") -> TlsFiles:
    """A new CA and a server certificate for ``name`` (chain in one PEM, key in another)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(name, "127.0.0.1", "::1")
    certificate = directory / f"cert{tag}.pem"
    key = directory / f"key{tag}.pem"
    certificate.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return TlsFiles(ca, certificate, key)


def users_file(path: Path, accounts: dict[str, str]) -> Path:
    store = UserStore(path)
    for name, password in accounts.items():
        store.add(name, password)
    return path


def connect_from(port: int, source: str = "127.0.0.1", host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the engine from a chosen loopback address (127.0.0.2 is "another computer")."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((host, port))
    return sock


class Talk:
    """Line-level SMTP over a socket that may be switched to TLS (raw, so tests see every byte)."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock: socket.socket | ssl.SSLSocket = sock
        self.buffer = b""

    @classmethod
    def open(cls, port: int, source: str = "127.0.0.1") -> tuple[Talk, list[str]]:
        talk = cls(connect_from(port, source))
        return talk, talk.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the server; pending {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def reply(self) -> list[str]:
        lines = [self.line()]
        while lines[-1][3:4] == "-":
            lines.append(self.line())
        return lines

    def cmd(self, text: str) -> str:
        self.send(text.encode() + b"\r\n")
        return self.reply()[-1]

    def starttls(self, context: ssl.SSLContext, server_hostname: str = FQDN) -> None:
        assert not self.buffer, f"unread bytes before the handshake: {self.buffer!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def closed(self, timeout: float = 5.0) -> bool:
        """The server closed the connection (EOF, nothing more sent)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


class ThreadedServer:
    """A VirtualServer on its own loop in a thread, for synchronous tests (hypothesis, blocking clients)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="engine", daemon=True)
        self.server: VirtualServer | None = None
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def call(self, make: Callable[[], Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout)

    def start(self) -> ThreadedServer:
        self.thread.start()

        async def start() -> VirtualServer:
            server = VirtualServer(self.config)
            server.subscribe(self._on_event)
            await server.start()
            return server

        self.server = self.call(start)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.bound_addresses[0][1]

    def events_of(self, kind: type[Event]) -> list[Any]:
        with self._lock:
            return [event for event in self.events if isinstance(event, kind)]

    def stop(self) -> None:
        if self.server is not None:
            server = self.server
            self.call(server.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def threaded_server(config: Config) -> Iterator[ThreadedServer]:
    server = ThreadedServer(config).start()
    try:
        yield server
    finally:
        server.stop()
