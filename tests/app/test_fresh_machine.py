"""What `smtpsvc` (the manager) and `smtpsvc serve` say on a fresh machine when the Mailroot cannot be created,
the port is taken or the configuration does not load: one plain sentence on stderr, no traceback. The real
command runs in a subprocess (the manager offscreen)."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "a-file").write_text("in the way\n")
    return tmp_path


def environment(home: Path) -> dict[str, str]:
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=str(ROOT))
    env.pop("JOURNAL_STREAM", None)
    return env


def serve(home: Path, *argv: str) -> tuple[int, str]:
    command = [sys.executable, "-m", "app.cli", "serve", "--config", str(home / "smtpsvc.toml"), *argv]
    done = subprocess.run(command, env=environment(home), capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr


def manager_says(home: Path, wanted: str, *argv: str) -> str:
    """Start the manager window (offscreen) and read its stderr until ``wanted`` appears; then end it."""
    command = [sys.executable, "-m", "app.cli", "--config", str(home / "smtpsvc.toml"), *argv]
    process = subprocess.Popen(command, env=environment(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               cwd=ROOT)
    assert process.stderr is not None
    text = ""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            deadline = time.monotonic() + 60
            while wanted not in text and time.monotonic() < deadline:
                if selector.select(timeout=1.0):
                    chunk = os.read(process.stderr.fileno(), 65536)
                    if not chunk:
                        break
                    text += chunk.decode("utf-8", "replace")
    finally:
        if process.poll() is None:  # the window (or its error box) is open: that was the point
            process.kill()
        process.wait(timeout=30)
        process.stderr.close()
    assert "Traceback" not in text, text
    return text


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


FILE_IN_THE_WAY = "is a file, not a folder. Choose another place with --mailroot DIR"
IN_USE = "the address is already in use: another program (or another smtpsvc) listens there"
BAD_FILE = ("[server]\nmax_recipients = 0\nnot_an_option = 1\n", "server.max_recipients: 0 is not from 1 to 100000")


def test_serve_mailroot_that_cannot_be_created(home: Path) -> None:
    code, err = serve(home, "--mailroot", str(home / "a-file" / "Mailroot"), "--listen", "127.0.0.1:0")
    assert code == 1
    assert f"cannot use the Mailroot {home}/a-file/Mailroot: {home}/a-file {FILE_IN_THE_WAY}" in err


def test_serve_port_in_use(home: Path, taken_port: int) -> None:
    code, err = serve(home, "--mailroot", str(home / "Mailroot"), "--listen", f"127.0.0.1:{taken_port}")
    assert code == 1 and f"cannot listen on 127.0.0.1:{taken_port}: {IN_USE}" in err


@pytest.mark.parametrize(("content", "problem"), [
    BAD_FILE,
    ('name = "unterminated\n', "not valid TOML"),
    (b"\xff\xfe junk", "is not UTF-8 text"),
])
def test_serve_configuration_that_does_not_load(home: Path, content: str | bytes, problem: str) -> None:
    path = home / "smtpsvc.toml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, err = serve(home)
    assert code == 2
    assert err.startswith(f"smtpsvc: the configuration cannot be used ({path}):\n") and problem in err
    assert err.rstrip().endswith("and start again.")


@pytest.mark.slow
def test_manager_says_the_same_on_stderr(home: Path, taken_port: int) -> None:
    (home / "smtpsvc.toml").write_text(BAD_FILE[0])
    said = manager_says(home, "start again.")
    assert f"smtpsvc: the configuration cannot be used ({home}/smtpsvc.toml):" in said and BAD_FILE[1] in said
    (home / "smtpsvc.toml").unlink()
    said = manager_says(home, f"{home}/a-file {FILE_IN_THE_WAY}", "--mailroot", str(home / "a-file" / "Mailroot"))
    assert f"smtpsvc: the virtual server could not start: cannot use the Mailroot {home}/a-file/Mailroot" in said
    start = f"smtpsvc: the virtual server could not start: cannot listen on 127.0.0.1:{taken_port}: {IN_USE}"
    said = manager_says(home, start, "--mailroot", str(home / "Mailroot"), "--listen", f"127.0.0.1:{taken_port}")
