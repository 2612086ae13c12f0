"""Clients no one here wrote — swaks and Postfix's smtp-source — against `smtpsvc serve`."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from serve_support import ServeProcess

from engine.store.envelope import split_envelope

SWAKS = shutil.which("swaks")
SMTP_SOURCE = shutil.which("smtp-source", path="/usr/sbin:/usr/bin:/sbin:/bin")


def _wait_for_files(folder: Path, count: int, timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = list(folder.glob("*.eml"))
        if len(files) >= count:
            return files
        time.sleep(0.05)
    return list(folder.glob("*.eml"))


@pytest.mark.skipif(SWAKS is None, reason="swaks is installed by tests/run")
def test_swaks_plain_and_pipelined(serve: ServeProcess) -> None:
    serve.config.write_text('[[domain]]\nname = "alias.test"\ntype = "alias"\n')
    serve.start()
    common = [SWAKS, "--server", "127.0.0.1", "--port", str(serve.port), "--from", "sender@example.test",
              "--helo", "swaks.test"]
    plain = subprocess.run([*common, "--to", "one@example.test,two@alias.test", "--header", "Subject: swaks plain"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "<-  250 2.6.0" in plain.stdout
    piped = subprocess.run([*common, "--to", "three@example.test", "--pipeline", "--body", "pipelined body"],
                           capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    relay = subprocess.run([*common, "--to", "victim@elsewhere.test"], capture_output=True, text=True, timeout=60)
    assert relay.returncode != 0
    assert "550 5.7.1 Unable to relay for victim@elsewhere.test" in relay.stdout
    files = _wait_for_files(serve.mailroot / "Drop", 2)
    envelopes = sorted(split_envelope(p.read_bytes())[1] for p in files)
    assert envelopes == [("one@example.test", "two@alias.test"), ("three@example.test",)]
    assert serve.stop() == 0


@pytest.mark.skipif(SMTP_SOURCE is None, reason="postfix's smtp-source is installed by tests/run")
@pytest.mark.parametrize("keep_connection", [False, True])
def test_smtp_source_twenty_sessions(serve: ServeProcess, keep_connection: bool) -> None:
    serve.start()
    total = 500
    args = [SMTP_SOURCE, "-s", "20", "-m", str(total), "-l", "4096", "-f", "load@example.test",
            "-t", "sink@example.test"]
    if keep_connection:
        args.append("-d")  # many messages per connection instead of one
    args.append(f"127.0.0.1:{serve.port}")
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    files = _wait_for_files(serve.mailroot / "Drop", total)
    assert len(files) == total
    sizes = {len(p.read_bytes()) for p in files[:20]}
    assert all(size > 4096 for size in sizes)
    assert serve.stop() == 0
    assert "Traceback" not in serve.log.read_text()


def test_sigterm_stops_cleanly_and_bad_config_is_one_clear_error(serve: ServeProcess, tmp_path: Path) -> None:
    serve.start()
    assert serve.stop() == 0
    assert "stopped" in serve.log.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nmax_message_size_kb = "huge"\nlisten = ["nowhere"]\nbogus_key = 1\n')
    broken = ServeProcess(tmp_path / "M2", serve.port, config=bad)
    with pytest.raises(RuntimeError) as error:
        broken.start(timeout=20)
    message = str(error.value)
    assert "max_message_size_kb" in message and "listen" in message and "bogus_key" in message
    assert "Traceback" not in message
    assert broken.proc is not None and broken.proc.returncode == 2
