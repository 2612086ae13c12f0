"""Helpers for admin-server tests: a configuration with a certificate, operators and an admin address."""

from __future__ import annotations

import io
import socket
import sys
import time
from pathlib import Path

from serve_support import ServeProcess, free_port

from app.cli import main

OPERATORS = {"boss": ("boss-secret", "admin"), "watcher": ("watcher-secret", "viewer")}


def cli(*args: str, stdin: str = "") -> int:
    """Run `smtpsvc ARGS` in this process with ``stdin``; its output goes to the test's capture."""
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        return main(list(args))
    finally:
        sys.stdin = saved


def admin_config(directory: Path, admin_port: int, *, certificate: bool = True, plain_loopback: bool = False) -> Path:
    """smtpsvc.toml in ``directory``: a self-signed certificate, the two operators, admin_listen on loopback."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "smtpsvc.toml"
    if certificate:
        assert cli("cert", "new", "--config", str(config), "--fqdn", "localhost", "--days", "30") == 0
    assert cli("config", "set", "admin_listen", f"127.0.0.1:{admin_port}", "--config", str(config)) == 0
    if plain_loopback:
        assert cli("config", "set", "admin_allow_plain_loopback", "yes", "--config", str(config)) == 0
    for name, (password, role) in OPERATORS.items():
        assert cli("operator", "add", name, "--role", role, "--password-stdin", "--config", str(config),
                   stdin=password + "\n") == 0
    return config


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class AdminServe(ServeProcess):
    """`smtpsvc serve` with its admin server up."""

    def __init__(self, root: Path, *, certificate: bool = True, plain_loopback: bool = False) -> None:
        self.admin_port = free_port()
        config = admin_config(root, self.admin_port, certificate=certificate, plain_loopback=plain_loopback)
        super().__init__(root / "Mailroot", free_port(), config)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 20.0) -> None:
        super().start(timeout)
        wait_for_port(self.admin_port, timeout)

    def __enter__(self) -> AdminServe:
        """Started; stopped (by its PID) when the block ends."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
