"""Open relay from a non-loopback address: `smtpsvc serve` on this side of a veth pair, clients (Python's smtplib and
swaks) inside a network namespace of their own. No relay trick works for them; the same recipients in plain
form are accepted for the local domains; an authenticated client (STARTTLS + AUTH) may relay."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_support import Namespace, netns_unavailable, network_namespace
from serve_support import REPO, free_port

from engine.store.envelope import split_envelope

pytestmark = pytest.mark.skipif(bool(reason := netns_unavailable()), reason=reason or "")

SWAKS = shutil.which("swaks")
FQDN = "mx.example.test"
PASSWORD = "netns password"
TRICKS = [
    "<user%elsewhere.test@example.test>", "<@example.test:user@elsewhere.test>", "<elsewhere.test!user@example.test>",
    '<"user@elsewhere.test"@example.test>', "<user@elsewhere.test.>", "<user@example.test.>", "<user@[192.0.2.1]>",
    "<user@elsewhere.test>", "<user@relay-not-allowed.test>",
]
LOCAL = ["<user@example.test>", "<other@alias.test>"]

# Run inside the namespace: one session, the replies to each RCPT, as JSON on stdout.
CLIENT = r"""
import json, smtplib, ssl, sys
host, port, password, cafile, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
out = {}
with smtplib.SMTP(host, port, timeout=20) as client:
    client.ehlo("netns.test")
    if password:
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = False  # reached by its address; the chain is still verified
        client.starttls(context=context)
        client.ehlo("netns.test")
        client.login("alice", password)
    out["peer"] = client.sock.getsockname()[0]
    client.mail("sender@example.test")
    for rcpt in rcpts:
        code, text = client.docmd("RCPT TO:" + rcpt)
        out[rcpt] = f"{code} {text.decode()}"
    code, text = client.data(b"Subject: from the namespace\r\n\r\nhello\r\n")
    out["DATA"] = f"{code} {text.decode()}"
print(json.dumps(out))
"""


def cli(*args: str, stdin: str | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, input=stdin, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    with network_namespace() as ns:
        yield ns


@pytest.fixture
def served(tmp_path: Path, namespace: Namespace) -> Iterator[tuple[int, Path, Path]]:
    """`smtpsvc serve` on the host side of the pair (and loopback, to see that it is up)."""
    config = tmp_path / "smtpsvc.toml"
    for key, value in (("fqdn", FQDN), ("smart_host", "[127.0.0.1]:1"), ("auth_basic", "yes")):
        cli("config", "set", key, value, "--config", str(config))
    cli("config", "domain", "add", "alias.test", "--type", "alias", "--config", str(config))
    cli("cert", "new", "--config", str(config))
    cli("user", "add", "alice", "--password-stdin", "--config", str(config), stdin=PASSWORD + "\n")
    port = free_port()
    mailroot = tmp_path / "Mailroot"
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--config", str(config), "--mailroot", str(mailroot),
         "--listen", f"{namespace.host_address}:{port}", "--domain", "example.test"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with socket.create_connection((namespace.host_address, port), timeout=1) as sock:
                    if sock.recv(3) == b"220":
                        break
            except OSError:
                time.sleep(0.05)
        yield port, mailroot, tmp_path / "smtpsvc-cert.pem"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def run_client(ns: Namespace, port: int, rcpts: list[str], password: str = "", cafile: str = "") -> dict[str, str]:
    done = ns.run([sys.executable, "-c", CLIENT, ns.host_address, str(port), password, cafile, json.dumps(rcpts)])
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_no_relay_trick_works_from_another_computer(namespace: Namespace, served: tuple[int, Path, Path]) -> None:
    port, mailroot, cert = served
    anonymous = run_client(namespace, port, [*TRICKS, *LOCAL])
    assert anonymous["peer"] == namespace.client_address  # a real non-loopback client
    for rcpt in TRICKS:
        address = rcpt.strip("<>").split(":")[-1]
        assert anonymous[rcpt] == f"550 5.7.1 Unable to relay for {address}", rcpt
    for rcpt in LOCAL:
        assert anonymous[rcpt].startswith("250 2.1.5"), rcpt
    assert anonymous["DATA"].startswith("250 2.6.0")

    authenticated = run_client(namespace, port, [*TRICKS, *LOCAL], PASSWORD, str(cert))
    for rcpt in [*TRICKS, *LOCAL]:
        assert authenticated[rcpt].startswith("250 2.1.5"), rcpt
    assert authenticated["DATA"].startswith("250 2.6.0")

    drops = sorted(mailroot.glob("Drop/*.eml"))
    envelopes = [split_envelope(path.read_bytes()) for path in drops]
    anonymous_drop = [e for e in envelopes if len(e[1]) == 2]
    assert anonymous_drop and set(anonymous_drop[0][1]) == {"user@example.test", "other@alias.test"}
    received = drops[0].read_bytes()
    assert f"[{namespace.client_address}]".encode() in received


@pytest.mark.skipif(SWAKS is None, reason="swaks is installed by tests/run")
def test_swaks_from_the_namespace(namespace: Namespace, served: tuple[int, Path, Path]) -> None:
    port, _mailroot, cert = served
    assert SWAKS is not None
    common = [SWAKS, "--server", namespace.host_address, "--port", str(port), "--helo", "netns.test",
              "--from", "sender@example.test"]
    relay = namespace.run([*common, "--to", "user%elsewhere.test@example.test"])
    assert relay.returncode != 0 and "550 5.7.1 Unable to relay" in relay.stdout
    local = namespace.run([*common, "--to", "user@example.test"])
    assert local.returncode == 0, local.stdout
    no_tls = namespace.run([*common, "--to", "user@elsewhere.test", "--auth", "PLAIN", "--auth-user", "alice",
                            "--auth-password", PASSWORD])
    assert no_tls.returncode != 0  # AUTH is not offered in clear text
    authed = namespace.run([*common, "--to", "user@elsewhere.test", "--tls", "--tls-verify", "--tls-ca-path",
                            str(cert), "--tls-sni", FQDN, "--auth", "LOGIN", "--auth-user", "alice",
                            "--auth-password", PASSWORD])
    assert authed.returncode == 0, authed.stdout + authed.stderr
    assert "<~  235 2.7.0" in authed.stdout
