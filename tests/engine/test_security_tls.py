"""STARTTLS against the real engine: offered only with a certificate, TLS 1.2+, require-TLS, injection closed,
state reset after the handshake, certificates reloaded without a restart, self-signed certificates."""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
import stat
import warnings
from pathlib import Path

import pytest
from engine_support import Running, start_server
from security_support import FQDN, Talk, TlsFiles, tls_files

from engine.events import ErrorEvent
from engine.smtpd.tls import TlsError, certificate_info, create_self_signed, server_context
from engine.store.envelope import split_envelope


def ehlo_lines(port: int) -> list[str]:
    talk, _ = Talk.open(port)
    lines = talk.send(b"EHLO client.test\r\n") or talk.reply()
    talk.close()
    return [line[4:] for line in lines]


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return tls_files(tmp_path / "tls")


async def test_no_certificate_no_starttls(running: Running) -> None:
    assert "STARTTLS" not in await asyncio.to_thread(ehlo_lines, running.port)

    def talk() -> str:
        client, _ = Talk.open(running.port)
        client.cmd("EHLO client.test")
        answer = client.cmd("STARTTLS")
        client.close()
        return answer

    assert await asyncio.to_thread(talk) == "454 4.7.0 TLS not available"


async def test_starttls_with_a_configured_certificate(config_factory, tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key)))
    try:
        lines = await asyncio.to_thread(ehlo_lines, running.port)
        assert "STARTTLS" in lines

        def send() -> tuple[str, list[str]]:
            with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                client.starttls(context=tls.client_context())
                version = client.sock.version()  # type: ignore[union-attr]
                _code, text = client.ehlo("client.test")
                client.sendmail("a@example.test", ["b@example.test"], b"Subject: tls\r\n\r\nover TLS\r\n")
                return str(version), text.decode().splitlines()

        version, after = await asyncio.to_thread(send)
        assert version in ("TLSv1.2", "TLSv1.3")
        assert "STARTTLS" not in after  # not offered twice
        [path] = running.drop_files()
        body = path.read_bytes()[split_envelope(path.read_bytes())[2]:]
        assert b"with ESMTPS id" in body
        assert f"(version={version} cipher=".encode() in body
    finally:
        await running.server.stop()


async def test_tls_below_1_2_is_refused(config_factory, tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key)))
    try:
        def old_client() -> None:
            context = tls.client_context()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.TLSv1
                context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("ALL:@SECLEVEL=0")
            with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                client.starttls(context=context)

        # The refusal as the client's OpenSSL words it: an alert, or the server closing ("closed (EOF)" is
        # Debian 12's own python3.11 with its system OpenSSL).
        refused = r"(?i)protocol version|unsupported protocol|EOF occurred|closed \(EOF\)"
        with pytest.raises(ssl.SSLError, match=refused):
            await asyncio.to_thread(old_client)
        await running.wait_for(lambda: len(running.server.sessions) == 0)
        assert not [e for e in running.events if isinstance(e, ErrorEvent)]
    finally:
        await running.server.stop()


async def test_require_tls_refuses_mail_before_starttls(config_factory, tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key),
                                                require_tls=True))
    try:
        def talk() -> list[str]:
            client, _ = Talk.open(running.port)
            replies = [client.cmd("EHLO client.test"), client.cmd("MAIL FROM:<a@example.test>"),
                       client.cmd("HELO client.test"), client.cmd("NOOP"), client.cmd("STARTTLS")]
            client.starttls(tls.client_context())
            replies += [client.cmd("EHLO client.test"), client.cmd("MAIL FROM:<a@example.test>")]
            client.close()
            return replies

        replies = await asyncio.to_thread(talk)
        assert replies[1] == "530 5.7.0 Must issue a STARTTLS command first"
        assert replies[2] == "530 5.7.0 Must issue a STARTTLS command first"
        assert replies[3].startswith("250 2.0.0")
        assert replies[4].startswith("220")
        assert replies[6].startswith("250 2.1.0")
    finally:
        await running.server.stop()


@pytest.mark.expect_errors
async def test_require_tls_without_a_certificate_accepts_no_mail(config_factory) -> None:
    running = await start_server(config_factory(require_tls=True))
    try:
        def talk() -> list[str]:
            client, _ = Talk.open(running.port)
            replies = [client.cmd("EHLO client.test"), client.cmd("STARTTLS"), client.cmd("MAIL FROM:<a@example.test>")]
            client.close()
            return replies

        replies = await asyncio.to_thread(talk)
        assert replies[1] == "454 4.7.0 TLS not available"
        assert replies[2].startswith("530 5.7.0")
        assert any("TLS is required" in e.message for e in running.events if isinstance(e, ErrorEvent))
    finally:
        await running.server.stop()


