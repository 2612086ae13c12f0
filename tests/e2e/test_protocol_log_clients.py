"""The protocol log of `smtpsvc serve` with clients no one here wrote (swaks with AUTH, smtp-source), in all three
formats: every line parses, no password or AUTH blob anywhere, and `smtpsvc log path|tail` find the file."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serve_support import REPO, ServeProcess

from engine.log import formats

SWAKS = shutil.which("swaks")
SMTP_SOURCE = shutil.which("smtp-source", path="/usr/sbin:/usr/bin:/sbin:/bin")
PASSWORD = "Tr0ub4dor&3 horse"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, input=stdin, timeout=60)


def configure(serve: ServeProcess, fmt: str) -> None:
    config = str(serve.config)
    for key, value in (("fqdn", "mx.example.test"), ("smart_host", "[127.0.0.1]:1"), ("auth_basic", "yes"),
                       ("auth_plaintext_allowed", "yes"), ("log_format", fmt)):
        done = cli("config", "set", key, value, "--config", config)
        assert done.returncode == 0, done.stderr
    added = cli("user", "add", "alice", "--password-stdin", "--config", config, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr


def entries(fmt: str, lines: list[str]) -> list[dict[str, str]]:
    if fmt == "w3c":
        return formats.parse_w3c(lines)
    parser = formats.parse_ncsa if fmt == "ncsa" else formats.parse_iis
    return [parser(line) for line in lines]


@pytest.mark.skipif(SWAKS is None or SMTP_SOURCE is None, reason="swaks and smtp-source are installed by tests/run")
@pytest.mark.parametrize("fmt", ["w3c", "ncsa", "iis"])
def test_real_clients_logged_in_every_format(serve: ServeProcess, fmt: str) -> None:
    assert SWAKS is not None and SMTP_SOURCE is not None
    configure(serve, fmt)
    serve.start()
    for mechanism in ("PLAIN", "LOGIN"):
        done = subprocess.run([SWAKS, "--server", "127.0.0.1", "--port", str(serve.port), "--helo", "swaks.test",
                               "--from", "a@example.test", "--to", "b@example.test", "--auth", mechanism,
                               "--auth-user", "alice", "--auth-password", PASSWORD],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    source = subprocess.run([SMTP_SOURCE, "-s", "5", "-m", "20", "-l", "2000", "-f", "load@example.test",
                             "-t", "sink@example.test", f"127.0.0.1:{serve.port}"],
                            capture_output=True, text=True, timeout=120)
    assert source.returncode == 0, source.stdout + source.stderr
    assert serve.stop() == 0  # the writer flushes at stop
    path = cli("log", "path", "--config", str(serve.config))
    assert path.returncode == 0, path.stderr
    log_file = Path(path.stdout.strip())
    assert log_file.parent == serve.config.parent / "Logs" / "SMTPSVC1"
    assert log_file.name[:2] == {"w3c": "ex", "ncsa": "nc", "iis": "in"}[fmt]
    lines = log_file.read_text("utf-8").splitlines()
    parsed = entries(fmt, lines)
    methods = [e["cs-method"] for e in parsed]
    assert methods.count("DATA") == 22 and methods.count("AUTH") == 2
    assert {e["cs-uri-query"] for e in parsed if e["cs-method"] == "AUTH"} == {"PLAIN", "LOGIN"}
    everything = "\n".join(p.read_text("utf-8") for p in log_file.parent.iterdir())
    plain = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    login = base64.b64encode(PASSWORD.encode()).decode()
    for secret in (PASSWORD, PASSWORD.replace(" ", "+"), plain, login, base64.b64encode(b"alice").decode()):
        assert secret not in everything
    tail = cli("log", "tail", "-n", "3", "--config", str(serve.config))
    assert tail.returncode == 0 and tail.stdout.splitlines() == lines[-3:]
