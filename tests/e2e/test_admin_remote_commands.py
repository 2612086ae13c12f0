"""`smtpsvc --connect`: every command that acts on a live engine, run against a real `smtpsvc serve` over HTTPS,
and every other command refused rather than run on this computer."""

from __future__ import annotations

import json
import os
import select
import smtplib
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from admin_support import OPERATORS, AdminServe, cli

from engine.conf.config_file import load_config
from engine.smtpd.users import UserStore


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AdminServe]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # this test's known_servers
    monkeypatch.setenv("SMTPSVC_PASSWORD", OPERATORS["boss"][0])
    with AdminServe(tmp_path / "a") as process:
        yield process


def queued_id(engine: AdminServe, capsys: pytest.CaptureFixture[str], remote: tuple[str, ...], subject: str) -> str:
    """Send a message that stays queued (its domain's smart host refuses connections); its queue ID."""
    with smtplib.SMTP("127.0.0.1", engine.port, timeout=10) as client:
        client.sendmail("ann@example.test", ["zed@partner.test"], f"Subject: {subject}\r\n\r\nhi\r\n".encode())
    assert cli(*remote, "track", "--subject", subject, "--json") == 0
    return str(json.loads(capsys.readouterr().out.splitlines()[0])["queue_id"])


def test_config_commands_remotely(engine: AdminServe, capsys: pytest.CaptureFixture[str]) -> None:
    remote = ("--connect", engine.url, "--user", "boss")
    assert cli(*remote, "config", "show", stdin="yes\n") == 0  # first use: the fingerprint confirmed, pinned
    assert "max_message_size_kb = 2048" in capsys.readouterr().out
    assert cli(*remote, "config", "set", "max_recipients", "42") == 0
    assert cli(*remote, "config", "show", "-n") == 0
    assert "max_recipients = 42" in capsys.readouterr().out
    assert cli(*remote, "config", "get", "max_recipients") == 0
    assert capsys.readouterr().out.strip() == "42"

    assert cli(*remote, "config", "domain", "add", "partner.test", "--type", "remote", "--relay") == 0
    assert cli(*remote, "config", "domain", "set", "partner.test", "--tls-required", "yes") == 0
    saved = {d.name: d for d in load_config(engine.config).domains}
    assert saved["partner.test"].tls_required and saved["partner.test"].relay_allowed
    assert cli(*remote, "config", "domain", "set", "partner.test", "--outbound-auth", "basic", "--outbound-user",
               "relay", "--outbound-password-stdin", stdin="relay-secret\n") == 0
    saved = {d.name: d for d in load_config(engine.config).domains}
    assert (saved["partner.test"].outbound_auth, saved["partner.test"].outbound_user,
            saved["partner.test"].outbound_password) == ("basic", "relay", "relay-secret")
    assert cli(*remote, "config", "domain", "set", "partner.test", "--outbound-auth", "anonymous") == 0
    saved = {d.name: d for d in load_config(engine.config).domains}
    assert (saved["partner.test"].outbound_auth, saved["partner.test"].outbound_user) == ("anonymous", "")
    capsys.readouterr()

    assert cli(*remote, "config", "domain", "set", "partner.test") == 2
    assert "nothing to change" in capsys.readouterr().err
    assert cli(*remote, "config", "domain", "set", "nowhere.test", "--tls-required", "yes") == 2
    assert "no domain named 'nowhere.test'" in capsys.readouterr().err
    assert cli(*remote, "config", "domain", "set", "partner.test", "--drop-dir", "Elsewhere") == 2
    assert "Only local domains" in capsys.readouterr().err

    assert cli(*remote, "config", "domain", "add", "local.test", "--type", "alias") == 0
    assert cli(*remote, "config", "domain", "set", "local.test", "--drop-dir", "LocalDrop") == 0
    assert cli(*remote, "config", "domain", "set-default", "local.test") == 0
    assert cli(*remote, "config", "domain", "delete", "partner.test") == 0
    saved = {d.name: d for d in load_config(engine.config).domains}
    assert "partner.test" not in saved and saved["local.test"].type == "default"
    assert saved["local.test"].drop_dir == "LocalDrop"
    assert cli(*remote, "config", "domain", "list") == 0
    listing = capsys.readouterr().out
    assert "local.test" in listing and "partner.test" not in listing

    assert cli(*remote, "events") == 0
    log = capsys.readouterr().out
    assert "domain.set" in log and "relay-secret" not in log  # audited, the password never