async def test_commands_pipelined_after_starttls_are_discarded(config_factory, tls: TlsFiles) -> None:
    """The STARTTLS injection class (CVE-2011-0411 and kin): clear-text bytes sent with STARTTLS never count."""
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key)))
    try:
        def talk() -> list[str]:
            client, _ = Talk.open(running.port)
            client.cmd("EHLO client.test")
            client.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<injected@example.test>\r\nRCPT TO:<b@example.test>\r\n")
            ready = client.line()
            client.starttls(tls.client_context())
            # Injected commands would be answered first: 250 Resetting, 250 Sender OK...
            replies = [ready, client.cmd("NOOP"), client.cmd("MAIL FROM:<a@example.test>"),
                       client.cmd("EHLO again.test"), client.cmd("MAIL FROM:<a@example.test>")]
            client.sock.settimeout(0.5)
            try:
                extra = client.sock.recv(100)
            except TimeoutError:
                extra = b""
            client.close()
            return [*replies, extra.decode()]

        ready, noop, mail_before_ehlo, ehlo, mail, extra = await asyncio.to_thread(talk)
        assert ready.startswith("220 ")
        assert noop == "250 2.0.0 OK"
        assert mail_before_ehlo == "503 5.5.1 Send HELO/EHLO first"  # the session started over
        assert ehlo.startswith("250 ")
        assert mail.startswith("250 2.1.0 <a@example.test>")
        assert extra == ""
    finally:
        await running.server.stop()


async def test_second_starttls_and_arguments_are_refused(config_factory, tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key)))
    try:
        def talk() -> list[str]:
            client, _ = Talk.open(running.port)
            client.cmd("EHLO client.test")
            replies = [client.cmd("STARTTLS now")]
            client.cmd("STARTTLS")
            client.starttls(tls.client_context())
            client.cmd("EHLO client.test")
            replies.append(client.cmd("STARTTLS"))
            client.close()
            return replies

        assert await asyncio.to_thread(talk) == ["501 5.5.4 Syntax: STARTTLS (no arguments)",
                                                 "503 5.5.1 TLS already active"]
    finally:
        await running.server.stop()


async def test_failed_handshake_closes_cleanly(config_factory, tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key)))
    try:
        def talk() -> bool:
            client, _ = Talk.open(running.port)
            client.cmd("EHLO client.test")
            client.cmd("STARTTLS")
            client.send(b"this is not a TLS client hello\r\n" * 4)
            closed = client.closed()
            client.close()
            return closed

        assert await asyncio.to_thread(talk)
        await running.wait_for(lambda: len(running.server.sessions) == 0)
        assert not [e for e in running.events if isinstance(e, ErrorEvent)]
        assert "STARTTLS" in await asyncio.to_thread(ehlo_lines, running.port)  # still serving
    finally:
        await running.server.stop()


def peer_certificate(port: int, context: ssl.SSLContext) -> bytes:
    client, _ = Talk.open(port)
    client.cmd("EHLO client.test")
    client.cmd("STARTTLS")
    client.starttls(context)
    assert isinstance(client.sock, ssl.SSLSocket)
    der = client.sock.getpeercert(binary_form=True)
    client.close()
    assert der is not None
    return der


@pytest.mark.expect_errors
async def test_certificate_replaced_on_disk_is_used_without_restart(tmp_path: Path, config_factory,
                                                                    tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key)))
    try:
        first = await asyncio.to_thread(peer_certificate, running.port, tls.client_context())
        renewed = tls_files(tmp_path / "renewed")
        os.replace(renewed.key, tls.key)
        os.replace(renewed.certificate, tls.certificate)
        second = await asyncio.to_thread(peer_certificate, running.port, renewed.client_context())
        assert first != second
        # A broken file: an event, no STARTTLS; the server goes on without TLS.
        tls.certificate.write_text("not a certificate\n")
        assert "STARTTLS" not in await asyncio.to_thread(ehlo_lines, running.port)
        errors = [e for e in running.events if isinstance(e, ErrorEvent) and e.source == "tls"]
        assert len(errors) == 1 and "cannot load the certificate" in errors[0].message
        assert "STARTTLS" not in await asyncio.to_thread(ehlo_lines, running.port)
        assert len([e for e in running.events if isinstance(e, ErrorEvent)]) == 1  # reported once
    finally:
        await running.server.stop()


async def test_certificate_path_changed_by_apply_config(tmp_path: Path, config_factory, tls: TlsFiles) -> None:
    from dataclasses import replace

    running = await start_server(config_factory())
    try:
        assert "STARTTLS" not in await asyncio.to_thread(ehlo_lines, running.port)
        config = running.server.config()
        await running.server.apply_config(replace(config, server=replace(
            config.server, tls_certificate=str(tls.certificate), tls_key=str(tls.key))))
        assert "STARTTLS" in await asyncio.to_thread(ehlo_lines, running.port)
        await asyncio.to_thread(peer_certificate, running.port, tls.client_context())
    finally:
        await running.server.stop()


