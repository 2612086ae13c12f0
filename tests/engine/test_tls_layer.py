"""TLS over memory buffers for inbound sessions: the layer alone against a real client SSLObject, and SMTPS
clients that speak before the greeting on both event loops (uvloop hands early bytes to the protocol)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop
from engine_support import make_config
from security_support import FQDN, ThreadedServer, tls_files

from engine.smtpd.tls import server_context
from engine.smtpd.tls_layer import TlsFailed, TlsLayer


def client_for(tmp_path: Path) -> tuple[TlsLayer, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    files = tls_files(tmp_path / "tls")
    layer = TlsLayer(server_context(str(files.certificate), str(files.key)))
    to_client, to_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = files.client_context().wrap_bio(to_client, to_server, server_hostname=FQDN)
    return layer, client, to_client, to_server


def handshake(layer: TlsLayer, client: ssl.SSLObject, to_client: ssl.MemoryBIO, to_server: ssl.MemoryBIO) -> None:
    for _ in range(10):
        try:
            client.do_handshake()
            return
        except ssl.SSLWantReadError:
            plain, records = layer.receive(to_server.read())
            assert plain == b""
            to_client.write(records)
    raise AssertionError("no handshake")


def test_layer_handshake_and_data_both_ways(tmp_path: Path) -> None:
    layer, client, to_client, to_server = client_for(tmp_path)
    handshake(layer, client, to_client, to_server)
    client.write(b"EHLO c\r\n")
    plain, records = layer.receive(to_server.read())  # the client's Finished, then its first data
    to_client.write(records)  # (TLS 1.3 session tickets)
    assert layer.established and plain == b"EHLO c\r\n"
    to_client.write(layer.send(b"250 ok\r\n"))
    assert client.read() == b"250 ok\r\n"
    assert layer.ssl_object.version() in ("TLSv1.2", "TLSv1.3")


def test_layer_refuses_garbage(tmp_path: Path) -> None:
    layer, *_ = client_for(tmp_path)
    with pytest.raises(TlsFailed):
        layer.receive(b"EHLO this is not TLS\r\n" * 4)


@pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_smtps_client_speaking_right_after_its_handshake(tmp_path: Path,
                                                         new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
    files = tls_files(tmp_path / "tls")
    config = make_config(tmp_path, tls_certificate=str(files.certificate), tls_key=str(files.key),
                         tls_listen=("127.0.0.1:0",))
    server = ThreadedServer(config)
    server.loop.close()
    server.loop = new_loop()
    server.thread = threading.Thread(target=server.loop.run_forever, name="engine", daemon=True)
    server.start()
    try:
        assert server.server is not None
        port = server.server.bound_addresses[1][1]
        context = files.client_context()
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname=FQDN) as sock:
                sock.sendall(b"EHLO early.test\r\nNOOP\r\nQUIT\r\n")  # before the greeting, with the handshake
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            lines = data.decode().split("\r\n")
            assert lines[0].startswith("220 mx.example.test")
            assert lines[-3].startswith("250 2.0.0") and lines[-2].startswith("221 2.0.0"), lines
    finally:
        server.stop()
