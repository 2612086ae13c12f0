"""`smtpsvc serve` as a real process for end-to-end tests, started and stopped by PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """One `smtpsvc serve` process on a loopback port with its own Mailroot."""

    def __init__(self, mailroot: Path, port: int, config: Path | None = None, domain: str = "example.test") -> None:
        self.mailroot = mailroot
        self.port = port
        self.config = config or mailroot.parent / "smtpsvc.toml"
        self.domain = domain
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = mailroot.parent / "serve.log"

    def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--config", str(self.config),
                 "--mailroot", str(self.mailroot), "--listen", f"127.0.0.1:{self.port}", "--domain", self.domain],
                cwd=REPO, env=env, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"smtpsvc serve exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(3) == b"220":
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtpsvc serve did not start in time")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def tokens_in(folder: Path, token: re.Pattern[bytes]) -> list[str]:
    """The token (``token``'s first group) of every .eml in ``folder``: which acknowledged messages are there."""
    found = []
    for path in folder.glob("*.eml"):
        match = token.search(path.read_bytes())
        assert match, f"{path} has no token"
        found.append(match.group(1).decode())
    return found
