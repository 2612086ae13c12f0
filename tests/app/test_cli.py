"""The `smtpsvc` command line: every command listed, only the running command's module imported, and the
admin server of `smtpsvc serve` made only once admin_listen is set."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from admin_support import wait_for_port
from serve_support import REPO, ServeProcess, free_port

from app import cli
from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.conf.config_file import save_config

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_help_lists_every_command_with_its_modules_own_help_line() -> None:
    listed = cli.build_parser("").format_help()  # what `smtpsvc --help` shows (no command module imported)
    assert listed == cli.build_parser(None).format_help()  # every module's own add_parser: the same lines
    done = subprocess.run([sys.executable, "-m", "app.cli", "--help"], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for name, _, summary in cli.COMMANDS:
        assert name in done.stdout
        assert summary.split()[0] in done.stdout


@pytest.mark.parametrize(("argv", "command"), [
    ([], None),
    (["serve"], "serve"),
    (["serve", "--help"], "serve"),
    (["--domain", "serve"], None),  # an option's value, not the command
    (["--config", "x.toml", "queue", "list", "--limit", "3"], "queue"),
    (["--connect", "https://h:1", "operator", "list"], "operator"),
    (["--no-such-option"], None),  # the real parser says what is wrong
    (["--listen"], None),
    (["desktop-entry", "--remove"], "desktop-entry"),
    (["-h"], None),
])
def test_the_command_is_found_without_importing_any(argv: list[str], command: str | None) -> None:
    assert cli.chosen_command(argv) == command


def test_serve_imports_neither_qt_nor_the_web_stack_nor_other_commands() -> None:
    probe = ("import sys\nfrom app.cli import main\n"
             "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
             "print(' '.join(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    modules = set(done.stdout.splitlines()[-1].split())
    assert "app.serve" in modules
    unwanted = {"PySide6", "aiohttp", "jinja2", "prometheus_client", "cryptography", "app.config_cmd", "app.queue_cmd",
                "app.cert_cmd", "app.manager", "engine.admin.http_server", "engine.admin.metrics"}
    assert unwanted & modules == set()


def test_the_admin_server_starts_when_admin_listen_is_set_on_a_running_serve(tmp_path: Path) -> None:
    mailroot = tmp_path / "Mailroot"
    config = tmp_path / "smtpsvc.toml"
    save_config(config, Config(server=ServerConfig(fqdn="mx.example.test"),
                               domains=(DomainConfig("example.test", "default"),), mailroot=str(mailroot)))
    serve = ServeProcess(mailroot, free_port(), config)
    serve.start()
    try:
        admin_port = free_port()
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "config", "--config", str(config), "set", "admin_allow_plain_loopback",
             "yes"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        with socket.socket() as busy:  # an address in use: the change is refused, saying why
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            done = subprocess.run(
                [sys.executable, "-m", "app.cli", "config", "--config", str(config), "set", "admin_listen",
                 f"127.0.0.1:{busy.getsockname()[1]}"], cwd=REPO, env=ENV, capture_output=True, text=True,
                timeout=60, check=False)
        assert done.returncode != 0 and "for the admin server" in done.stderr, done.stderr
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "config", "--config", str(config), "set", "admin_listen",
             f"127.0.0.1:{admin_port}"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        wait_for_port(admin_port)
    finally:
        assert serve.stop() == 0


@pytest.mark.expect_errors  # the refused change is logged
async def test_admin_listen_set_first_with_a_listen_that_cannot_bind_leaves_no_admin_server(tmp_path: Path) -> None:
    """The whole change is refused: the admin server that its admin_listen started goes too, and a later
    admin_listen alone still starts it."""
    from dataclasses import replace

    from engine_support import make_config

    from app.serve import AdminWhenListening
    from engine.errors import BindError
    from engine.server import VirtualServer

    config = make_config(tmp_path, admin_allow_plain_loopback=True)
    server = VirtualServer(config, config_path=tmp_path / "smtpsvc.toml")
    await server.start()
    admin = AdminWhenListening(server, tmp_path / "smtpsvc.toml")
    await admin.start()
    admin_port = free_port()
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            both = replace(config.server, admin_listen=f"127.0.0.1:{admin_port}",
                           listen=(f"127.0.0.1:{busy.getsockname()[1]}",))
            with pytest.raises(BindError):
                await server.apply_config(replace(config, server=both))
        assert admin.admin is None and server.config().server.admin_listen == ""
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", admin_port), timeout=5):
            pass
        await server.apply_config(replace(config, server=replace(config.server,
                                                                  admin_listen=f"127.0.0.1:{admin_port}")))
        assert admin.admin is not None and admin.admin.bound[0][1] == admin_port
        socket.create_connection(("127.0.0.1", admin_port), timeout=5).close()
    finally:
        await admin.stop()
        await server.stop()


DNS_PROBE = """
import asyncio, smtplib, sys, tempfile
from pathlib import Path
from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.server import VirtualServer

async def main() -> None:
    root = Path(tempfile.mkdtemp())
    server = VirtualServer(Config(server=ServerConfig(listen=("127.0.0.1:0",), fqdn="mx.example.test"),
                                  domains=(DomainConfig("example.test", "default"),), mailroot=str(root / "M")))
    await server.start()
    await server.wait_recovered()
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", server.bound_addresses[0][1], timeout=30) as client:
            client.sendmail("a@example.test", ["b@example.test"], b"Subject: local\\r\\n\\r\\nhi\\r\\n")
    await asyncio.to_thread(send)
    await server.stop()
    print(len(list((root / "M" / "Drop").glob("*.eml"))), "dns" in sys.modules)

asyncio.run(main())
"""


def test_dnspython_is_loaded_only_by_a_lookup_not_by_serving_local_mail() -> None:
    """dnspython costs some 60 ms of start-up: only a remote delivery or a reverse lookup imports it."""
    done = subprocess.run([sys.executable, "-c", DNS_PROBE], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "False"]