def test_queue_and_monitoring_commands_remotely(engine: AdminServe, capsys: pytest.CaptureFixture[str]) -> None:
    remote = ("--connect", engine.url, "--user", "boss")
    assert cli(*remote, "config", "domain", "add", "partner.test", "--type", "remote", "--relay", "--smart-host",
               "127.0.0.1:1", stdin="yes\n") == 0  # port 1: connections refused, mail stays queued
    assert f"Saved and applied to the engine at {engine.url}." in capsys.readouterr().out
    first = queued_id(engine, capsys, remote, "first")
    second = queued_id(engine, capsys, remote, "second")
    assert cli(*remote, "track", "--subject", "nothing-like-this") == 1

    assert cli(*remote, "queue", "list") == 0
    listing = capsys.readouterr().out
    assert first in listing and second in listing and "zed@partner.test" in listing
    assert cli(*remote, "queue", "show", first) == 0
    assert "Recipients:" in capsys.readouterr().out
    assert cli(*remote, "queue", "freeze", first) == 0
    assert cli(*remote, "queue", "list") == 0
    assert f"{first}!" in capsys.readouterr().out
    assert cli(*remote, "queue", "thaw", first) == 0
    assert cli(*remote, "queue", "flush", "--domain", "partner.test") == 0
    assert "due for delivery now" in capsys.readouterr().out
    assert cli(*remote, "queue", "bounce", second) == 0
    assert cli(*remote, "queue", "delete", first) == 0
    assert cli(*remote, "queue", "delete", "NOSUCHID") == 2
    capsys.readouterr()
    assert cli(*remote, "queue", "list") == 0
    listing = capsys.readouterr().out
    assert first not in listing and second not in listing

    assert cli(*remote, "counters", "--json") == 0
    assert json.loads(capsys.readouterr().out)["Messages Received Total"] >= 2
    assert cli(*remote, "events", "--json") == 0
    assert "queue.delete" in capsys.readouterr().out


