"""`smtpsvc cert` and `smtpsvc user` on a configuration file: what they write, where, with which permissions,
and how they refuse."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from app.cli import main
from engine.conf.config_file import load_config
from engine.smtpd.tls import server_context
from engine.smtpd.users import UserStore


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
        stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cert_new_writes_private_files_and_names_them(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf" / "smtpsvc.toml"
    code, out, _ = run(capsys, monkeypatch, "cert", "new", "--config", str(config), "--fqdn", "mx.lab.test",
                       "--name", "smtp.lab.test", "--days", "90")
    assert code == 0
    cert, key = tmp_path / "conf" / "smtpsvc-cert.pem", tmp_path / "conf" / "smtpsvc-key.pem"
    for path in (cert, key, config):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    server = load_config(config).server
    assert (server.tls_certificate, server.tls_key) == (str(cert), str(key))
    assert "names: mx.lab.test, smtp.lab.test" in out and "SHA-256: " in out
    server_context(str(cert), str(key))
    code, _, err = run(capsys, monkeypatch, "cert", "new", "--config", str(config))
    assert code == 1 and "--force replaces them" in err
    before = cert.read_bytes()
    code, _, _ = run(capsys, monkeypatch, "cert", "new", "--config", str(config), "--force", "--fqdn", "mx.lab.test")
    assert code == 0 and cert.read_bytes() != before
    code, out, _ = run(capsys, monkeypatch, "cert", "show", "--config", str(config))
    assert code == 0 and "the pair loads" in out and "(self-signed)" in out


def test_cert_show_without_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(capsys, monkeypatch, "cert", "show", "--config", str(tmp_path / "none.toml"))
    assert code == 1 and "smtpsvc cert new" in out


def test_user_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "smtpsvc.toml"
    code, _, err = run(capsys, monkeypatch, "user", "list", "--config", str(config))
    assert code == 2 and "no users file is configured" in err
    code, out, _ = run(capsys, monkeypatch, "user", "add", "alice", "--config", str(config), stdin="first pw\n")
    assert code == 0 and "auth_basic yes" in out
    users = tmp_path / "smtpsvc-users"
    assert load_config(config).server.users_file == str(users)
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert "first pw" not in users.read_text()
    code, _, err = run(capsys, monkeypatch, "user", "add", "ALICE", "--config", str(config), stdin="x\n")
    assert code == 2 and "exists already" in err
    code, _, _ = run(capsys, monkeypatch, "user", "passwd", "alice", "--password-stdin", "--config", str(config),
                     stdin="second pw\n")
    assert code == 0
    assert UserStore(users).check("alice", "second pw") and not UserStore(users).check("alice", "first pw")
    code, _, err = run(capsys, monkeypatch, "user", "add", "bob", "--config", str(config), stdin="\n")
    assert code == 2 and "empty" in err
    run(capsys, monkeypatch, "user", "add", "carol", "--config", str(config), stdin="c\n")
    code, out, _ = run(capsys, monkeypatch, "user", "list", "--config", str(config))
    assert out.split() == ["alice", "carol"]
    code, _, _ = run(capsys, monkeypatch, "user", "del", "carol", "--config", str(config))
    assert code == 0 and UserStore(users).names() == ["alice"]
    code, _, err = run(capsys, monkeypatch, "user", "del", "carol", "--config", str(config))
    assert code == 2 and "no user 'carol'" in err
