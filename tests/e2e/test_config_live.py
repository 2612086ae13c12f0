"""`smtpsvc config set` and `smtpsvc config domain ...` on a RUNNING `smtpsvc serve`: the engine changes at once
(through its control socket), the file is saved, and the Drop of each local domain follows its --drop-dir."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_support import REPO, ServeProcess, free_port

from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.conf.config_file import load_config, save_config


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    mailroot = tmp_path / "Mailroot"
    config = tmp_path / "smtpsvc.toml"
    # The file names the Mailroot, as an installed service's does: that is how `config` finds the engine.
    save_config(config, Config(server=ServerConfig(fqdn="mx.example.test"),
                               domains=(DomainConfig("example.test", "default"),), mailroot=str(mailroot)))
    process = ServeProcess(mailroot, free_port(), config)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def config(serve: ServeProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "config", "--config", str(serve.config), *argv],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=60, check=False)


def until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def send(port: int, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.sendmail("a@example.test", rcpts, b"From: a@example.test\r\nSubject: live\r\n\r\nbody\r\n")


def test_config_changes_reach_the_running_engine(serve: ServeProcess) -> None:
    done = config(serve, "set", "max_recipients", "1")
    assert (done.returncode, done.stdout, done.stderr) == (0, "Saved and applied to the running engine.\n", "")
    assert load_config(serve.config).server.max_recipients == 1
    with smtplib.SMTP("127.0.0.1", serve.port, timeout=20) as client:
        client.ehlo()
        client.mail("a@example.test")
        assert client.rcpt("b@example.test")[0] == 250
        assert client.rcpt("c@example.test")[0] == 452

    done = config(serve, "domain", "add", "alias.test", "--type", "alias", "--drop-dir", "AliasDrop")
    assert (done.returncode, done.stderr) == (0, "")
    send(serve.port, ["x@alias.test"])
    until(lambda: len(list((serve.mailroot / "AliasDrop").glob("*.eml"))) == 1)

    done = config(serve, "domain", "set", "alias.test", "--drop-dir", "Moved")
    assert done.returncode == 0, done.stderr
    send(serve.port, ["y@alias.test"])
    until(lambda: len(list((serve.mailroot / "Moved").glob("*.eml"))) == 1)
    assert [d.drop_dir for d in load_config(serve.config).domains if d.name == "alias.test"] == ["Moved"]

    refused = config(serve, "domain", "set", "alias.test", "--drop-dir", "Pickup")
    assert refused.returncode == 2 and "Pickup" in refused.stderr
    moved = config(serve, "set", "mailroot", str(serve.mailroot.parent / "Elsewhere"))
    assert moved.returncode == 0 and "takes effect when the running engine is restarted" in moved.stdout


def test_remote_domain_settings_reach_the_running_engine(serve: ServeProcess) -> None:
    """`config domain set` of a remote domain's TLS and Outbound Security, an engine running: the engine takes the
    change (domain.set over its control socket), then the file is saved; the password is read once."""
    assert config(serve, "domain", "add", "partner.test", "--type", "remote").returncode == 0
    done = subprocess.run([sys.executable, "-m", "app.cli", "config", "--config", str(serve.config), "domain", "set",
                           "partner.test", "--tls-required", "yes", "--outbound-auth", "basic", "--outbound-user",
                           "relay", "--outbound-password-stdin"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          input="relay-secret\n", capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "Saved and applied to the running engine.\n", "")
    [saved] = [d for d in load_config(serve.config).domains if d.name == "partner.test"]
    assert (saved.tls_required, saved.outbound_auth, saved.outbound_user, saved.outbound_password) == \
        (True, "basic", "relay", "relay-secret")
    refused = config(serve, "domain", "set", "partner.test", "--outbound-auth", "basic", "--outbound-user", "")
    assert refused.returncode == 2 and "needs a user name" in refused.stderr


def test_config_and_queue_find_an_engine_started_with_its_own_mailroot(tmp_path: Path) -> None:
    # The file names one Mailroot; `serve --mailroot` runs the engine on another.
    path = tmp_path / "smtpsvc.toml"
    save_config(path, Config(server=ServerConfig(fqdn="mx.example.test"),
                             domains=(DomainConfig("example.test", "default"),), mailroot=str(tmp_path / "Named")))
    process = ServeProcess(tmp_path / "Elsewhere", free_port(), path)
    process.start()
    try:
        done = config(process, "set", "max_recipients", "1")
        assert (done.returncode, done.stdout, done.stderr) == (0, "Saved and applied to the running engine.\n", "")
        with smtplib.SMTP("127.0.0.1", process.port, timeout=20) as client:
            client.ehlo()
            client.mail("a@example.test")
            assert client.rcpt("b@example.test")[0] == 250
            assert client.rcpt("c@example.test")[0] == 452  # the engine took it at once
        flushed = subprocess.run([sys.executable, "-m", "app.cli", "queue", "flush", "--config", str(path)],
                                 cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                                 text=True, timeout=60, check=False)
        assert (flushed.returncode, flushed.stdout) == (0, "0 messages due for delivery now\n"), flushed.stderr
    finally:
        assert process.stop() == 0
    assert not (tmp_path / ".smtpsvc.toml.engine").exists()  # the note goes with the engine
    done = config(process, "set", "max_recipients", "5")  # no engine: the file only
    assert (done.returncode, done.stderr) == (0, "") and "applied" not in done.stdout


def test_config_set_on_another_file_leaves_the_engine_on_that_mailroot_alone(serve: ServeProcess,
                                                                             tmp_path: Path) -> None:
    # A second file naming the same Mailroot (as a file that names none points at the user's default one):
    # the engine there serves the first file, so a change to the second is the file's only.
    other = tmp_path / "other.toml"
    save_config(other, Config(server=ServerConfig(fqdn="other.example.test"),
                              domains=(DomainConfig("example.test", "default"),), mailroot=str(serve.mailroot)))
    done = subprocess.run([sys.executable, "-m", "app.cli", "config", "--config", str(other), "set",
                           "max_recipients", "1"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "") and "applied" not in done.stdout
    assert load_config(other).server.max_recipients == 1
    with smtplib.SMTP("127.0.0.1", serve.port, timeout=20) as client:
        client.ehlo()
        client.mail("a@example.test")
        assert client.rcpt("b@example.test")[0] == 250
        assert client.rcpt("c@example.test")[0] == 250  # the running engine kept its own limit