def test_operator_commands_remotely(engine: AdminServe, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    remote = ("--connect", engine.url, "--user", "boss")
    assert cli(*remote, "operator", "list", stdin="yes\n") == 0
    out = capsys.readouterr().out
    assert "boss  (admin)" in out and "watcher  (viewer)" in out
    assert cli(*remote, "operator", "add", "carol", "--role", "viewer", "--password-stdin", stdin="carol-pw\n") == 0
    assert cli(*remote, "operator", "passwd", "carol", "--password-stdin", stdin="carol-pw2\n") == 0
    monkeypatch.setenv("SMTPSVC_PASSWORD", "carol-pw2")
    assert cli("--connect", engine.url, "--user", "carol", "operator", "list") == 0  # the new password works
    assert "carol  (viewer)" in capsys.readouterr().out
    assert cli("--connect", engine.url, "--user", "carol", "operator", "del", "watcher") == 1
    assert "viewer (read-only)" in capsys.readouterr().err
    monkeypatch.setenv("SMTPSVC_PASSWORD", OPERATORS["boss"][0])
    assert cli(*remote, "operator", "del", "boss") == 2
    assert "last admin operator" in capsys.readouterr().err
    assert cli(*remote, "operator", "role", "carol", "poster") == 0
    assert "carol is now poster at" in capsys.readouterr().out
    assert cli(*remote, "operator", "role", "boss", "viewer") == 2  # the last admin stays an admin
    assert "last admin operator" in capsys.readouterr().err
    assert cli(*remote, "operator", "list") == 0
    assert "carol  (poster)" in capsys.readouterr().out
    assert cli(*remote, "operator", "del", "carol") == 0
    assert "deleted carol" in capsys.readouterr().out
    assert cli(*remote, "operator", "list") == 0
    assert "carol" not in capsys.readouterr().out


def test_user_commands_remotely(engine: AdminServe, capsys: pytest.CaptureFixture[str]) -> None:
    remote = ("--connect", engine.url, "--user", "boss")
    assert cli(*remote, "user", "list", stdin="yes\n") == 2
    assert "no users file is configured" in capsys.readouterr().err
    # The first account makes the users file beside that server's configuration file and names it there.
    assert cli(*remote, "user", "add", "alice", "--password-stdin", stdin="first-secret\n") == 0
    users = engine.config.parent / "smtpsvc-users"  # a path on the engine's computer (this one, here)
    assert load_config(engine.config).server.users_file == str(users.resolve())
    assert UserStore(users).check("alice", "first-secret")
    assert cli(*remote, "user", "add", "bob", "--password-stdin", stdin="bob-secret\n") == 0
    assert cli(*remote, "user", "del", "bob") == 0
    assert cli(*remote, "user", "add", "alice", "--password-stdin", stdin="again\n") == 2
    assert "exists already" in capsys.readouterr().err
    assert cli(*remote, "user", "passwd", "alice", "--password-stdin", stdin="second-secret\n") == 0
    assert cli(*remote, "user", "list") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "alice"
    assert UserStore(users).check("alice", "second-secret")
    assert cli(*remote, "user", "del", "alice") == 0
    assert UserStore(users).names() == []
    assert cli(*remote, "events") == 0
    log = capsys.readouterr().out
    assert "users.passwd" in log and "second-secret" not in log


def test_log_commands_remotely(engine: AdminServe, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`smtpsvc --connect URL log path|tail` print what the same command prints on that computer (log.lines), for a
    viewer too; -n beyond the op's bound is refused, saying so; -f follows the file there."""
    monkeypatch.setenv("SMTPSVC_PASSWORD", OPERATORS["watcher"][0])
    remote = ("--connect", engine.url, "--user", "watcher")
    local = ("--config", str(engine.config))
    assert cli(*remote, "log", "tail", stdin="yes\n") == 1  # nothing logged yet: no file today
    assert "smtpsvc log: no protocol log yet: " in capsys.readouterr().err
    with smtplib.SMTP("127.0.0.1", engine.port, timeout=10) as client:
        client.sendmail("ann@example.test", ["bob@example.test"], b"Subject: logged\r\n\r\nhi\r\n")
    for _ in range(600):  # the writer coalesces its lines: wait for the QUIT's (bounded)
        assert cli("log", "tail", "-n", "1", *local) in (0, 1)
        if " QUIT " in capsys.readouterr().out:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the session's QUIT was never logged")
    assert cli("log", "path", *local) == 0
    here = capsys.readouterr().out
    assert cli(*remote, "log", "path") == 0
    assert capsys.readouterr().out == here
    for lines in (["-n", "3"], [], ["--lines", "500"]):
        assert cli("log", "tail", *lines, *local) == 0
        here = capsys.readouterr().out
        assert cli(*remote, "log", "tail", *lines) == 0
        assert capsys.readouterr().out == here
    assert len(here.splitlines()) > 5 and here.splitlines()[0].startswith("#Software:")
    assert cli(*remote, "log", "tail", "-n", "20000") == 1
    assert "log.lines: 'lines' must be at most 10000" in capsys.readouterr().err

    follower = Following(engine, "log", "tail", "-f", "-n", "1")
    try:
        follower.until(lambda line: " QUIT " in line)
        with smtplib.SMTP("127.0.0.1", engine.port, timeout=10) as client:
            client.ehlo("followed.test")
        follower.until(lambda line: " followed.test " in line and " EHLO " in line)
        follower.until(lambda line: " QUIT " in line)
    finally:
        follower.stop()


@pytest.mark.parametrize("command", [["serve"], ["cert", "show"], ["cert", "new"], ["desktop-entry"]])
def test_local_commands_refuse_connect(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 9: a command that tried to connect would fail differently.
    assert cli("--connect", "https://127.0.0.1:9", *command) == 2
    assert f"smtpsvc {command[0]}: acts on this computer's files only" in capsys.readouterr().err


def test_connect_refuses_local_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("--connect", "https://127.0.0.1:9", "--mailroot", str(tmp_path), "queue", "list") == 2
    assert "--mailroot names this computer's files" in capsys.readouterr().err
    assert cli("--connect", "https://127.0.0.1:9", "config", "show", "--config", str(tmp_path / "x.toml")) == 2
    assert "--config names this computer's files" in capsys.readouterr().err
    assert cli("--connect", "https://127.0.0.1:9", "--domain", "x.test", "queue", "flush") == 2
    assert "--domain names this computer's files" in capsys.readouterr().err
    # Without a command, --connect opens the manager window with that computer added beside this one
    # (tests/app/test_computers.py), so it is not refused here.


def test_operator_del_keeps_the_last_admin_locally_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(tmp_path / "smtpsvc.toml")
    for name, role in (("boss", "admin"), ("watcher", "viewer")):
        assert cli("operator", "add", name, "--role", role, "--password-stdin", "--config", config,
                   stdin="a-secret\n") == 0
    assert cli("operator", "del", "boss", "--config", config) == 2
    assert "boss is the last admin operator" in capsys.readouterr().err
    assert cli("operator", "role", "boss", "poster", "--config", config) == 2
    assert "boss is the last admin operator" in capsys.readouterr().err
    assert cli("operator", "role", "watcher", "poster", "--config", config) == 0
    assert cli("operator", "list", "--config", config) == 0
    assert "watcher  (poster)" in capsys.readouterr().out
    assert cli("operator", "del", "watcher", "--config", config) == 0
    assert cli("operator", "list", "--config", config) == 0
    assert capsys.readouterr().out.strip().endswith("boss  (admin)")


def test_operators_file_is_its_own_private_scrypt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "smtpsvc.toml"
    assert cli("operator", "add", "carol", "--password-stdin", "--config", str(config), stdin="carol-secret\n") == 0
    assert "added carol as admin" in capsys.readouterr().out  # --role defaults to admin
    path = Path(load_config(config).server.operators_file)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [record] = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert record.startswith("carol:admin:scrypt$") and "carol-secret" not in path.read_text()
    assert not load_config(config).server.users_file  # not an SMTP AUTH account
    assert cli("operator", "passwd", "carol", "--password-stdin", "--config", str(config), stdin="new-secret\n") == 0
    assert UserStore(path, roles=("admin", "viewer", "poster")).check("carol", "new-secret")
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal
        cli("operator", "add", "dan", "--role", "boss", "--password-stdin", "--config", str(config), stdin="x\n")
    assert refused.value.code == 2
    assert "invalid choice: 'boss'" in capsys.readouterr().err


class Following:
    """`smtpsvc --connect ... ARGS` left running (events -f, counters --watch); its lines read as they come."""

    def __init__(self, engine: AdminServe, *args: str) -> None:
        remote = ["--connect", f"https://localhost:{engine.admin_port}", "--user", "boss", "--cafile",
                  str(engine.config.parent / "smtpsvc-cert.pem")]
        self.errors = engine.config.parent / f"{args[0]}-stderr.txt"
        with open(self.errors, "w") as errors:
            self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", *remote, *args], stdout=subprocess.PIPE,
                                         stderr=errors, stdin=subprocess.DEVNULL,
                                         env=dict(os.environ, SMTPSVC_PASSWORD=OPERATORS["boss"][0]))
        self.lines: list[str] = []
        self._pending = b""  # read, not yet a whole line (select sees the pipe, not a reader's buffer)

    def until(self, check: Callable[[str], bool], timeout: float = 60.0) -> str:
        """The first line (from now on) for which ``check`` holds; bounded."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\n" in self._pending:
                raw, self._pending = self._pending.split(b"\n", 1)
                line = raw.decode()
                self.lines.append(line)
                if check(line):
                    return line
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"it ended: {self.errors.read_text()}"
                self._pending += chunk
        raise AssertionError(f"no such line in {self.lines}; its errors: {self.errors.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()  # by its PID
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_following_remotely(engine: AdminServe, capsys: pytest.CaptureFixture[str]) -> None:
    events = Following(engine, "events", "-f")
    counters = Following(engine, "counters", "--watch", "--json")
    try:
        events.until(lambda line: "admin server on https://" in line or "started" in line.lower())
        assert cli("--connect", engine.url, "--user", "boss", "config", "set", "max_recipients", "77",
                   stdin="yes\n") == 0
        events.until(lambda line: "Operator boss from 127.0.0.1: config.set max_recipients = 77." in line)
        before = json.loads(counters.until(lambda line: line.startswith("{")))["Messages Received Total"]
        with smtplib.SMTP("127.0.0.1", engine.port, timeout=10) as client:
            client.sendmail("ann@example.test", ["bob@example.test"], b"Subject: watched\r\n\r\nhi\r\n")
        counters.until(lambda line: json.loads(line)["Messages Received Total"] == before + 1)
    finally:
        events.stop()
        counters.stop()
