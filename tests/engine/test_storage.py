"""A full disk answers 452 before the 250, never after: the Mailroot on a tiny tmpfs (needs root to mount)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from engine_support import start_server
from smtp_helpers import RawSMTP


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _message(raw: RawSMTP, size: int) -> str:
    raw.cmd("MAIL FROM:<a@example.test>")
    raw.cmd("RCPT TO:<b@example.test>")
    raw.cmd("DATA")
    return raw.cmd(b"Subject: fill\r\n\r\n" + (b"z" * 998 + b"\r\n") * (size // 1000) + b".")


@pytest.mark.expect_errors
async def test_full_disk_answers_452_and_recovers(tiny_disk: Path, config_factory) -> None:
    run = await start_server(replace(config_factory(max_message_size_kb=0), mailroot=str(tiny_disk / "Mailroot")))
    try:
        def talk() -> list[str]:
            raw = RawSMTP(run.port)
            raw.cmd("EHLO c")
            out = [_message(raw, 100_000), _message(raw, 800_000), _message(raw, 20_000)]
            filler = tiny_disk / "filler"
            try:
                with filler.open("wb") as handle:
                    handle.write(b"f" * 2_000_000)
            except OSError:
                pass  # the disk is now full to the last block
            out.append(_message(raw, 20_000))
            filler.unlink()
            out.append(_message(raw, 20_000))
            raw.close()
            return out

        out = await asyncio.to_thread(talk)
        assert out[0].startswith("250 2.6.0")
        assert out[1].startswith("452 4.3.1")  # bigger than the disk: refused, nothing half-stored
        assert out[2].startswith("250 2.6.0")  # the failed spool was removed; the session goes on
        assert out[3].startswith("452 4.3.1")
        assert out[4].startswith("250 2.6.0")
        accepted = sum(1 for line in out if line.startswith("250"))
        assert len(run.drop_files()) == accepted
        # Only the empty pre-created spool files remain in SortTemp: nothing half-written.
        assert all(p.stat().st_size == 0 for p in (run.mailroot / "SortTemp").iterdir())
    finally:
        await run.server.stop()
