"""`smtpsvc --connect`: real `smtpsvc serve` engines administered over HTTPS, and everything they refuse."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import select
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from admin_support import OPERATORS, AdminServe, cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.admin.http_client import CLOSE_GRACE_S
from engine.conf.config_file import load_config


@pytest.fixture
def known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The known_servers file of this test's user (platformdirs follows XDG_CONFIG_HOME)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "smtpsvc" / "known_servers"


@pytest.fixture
def engine(admin_serve: AdminServe) -> AdminServe:
    return admin_serve


def as_operator(monkeypatch: pytest.MonkeyPatch, name: str, password: str | None = None) -> None:
    monkeypatch.setenv("SMTPSVC_PASSWORD", password if password is not None else OPERATORS[name][0])


def ehlo_size(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("admin.test")
        return int(client.esmtp_features["size"])


def test_admin_administers_queue_and_configuration(engine: AdminServe, known: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    as_operator(monkeypatch, "boss")
    remote = ("--connect", engine.url, "--user", "boss")
    assert cli(*remote, "queue", "list", stdin="no\n") == 1
    assert "not trusted" in capsys.readouterr().err and not known.exists()
    assert cli(*remote, "queue", "list", stdin="yes\n") == 0  # first use: fingerprint confirmed, then pinned
    out, err = capsys.readouterr()
    assert "Mail queue is empty" in out and "SHA-256 fingerprint" in err
    assert f"127.0.0.1:{engine.admin_port} " in known.read_text() and known.stat().st_mode & 0o777 == 0o600
    assert cli(*remote, "queue", "list") == 0  # pinned: no question asked
    capsys.readouterr()

    assert ehlo_size(engine.port) == 2048 * 1024
    assert cli(*remote, "config", "set", "max_message_size_kb", "1000") == 0
    assert capsys.readouterr().out == f"Saved and applied to the engine at {engine.url}.\n"
    assert ehlo_size(engine.port) == 1000 * 1024
    assert cli(*remote, "config", "get", "max_message_size_kb") == 0
    assert capsys.readouterr().out.strip() == "1000"
    stored = load_config(engine.config).server  # saved, without the command line's --listen override
    assert stored.max_message_size_kb == 1000 and stored.listen == ("127.0.0.1:2525",)

    assert cli(*remote, "config", "set", "max_message_size_kb", "-5") == 2
    assert "max_message_size_kb" in capsys.readouterr().err
    assert cli(*remote, "config", "domain", "add", "partner.test", "--type", "remote", "--relay") == 0
    assert cli(*remote, "config", "domain", "list") == 0
    assert "partner.test" in capsys.readouterr().out

    with smtplib.SMTP("127.0.0.1", engine.port, timeout=10) as client:
        client.sendmail("ann@example.test", ["bob@example.test"], b"Subject: tracked\r\n\r\nhi\r\n")
    assert cli(*remote, "track", "--recipient", "bob@example.test", "--json") == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["subject"] == "tracked"

    assert cli(*remote, "counters", "--json") == 0
    assert "Messages Received Total" in json.loads(capsys.readouterr().out)
    assert cli(*remote, "events") == 0
    assert "Operator boss from 127.0.0.1: config.set max_message_size_kb = 1000." in capsys.readouterr().out


def test_refusals_are_clear(engine: AdminServe, known: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    as_operator(monkeypatch, "boss", "not-the-password")
    assert cli("--connect", engine.url, "--user", "boss", "queue", "list", stdin="yes\n") == 1
    assert "wrong operator name or password" in capsys.readouterr().err

    as_operator(monkeypatch, "watcher")
    viewer = ("--connect", engine.url, "--user", "watcher")
    assert cli(*viewer, "queue", "list") == 0
    assert cli(*viewer, "config", "set", "max_message_size_kb", "10") == 1
    assert "watcher is a viewer (read-only)" in capsys.readouterr().err
    assert load_config(engine.config).server.max_message_size_kb == 2048

    assert cli("--connect", f"http://127.0.0.1:{engine.admin_port}", "--user", "boss", "queue", "list") == 1
    assert "127.0.0.1" in capsys.readouterr().err  # a TLS port answers no plain HTTP


def test_changed_certificate_is_refused(engine: AdminServe, known: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    as_operator(monkeypatch, "boss")
    remote = ("--connect", engine.url, "--user", "boss")
    assert cli(*remote, "queue", "list", stdin="yes\n") == 0
    engine.stop()
    assert cli("cert", "new", "--force", "--config", str(engine.config), "--fqdn", "localhost") == 0
    engine.start()
    capsys.readouterr()
    assert cli(*remote, "queue", "list", stdin="yes\n") == 1
    err = capsys.readouterr().err
    assert "has CHANGED" in err and str(known) in err


def test_plain_http_needs_loopback_and_the_option(tmp_path: Path, known: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    refused = AdminServe(tmp_path / "plain", certificate=False)
    with pytest.raises(RuntimeError):
        refused.start(timeout=10)
    refused.stop()
    assert "needs a certificate (TLS always)" in refused.log.read_text()

    as_operator(monkeypatch, "boss")
    with AdminServe(tmp_path / "loopback", certificate=False, plain_loopback=True) as plain:
        assert cli("--connect", f"http://127.0.0.1:{plain.admin_port}", "--user", "boss", "queue", "list") == 0
        assert "Mail queue is empty" in capsys.readouterr().out and not known.exists()
    # The client never sends a password in clear to another computer (refused before connecting).
    assert cli("--connect", "http://192.0.2.1:8443", "--user", "boss", "queue", "list") == 1
    assert "plain HTTP to 192.0.2.1 would send the password in clear: use https://" in capsys.readouterr().err


@pytest.mark.parametrize(("listen", "allowed"), [
    ("127.0.0.1:8443", True), ("[::1]:8443", True), ("localhost:8443", True), ("127.0.0.2:8443", True),
    ("0.0.0.0:8443", False), ("[::]:8443", False), ("192.0.2.1:8443", False), ("mx.example.test:8443", False),
])
def test_plain_http_only_on_a_loopback_address(listen: str, allowed: bool) -> None:
    from engine.admin.http_server import admin_tls
    from engine.conf.config import Config, ServerConfig
    from engine.errors import BindError

    with_option = Config(server=ServerConfig(admin_listen=listen, admin_allow_plain_loopback=True))
    if allowed:
        assert admin_tls(with_option) is None
    else:
        with pytest.raises(BindError, match="plain HTTP is allowed only on a loopback address"):
            admin_tls(with_option)
    with pytest.raises(BindError, match="needs a certificate"):  # without the option: never
        admin_tls(Config(server=ServerConfig(admin_listen=listen)))


async def test_api_refuses_bad_requests(engine: AdminServe) -> None:
    auth = {"Authorization": aiohttp.encode_basic_auth("boss", OPERATORS["boss"][0])}
    async with aiohttp.ClientSession(engine.url, headers=auth) as session:
        async def post(op: str, body: bytes, **headers: str) -> tuple[int, dict[str, object]]:
            headers.setdefault("Content-Type", "application/json")
            async with session.post(f"/api/v1/{op}", data=body, headers=headers, ssl=False) as response:
                return response.status, await response.json()

        status, reply = await post("state", b"{}")
        assert status == 200 and reply["ok"] is True
        status, reply = await post("state", b"{not json")
        assert status == 400 and "not a JSON request body" in json.dumps(reply)
        status, reply = await post("config.set", b'{"key": "x"}')
        assert status == 400 and "'value' is required" in json.dumps(reply)
        status, reply = await post("state", b'["not", "an", "object"]')
        assert status == 400 and "must be a JSON object" in json.dumps(reply)
        status, reply = await post("queue.list", b'{"limit": "lots"}')
        assert status == 400 and "queue.list: 'limit' must be a whole number >= 0" in json.dumps(reply)
        status, reply = await post("queue.list", b'{"limit": 5, "surprise": 1}')
        assert status == 400 and "queue.list: unknown argument 'surprise'" in json.dumps(reply)
        status, reply = await post("state", b"[" * 100_000 + b"]" * 100_000)  # deep, within the size limit
        assert status == 400 and "not a JSON request body" in json.dumps(reply)
        status, reply = await post("config.replicate", b'{"settings": {"server": {"tls_certificate": "/x.pem"}}}')
        assert status == 400 and "is specific to each computer and is never replicated" in json.dumps(reply)
        status, reply = await post("no.such.op", b"{}")
        assert status == 404 and "unknown op" in json.dumps(reply)
        status, reply = await post("state", b'{"pad": "' + b"x" * 300_000 + b'"}')
        assert status == 413 and "larger than" in json.dumps(reply)
        status, reply = await post("state", b"{}", **{"Content-Type": "text/plain"})
        assert status == 415
        status, reply = await post("server.pause", b"{}", Origin="https://evil.example")
        assert status == 403 and "cross-site request" in json.dumps(reply)
        async with session.get("/api/v1/events", ssl=False) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            status, reply = await post("config.set", b'{"key": "max_recipients", "value": "50"}')
            assert status == 200
            seen = []
            async for line in response.content:
                if line.startswith(b"data:"):
                    seen.append(json.loads(line[5:]))
                    if seen[-1]["type"] == "AdminAction":
                        break
            assert seen[-1]["operator"] == "boss" and seen[-1]["op"] == "config.set"
            assert "max_recipients = 50" in seen[-1]["detail"]
        status, reply = await post("events.list", b"{}")
        texts = [entry["text"] for entry in reply["result"]]  # type: ignore[union-attr]
        assert "Operator boss from 127.0.0.1: config.set max_recipients = 50." in texts
        assert "Changed by boss (remote, 127.0.0.1): server.max_recipients." in texts  # who, beside what
        async with session.get("/static/", ssl=False) as response:
            assert response.status in (403, 404)  # no directory listing
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    async with aiohttp.ClientSession(engine.url) as anonymous, \
            anonymous.post("/api/v1/state", json={}, ssl=False) as response:
        assert response.status == 401 and "Basic" in response.headers["WWW-Authenticate"]


def expired_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost that expired yesterday, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=30))
                   .not_valid_after(now - datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "expired-cert.pem", directory / "expired-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_expired_certificate_is_refused(tmp_path: Path, known: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = AdminServe(tmp_path / "old")
    cert, key = expired_certificate(tmp_path)
    for option, value in (("admin_tls_certificate", cert), ("admin_tls_key", key)):
        assert cli("config", "set", option, str(value), "--config", str(engine.config)) == 0
    engine.start()
    try:
        as_operator(monkeypatch, "boss")
        capsys.readouterr()
        assert cli("--connect", engine.url, "--user", "boss", "queue", "list", stdin="yes\n") == 1
        assert "expired on" in capsys.readouterr().err and not known.exists()
    finally:
        engine.stop()


async def test_operators_managed_remotely(engine: AdminServe) -> None:
    async def post(user: str, password: str, op: str, args: dict[str, object]) -> tuple[int, dict[str, object]]:
        headers = {"Authorization": aiohttp.encode_basic_auth(user, password)}
        async with aiohttp.ClientSession(engine.url, headers=headers) as session, \
                session.post(f"/api/v1/{op}", json=args, ssl=False) as response:
            return response.status, await response.json()

    boss = ("boss", OPERATORS["boss"][0])
    status, reply = await post(*boss, "operators.add", {"name": "carol", "password": "carol-pw", "role": "viewer"})
    assert status == 200
    status, reply = await post("carol", "carol-pw", "operators.list", {})
    assert {"name": "carol", "role": "viewer"} in reply["result"]  # type: ignore[operator]
    status, reply = await post("carol", "carol-pw", "operators.add", {"name": "eve", "password": "x"})
    assert status == 403 and "viewer (read-only)" in json.dumps(reply)
    status, reply = await post(*boss, "operators.delete", {"name": "boss"})
    assert status == 409 and "last admin operator" in json.dumps(reply)
    status, reply = await post(*boss, "events.list", {})
    texts = " ".join(entry["text"] for entry in reply["result"])  # type: ignore[union-attr]
    assert "operators.add" in texts and "carol-pw" not in texts  # audited, the password never
    status, reply = await post(*boss, "operators.delete", {"name": "carol"})
    assert status == 200
    status, reply = await post("carol", "carol-pw", "state", {})
    assert status == 401


def test_cafile_and_the_system_store_are_trusted_without_asking(engine: AdminServe, known: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    as_operator(monkeypatch, "boss")
    issuer = str(engine.config.parent / "smtpsvc-cert.pem")  # self-signed for localhost: its own authority
    by_name = f"https://localhost:{engine.admin_port}"
    # No answer on stdin: a question about the fingerprint would be refused.
    assert cli("--connect", by_name, "--user", "boss", "--cafile", issuer, "queue", "list") == 0
    out, err = capsys.readouterr()
    assert "Mail queue is empty" in out and "fingerprint" not in err and not known.exists()

    assert cli("--connect", engine.url, "--user", "boss", "--cafile", issuer, "queue", "list") == 1
    assert "is not valid for 127.0.0.1 or not issued by a certificate authority in" in capsys.readouterr().err
    other, _ = expired_certificate(tmp_path)
    assert cli("--connect", by_name, "--user", "boss", "--cafile", str(other), "queue", "list") == 1
    assert f"not issued by a certificate authority in {other}" in capsys.readouterr().err
    assert cli("--connect", by_name, "--user", "boss", "--cafile", str(tmp_path / "none.pem"), "queue", "list") == 1
    assert "cannot use --cafile" in capsys.readouterr().err

    monkeypatch.setenv("SSL_CERT_FILE", issuer)  # the system store (OpenSSL's default file) now holds it
    assert cli("--connect", by_name, "--user", "boss", "counters", "--json") == 0
    out, err = capsys.readouterr()
    assert "Messages Received Total" in out and "fingerprint" not in err and not known.exists()


def on_a_terminal(argv: list[str], env: dict[str, str], answer: bytes, prompt: bytes) -> tuple[int, bytes]:
    """Run ``argv`` with a pseudo-terminal as its stdin, stdout and stderr (a session of its own, no fork of this
    threaded process); type ``answer`` after ``prompt``. Returns the exit status and all the terminal showed."""
    master, slave = os.openpty()
    try:
        child = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    finally:
        os.close(slave)
    shown = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if child.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if not answered and prompt in shown:
                os.write(master, answer)
                answered = True
    finally:
        os.close(master)
    return child.wait(timeout=60), shown


def test_password_asked_on_the_terminal(engine: AdminServe, known: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SMTPSVC_PASSWORD"}
    env["XDG_CONFIG_HOME"] = str(known.parent.parent)
    argv = [sys.executable, "-m", "app.cli", "--connect", f"https://localhost:{engine.admin_port}", "--user", "boss",
            "--cafile", str(engine.config.parent / "smtpsvc-cert.pem"), "queue", "list"]
    password = OPERATORS["boss"][0]
    code, shown = on_a_terminal(argv, env, password.encode() + b"\n", b"Password of operator boss at ")
    assert code == 0 and b"Mail queue is empty" in shown, shown
    assert password.encode() not in shown  # not echoed
    code, shown = on_a_terminal(argv, env, b"wrong\n", b"Password of operator boss at ")
    assert code == 1 and b"wrong operator name or password" in shown, shown


@pytest.fixture
def locking(tmp_path: Path) -> AdminServe:
    """Not started: an engine that locks an address out after three failed logins (made before the test's loop
    runs: the command line runs a loop of its own)."""
    engine = AdminServe(tmp_path / "locks")
    for option, value in (("auth_lockout_failures", "3"), ("auth_lockout_seconds", "600"),
                          ("auth_failure_delay_ms", "0")):
        assert cli("config", "set", option, value, "--config", str(engine.config)) == 0
    return engine


async def test_failed_logins_lock_the_address_out(locking: AdminServe) -> None:
    engine = locking
    right, wrong = aiohttp.encode_basic_auth("boss", OPERATORS["boss"][0]), aiohttp.encode_basic_auth("boss", "no")

    async def state(authorization: str, source: str = "127.0.0.1") -> tuple[int, str]:
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with aiohttp.ClientSession(engine.url, connector=connector) as session, \
                session.post("/api/v1/state", json={}, headers={"Authorization": authorization},
                             ssl=False) as response:
            return response.status, await response.text()

    with engine:
        assert (await state(wrong))[0] == 401
        assert (await state(wrong))[0] == 401
        status, text = await state(wrong)
        assert status == 403 and "127.0.0.1 is now locked out for 600 seconds" in text
        status, text = await state(right)  # the right password, from the locked-out address: refused
        assert status == 403 and "too many failed logins from 127.0.0.1" in text
        assert (await state(right, "127.0.0.2"))[0] == 200  # another address is not locked out
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(engine.url, connector=connector) as session, \
                session.post("/api/v1/events.list", json={}, headers={"Authorization": right}, ssl=False) as response:
            texts = [entry["text"] for entry in (await response.json())["result"]]
        assert any(t.startswith("127.0.0.1 is locked out after 3 failed logins") for t in texts), texts
        assert any(t.startswith("A login from 127.0.0.1 was refused: locked out") for t in texts), texts


async def test_hostile_names_and_too_many_streams(engine: AdminServe) -> None:
    """Folder item names that try to leave their folder are refused (the operators file is never served), and
    event streams are bounded."""
    auth = {"Authorization": aiohttp.encode_basic_auth("boss", OPERATORS["boss"][0])}
    secrets = ("smtpsvc-operators", "smtpsvc-key.pem", "smtpsvc.toml")
    async with aiohttp.ClientSession(engine.url, headers=auth) as session:
        for op, name in [("badmail.read", "../../smtpsvc-operators"), ("badmail.read", "/etc/passwd"),
                         ("drop.read", "../../smtpsvc-key.pem"), ("drop.read", "../smtpsvc.toml"),
                         ("drop.read", "example.test/../../../smtpsvc.toml"), ("badmail.delete", "../../smtpsvc.toml"),
                         ("drop.delete", "../../smtpsvc-operators"), ("badmail.resend", "../../smtpsvc.toml"),
                         ("drop.resend", "../../smtpsvc-operators"),
                         ("drop.read", "..")]:
            async with session.post(f"/api/v1/{op}", json={"name": name}, ssl=False) as response:
                text = await response.text()
                assert response.status in (400, 404), (op, name, response.status, text)
                assert "scrypt$" not in text and "PRIVATE KEY" not in text and "[server]" not in text
        for path in ("/badmail/..%2F..%2Fsmtpsvc-operators", "/drop/..%2Fsmtpsvc.toml",
                     "/drop/x?domain=..%2F..", "/static/..%2F..%2F..%2Fsmtpsvc-operators", "/static/%2e%2e/x"):
            async with session.get(path, ssl=False, headers={"Accept": "text/html"}) as response:
                text = await response.text()
                assert response.status in (400, 403, 404), (path, response.status)
                assert "scrypt$" not in text and "PRIVATE KEY" not in text and "[server]" not in text
        assert all((engine.config.parent / name).exists() for name in secrets)

        async with contextlib.AsyncExitStack() as streams:
            for _ in range(32):
                response = await streams.enter_async_context(session.get("/api/v1/events", ssl=False))
                assert response.status == 200
                await response.content.readline()  # the stream is open on the server
            async with session.get("/api/v1/events", ssl=False) as refused:
                assert refused.status == 503 and "too many event streams" in await refused.text()
    # The TLS connections finish closing on the next turns of the loop (aiohttp's advice): without them, 32
    # sockets were left for the garbage collector, and the next test failed on their ResourceWarnings.
    await asyncio.sleep(CLOSE_GRACE_S)
