"""The hostile pass's queue reproductions (shared/reviews/adversarial.md): faults while finishing deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import smtplib
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_support import free_port
from engine_support import make_config, start_server
from sink_support import running_sink

from engine.events import ErrorEvent

MESSAGE = b"From: a@example.test\r\nTo: u@remote.example\r\nSubject: fill\r\n\r\nbody\r\n"


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "5m") -> Iterator[Path]:
    """A tiny filesystem of its own that a test can fill up (tests run as root)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write until the filesystem is full; returns the filler to delete."""
    filler = directory / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


@pytest.mark.expect_errors  # the full disk is reported, as it must be
async def test_finishing_on_a_full_disk_defers_and_every_message_goes_once_space_is_back(tmp_path: Path) -> None:
    """Finding 2: save_state failing with ENOSPC used to leave the messages "active" forever."""
    port = free_port()
    with small_tmpfs(tmp_path / "small") as small:
        run = await start_server(make_config(small, smart_host=f"[127.0.0.1]:{port}", relay_allowed=("127.0.0.0/8",)))
        store = run.server._store()
        try:
            def send(count: int) -> None:
                for i in range(count):
                    with smtplib.SMTP("127.0.0.1", run.port, timeout=10) as client:
                        client.sendmail("a@example.test", [f"u{i}@remote.example"], MESSAGE)

            await asyncio.to_thread(send, 3)
            # Nobody listens at the smart host yet: each message is tried once and deferred.
            await run.wait_for(lambda: len(store.entries) == 3 and all(
                e.record.attempts >= 1 and not e.active for e in store.entries.values()))
            filler = await asyncio.to_thread(fill, small)
            assert await run.server.retry_now() == 3
            await run.wait_for(lambda: sum(isinstance(e, ErrorEvent) and "finishing" in e.message
                                           for e in run.events) >= 3)
            await run.wait_for(lambda: all(e.record.attempts >= 2 and not e.active for e in store.entries.values()))
            assert [item.state for item in store.snapshot()] == ["queued"] * 3

            filler.unlink()
            with running_sink(tmp_path / "sink", "127.0.0.1", port) as sink:
                assert await run.server.retry_now() == 3
                await run.wait_for(lambda: not store.entries, timeout=20)
                assert sorted(d.rcpt_args[0] for d in sink.dumps()) == [f"<u{i}@remote.example>" for i in range(3)]
            assert not list(run.server.mailroot.queue.glob("*.eml"))
        finally:
            await run.server.stop()


@pytest.mark.expect_errors  # each odd file is reported as it goes to Queue/corrupt
async def test_fifo_and_symlinks_in_queue_go_to_corrupt_without_hanging_the_start(tmp_path: Path) -> None:
    """Finding 15: a FIFO in Queue blocked the start in open() for ever; symbolic links were followed."""
    config = make_config(tmp_path)
    queue = tmp_path / "Mailroot" / "Queue"
    queue.mkdir(parents=True)
    os.mkfifo(queue / "18EEF0000000000000000001.eml")
    secret = tmp_path / "secret"
    secret.write_bytes(b"x-sender: a@b.example\r\nx-receiver: c@d.example\r\n\r\nsecret\r\n")
    (queue / "18EEF0000000000000000002.eml").symlink_to(secret)
    os.mkfifo(queue / "18EEF0000000000000000003.env")  # a good message whose record is a FIFO
    (queue / "18EEF0000000000000000003.eml").write_bytes(
        b"x-sender: a@example.test\r\nx-receiver: u@remote.example\r\n\r\nkept\r\n")
    run = await asyncio.wait_for(start_server(config), 30)
    try:
        corrupt = sorted(p.name for p in (queue / "corrupt").iterdir())
        assert corrupt == ["18EEF0000000000000000001.eml", "18EEF0000000000000000002.eml",
                           "18EEF0000000000000000003.env"]
        assert list(run.server._store().entries) == ["18EEF0000000000000000003"]
        assert secret.exists()
        assert len([e for e in run.events if isinstance(e, ErrorEvent)]) == 3
    finally:
        await run.server.stop()


async def test_mailroot_directories_transcripts_and_drop_copies_are_private(tmp_path: Path) -> None:
    """Finding 12: Drop files written by the queue's copy, the .rtr transcripts and the directories were
    world-readable."""
    old = os.umask(0o022)
    try:
        run = await start_server(make_config(tmp_path, relay_allowed=("127.0.0.0/8",)))
    finally:
        os.umask(old)
    try:
        def send() -> None:
            with smtplib.SMTP("127.0.0.1", run.port, timeout=10) as client:
                client.ehlo()
                client.sendmail("a@example.test", ["u@example.test"], MESSAGE, rcpt_options=["NOTIFY=SUCCESS"])
                client.sendmail("a@example.test", ["v@example.test", "w@remote.example"], MESSAGE)

        await asyncio.to_thread(send)
        mailroot = run.server.mailroot
        await run.wait_for(lambda: len(run.drop_files()) >= 2 and list(mailroot.queue.glob("*.rtr")))
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in
                 [*run.drop_files(), *mailroot.queue.glob("*.rtr"), *mailroot.queue.glob("*.eml")]}
        assert set(modes.values()) == {0o600}, modes
        folders = [mailroot.root, mailroot.badmail, mailroot.drop, mailroot.pickup, mailroot.queue, mailroot.sorttemp]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in folders} == {f.name: 0o700 for f in folders}
    finally:
        await run.server.stop()


@pytest.mark.expect_errors  # the missing Queue is reported, as it must be
async def test_queue_directory_deleted_while_running(tmp_path: Path) -> None:
    """Finding 19: every message got 451 from then on and the lost entries stayed "active" in the queue."""
    run = await start_server(make_config(tmp_path, relay_allowed=("127.0.0.0/8",)))
    store = run.server._store()
    try:
        def send(rcpt: str) -> None:
            with smtplib.SMTP("127.0.0.1", run.port, timeout=10) as client:
                client.sendmail("a@example.test", [rcpt], MESSAGE)

        await asyncio.to_thread(send, "u@remote.example")
        await run.wait_for(lambda: len(store.entries) == 1 and all(
            e.record.attempts >= 1 and not e.active for e in store.entries.values()))
        shutil.rmtree(run.server.mailroot.queue)
        await asyncio.to_thread(send, "v@remote.example")  # accepted: Queue made again
        assert run.server.mailroot.queue.is_dir()
        assert await run.server.retry_now() == 2
        # The lost message leaves the queue with an error; the new one is there, deferred as usual.
        await run.wait_for(lambda: len(store.entries) == 1 and all(
            e.record.attempts >= 1 and not e.active for e in store.entries.values()))
        [entry] = store.entries.values()
        assert entry.path.exists() and entry.record.recipients[0].address == "v@remote.example"
        messages = [e.message for e in run.events if isinstance(e, ErrorEvent)]
        assert any("Queue directory was gone" in m for m in messages), messages
        assert any("message file is gone" in m for m in messages), messages
    finally:
        await run.server.stop()
