"""Security with clients no one here wrote, against `smtpsvc serve` (uvloop): a certificate made by `smtpsvc cert new`,
`openssl s_client -starttls smtp`, swaks with --tls and --auth for an account made by `smtpsvc user add`, and
the STARTTLS injection case with a raw socket."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from serve_support import REPO, ServeProcess, free_port

OPENSSL = shutil.which("openssl")
SWAKS = shutil.which("swaks")
FQDN = "mx.example.test"
PASSWORD = "s3cret pass"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, input=stdin, timeout=60)


def prepare(serve: ServeProcess) -> Path:
    """A configuration with a self-signed certificate, one account and Basic authentication, made by the CLI."""
    config = str(serve.config)
    # Remote mail goes to a smart host that refuses: nothing leaves the machine, not even a DNS query.
    for key, value in (("fqdn", FQDN), ("smart_host", "[127.0.0.1]:1"), ("auth_basic", "yes")):
        done = cli("config", "set", key, value, "--config", config)
        assert done.returncode == 0, done.stderr
    made = cli("cert", "new", "--config", config)
    assert made.returncode == 0, made.stderr
    assert f"CN={FQDN} (self-signed)" in made.stdout
    added = cli("user", "add", "alice", "--password-stdin", "--config", config, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    cert = serve.config.parent / "smtpsvc-cert.pem"
    assert cert.stat().st_mode & 0o777 == 0o600
    return cert


def s_client(port: int, cert: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}", "-brief",
                           "-CAfile", str(cert), "-verify_return_error", "-verify_hostname", FQDN, *extra],
                          input="QUIT\r\n", capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(OPENSSL is None, reason="openssl is installed by tests/run")
def test_openssl_s_client_starttls(serve: ServeProcess) -> None:
    cert = prepare(serve)
    serve.start()
    done = s_client(serve.port, cert)
    assert "Verification: OK" in done.stderr, done.stderr
    assert "Protocol version: TLSv1.3" in done.stderr
    tls12 = s_client(serve.port, cert, "-tls1_2")
    assert "Protocol version: TLSv1.2" in tls12.stderr, tls12.stderr
    old = s_client(serve.port, cert, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert "CONNECTION ESTABLISHED" not in old.stderr
    assert serve.stop() == 0


@pytest.mark.skipif(SWAKS is None, reason="swaks is installed by tests/run")
def test_swaks_tls_and_auth(serve: ServeProcess) -> None:
    cert = prepare(serve)
    serve.start()
    common = [SWAKS, "--server", "127.0.0.1", "--port", str(serve.port), "--helo", "swaks.test",
              "--from", "alice@example.test", "--to", "someone@elsewhere.test"]
    tls = ["--tls", "--tls-verify", "--tls-ca-path", str(cert), "--tls-sni", FQDN]

    def swaks(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*common, *args], capture_output=True, text=True, timeout=60)

    for mechanism in ("PLAIN", "LOGIN"):
        done = swaks(*tls, "--auth", mechanism, "--auth-user", "alice", "--auth-password", PASSWORD)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "<~  235 2.7.0 Authentication successful" in done.stdout
        assert "<~  250 2.6.0" in done.stdout  # relayed: queued for the remote domain
    plaintext = swaks("--auth", "PLAIN", "--auth-user", "alice", "--auth-password", PASSWORD)
    assert plaintext.returncode != 0 and "Host did not advertise authentication" in plaintext.stderr
    wrong = swaks(*tls, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong")
    assert wrong.returncode != 0 and "535 5.7.8" in wrong.stdout
    anonymous = swaks(*tls)
    assert anonymous.returncode != 0 and "550 5.7.1 Unable to relay for someone@elsewhere.test" in anonymous.stdout
    assert serve.stop() == 0
    assert PASSWORD not in serve.log.read_text()


def test_starttls_injection_with_uvloop(serve: ServeProcess) -> None:
    cert = prepare(serve)
    serve.start()
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        raw.sendall(b"EHLO client.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<injected@example.test>\r\n")
        assert reader.readline().startswith(b"220 ")
        with context.wrap_socket(raw, server_hostname=FQDN) as tls:
            tls.sendall(b"NOOP\r\n")
            assert tls.recv(100) == b"250 2.0.0 OK\r\n"  # not "250 2.0.0 Resetting": nothing injected
            tls.sendall(b"MAIL FROM:<a@example.test>\r\n")
            assert tls.recv(100).startswith(b"503 5.5.1 Send HELO/EHLO first")
    assert serve.stop() == 0


@pytest.mark.skipif(OPENSSL is None, reason="openssl is installed by tests/run")
def test_openssl_s_client_implicit_tls(serve: ServeProcess) -> None:
    cert = prepare(serve)
    smtps = free_port()
    done = cli("config", "set", "tls_listen", f"127.0.0.1:{smtps}", "--config", str(serve.config))
    assert done.returncode == 0, done.stderr
    serve.start()
    assert OPENSSL is not None
    talk = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{smtps}", "-CAfile", str(cert),
                           "-verify_return_error", "-verify_hostname", FQDN, "-crlf", "-quiet"],
                          input="EHLO openssl.test\nQUIT\n", capture_output=True, text=True, timeout=30)
    assert "220 mx.example.test" in talk.stdout, talk.stdout + talk.stderr
    assert "250-AUTH PLAIN LOGIN" in talk.stdout and "STARTTLS" not in talk.stdout
    assert "221 2.0.0" in talk.stdout
    assert serve.stop() == 0