def test_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "conf" / "cert.pem", tmp_path / "conf" / "key.pem"
    info = create_self_signed(FQDN, cert, key, days=30, extra_names=("mail.example.test",))
    for path in (cert, key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert info.names == (FQDN, "mail.example.test") and info.self_signed
    assert info.subject == f"CN={FQDN}"
    assert (info.not_after - info.not_before).days == 30
    assert certificate_info(cert) == info
    context = server_context(str(cert), str(key))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(TlsError, match="cannot load"):
        server_context(str(key))  # a key is no certificate
    assert not list(tmp_path.glob("conf/.*"))  # no temporary files left


# --- Implicit TLS (SMTPS) ---------------------------------------------------------------------------------


async def test_implicit_tls_listener(config_factory, tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key),
                                                tls_listen=("127.0.0.1:0",), auth_basic=True))
    try:
        plain_port, smtps_port = running.server.bound_addresses[0][1], running.server.bound_addresses[1][1]
        assert plain_port != smtps_port

        def send() -> list[str]:
            with smtplib.SMTP_SSL("127.0.0.1", smtps_port, timeout=10, context=tls.client_context()) as client:
                _code, text = client.ehlo("client.test")
                client.sendmail("a@example.test", ["b@example.test"], b"Subject: smtps\r\n\r\nimplicit\r\n")
                return text.decode().splitlines()

        lines = await asyncio.to_thread(send)
        assert "STARTTLS" not in lines and "AUTH PLAIN LOGIN" in lines  # TLS already: AUTH offered
        [path] = running.drop_files()
        assert b"with ESMTPS id" in path.read_bytes()
        [session_event] = [e for e in running.events if type(e).__name__ == "SessionOpened"][:1]
        assert session_event.peer == "127.0.0.1"
        await running.wait_for(lambda: len(running.server.sessions) == 0)
    finally:
        await running.server.stop()


async def test_implicit_tls_bad_clients_are_dropped(config_factory, tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key),
                                                tls_listen=("127.0.0.1:0",), connection_timeout=1))
    try:
        smtps_port = running.server.bound_addresses[1][1]

        def clients() -> tuple[bytes, bytes]:
            import socket

            with socket.create_connection(("127.0.0.1", smtps_port), timeout=10) as plain:
                plain.sendall(b"EHLO plain.test\r\n")  # clear text on a TLS port
                first = plain.recv(100)
            with socket.create_connection(("127.0.0.1", smtps_port), timeout=10) as silent:
                second = silent.recv(100)  # says nothing: dropped when the handshake time runs out
            return first, second

        assert await asyncio.to_thread(clients) == (b"", b"")
        await running.wait_for(lambda: len(running.server.sessions) == 0)
        snapshot = await running.server.counters_snapshot()
        assert snapshot["Inbound Connections Current"] == 0
        assert not [e for e in running.events if isinstance(e, ErrorEvent)]
    finally:
        await running.server.stop()


async def test_implicit_tls_without_certificate_closes(config_factory) -> None:
    running = await start_server(config_factory(tls_listen=("127.0.0.1:0",)))
    try:
        def connect() -> bytes:
            import socket

            with socket.create_connection(("127.0.0.1", running.server.bound_addresses[1][1]), timeout=10) as sock:
                return sock.recv(100)

        assert await asyncio.to_thread(connect) == b""
        await running.wait_for(lambda: len(running.server.sessions) == 0)
        assert (await running.server.counters_snapshot())["Inbound Connections Current"] == 0
    finally:
        await running.server.stop()


async def test_implicit_tls_limits_apply_before_the_handshake(config_factory, tls: TlsFiles) -> None:
    running = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key),
                                                tls_listen=("127.0.0.1:0",), max_connections=2))
    try:
        smtps_port = running.server.bound_addresses[1][1]

        def flood() -> list[bytes]:
            import socket

            socks = [socket.create_connection(("127.0.0.1", smtps_port), timeout=10) for _ in range(4)]
            try:
                socks[2].settimeout(5)
                socks[3].settimeout(5)
                return [socks[2].recv(10), socks[3].recv(10)]  # closed at once, no handshake started
            finally:
                for sock in socks:
                    sock.close()

        assert await asyncio.to_thread(flood) == [b"", b""]
        assert (await running.server.counters_snapshot())["Inbound Connections Refused"] == 2
        await running.wait_for(lambda: len(running.server.sessions) == 0)
    finally:
        await running.server.stop()
