"""The hostile pass's configuration reproductions (shared/reviews/adversarial.md): unusable files said loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from engine_support import start_server
from security_support import tls_files
from serve_support import REPO, ServeProcess

from engine.errors import MailrootLockedError
from engine.events import ErrorEvent
from engine.server import VirtualServer


def wait_for_line(log: Path, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text("utf-8", "replace")
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged: {log.read_text('utf-8', 'replace')[-2000:]}")


@pytest.mark.expect_errors
def test_serve_logs_a_bad_certificate_and_users_file_at_error_level(tmp_path: Path, serve: ServeProcess) -> None:
    """Finding 7: with require_tls and a garbage certificate every client got 530 and nothing was logged."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    users = tmp_path / "users-dir"
    users.mkdir()
    serve.config.write_text(f'name = "t"\n[server]\ntls_certificate = "{garbage}"\ntls_key = "{garbage}"\n'
                            f'require_tls = true\nauth_basic = true\nusers_file = "{users}"\n')
    serve.start()
    log = wait_for_line(serve.log, " started; listening on ")
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert any(f"cannot load the certificate {garbage}" in line for line in errors), log
    assert any("TLS is required but no usable certificate is installed" in line for line in errors), log
    assert any(f"the users file {users} cannot be read" in line for line in errors), log
    assert serve.stop() == 0


@pytest.mark.expect_errors
async def test_start_and_reload_publish_error_events_for_unusable_files(tmp_path: Path, config_factory) -> None:
    good = tls_files(tmp_path / "tls")
    run = await start_server(config_factory(tls_certificate=str(good.certificate), tls_key=str(good.key)))
    try:
        assert not [e for e in run.events if isinstance(e, ErrorEvent)]  # a good pair: nothing to say
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("junk")
        config = run.server.config()
        await run.server.apply_config(replace(config, server=replace(
            config.server, tls_certificate=str(garbage), tls_key=str(garbage))))
        errors = [e for e in run.events if isinstance(e, ErrorEvent)]
        assert [e.source for e in errors] == ["tls"] and str(garbage) in errors[0].message
        await run.server.reload_certificate()  # said again when asked again
        assert len([e for e in run.events if isinstance(e, ErrorEvent)]) == 2
    finally:
        await run.server.stop()


@pytest.mark.parametrize("case", ["a-file", "under-proc", "read-only-parent", "read-only-mailroot"])
def test_a_bad_mailroot_is_one_clear_line(tmp_path: Path, case: str) -> None:
    """Finding 11: each of these printed a raw traceback (read-only: a read-only mount, as tests run as root)."""
    readonly = tmp_path / "ro"
    mailroot = {"a-file": tmp_path / "afile", "under-proc": Path("/proc/MR")}.get(case, readonly / "MR")
    if case == "a-file":
        mailroot.write_text("x")
    if case.startswith("read-only"):
        readonly.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(readonly)], check=True)
        if case == "read-only-mailroot":
            mailroot.mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(readonly)], check=True)
    config = tmp_path / "c.toml"
    config.write_text('name = "t"\n')
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--config", str(config), "--mailroot", str(mailroot),
             "--listen", "127.0.0.1:0", "--domain", "t.test"],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    finally:
        if case.startswith("read-only"):
            subprocess.run(["umount", "-l", str(readonly)], check=False)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert f"cannot use the Mailroot {mailroot}: " in result.stderr, result.stderr


async def test_a_second_engine_is_refused_even_with_the_lock_file_deleted(tmp_path: Path, config_factory) -> None:
    """Finding 18: with smtpsvc.lock and control.sock deleted, a second engine started on the same Mailroot."""
    first = await start_server(config_factory())
    try:
        (first.mailroot / "smtpsvc.lock").unlink()
        (first.mailroot / "control.sock").unlink(missing_ok=True)
        second = VirtualServer(config_factory())
        with pytest.raises(MailrootLockedError, match="in use by another smtpsvc engine"):
            await second.start()
    finally:
        await first.server.stop()
    again = await start_server(config_factory())  # and once the first has stopped, it is free
    await again.server.stop()
