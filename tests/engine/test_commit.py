"""The commit path on a real filesystem: one trip per file, directory fsyncs shared, spools held in memory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from engine.cleanup.intake import SpoolFile, SpoolPool
from engine.store.commit import Committer, TargetUnavailable


async def test_concurrent_commits_land_whole_under_their_names(tmp_path: Path) -> None:
    spool, drop = tmp_path / "SortTemp", tmp_path / "Drop"
    spool.mkdir()
    drop.mkdir()
    committer = Committer(threads=4)
    try:
        await asyncio.gather(*(committer.commit(None, spool / f"s{n}", drop / f"m{n}.eml", b"message %d\r\n" % n)
                               for n in range(60)))
    finally:
        await asyncio.to_thread(committer.close)
    assert sorted(p.name for p in drop.iterdir()) == sorted(f"m{n}.eml" for n in range(60))
    assert all((drop / f"m{n}.eml").read_bytes() == b"message %d\r\n" % n for n in range(60))
    assert list(spool.iterdir()) == []


async def test_an_open_spool_gets_its_tail_written(tmp_path: Path) -> None:
    source = tmp_path / "spool"
    fd = os.open(source, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"head,")
    committer = Committer()
    try:
        await committer.commit(fd, source, tmp_path / "final.eml", bytearray(b"tail"))
    finally:
        await asyncio.to_thread(committer.close)
    assert (tmp_path / "final.eml").read_bytes() == b"head,tail"
    assert not source.exists()


async def test_a_missing_target_leaves_the_durable_spool_for_the_caller(tmp_path: Path) -> None:
    committer = Committer()
    try:
        with pytest.raises(TargetUnavailable):
            await committer.commit(None, tmp_path / "spool", tmp_path / "gone" / "m.eml", b"kept")
    finally:
        await asyncio.to_thread(committer.close)
    assert (tmp_path / "spool").read_bytes() == b"kept"


async def test_directory_fsyncs_are_shared_and_a_failure_reaches_every_waiter(tmp_path: Path) -> None:
    committer = Committer(threads=2)
    try:
        results = await asyncio.gather(*(committer.sync_directory(tmp_path / "not-yet") for _ in range(8)),
                                       return_exceptions=True)
        assert all(isinstance(result, OSError) for result in results)  # nobody is told "durable" by a failed fsync
        (tmp_path / "not-yet").mkdir()
        await asyncio.gather(*(committer.sync_directory(tmp_path / "not-yet") for _ in range(8)))
    finally:
        await asyncio.to_thread(committer.close)


async def test_worker_errors_reach_the_caller_and_close_finishes_queued_calls(tmp_path: Path) -> None:
    committer = Committer(threads=2)
    with pytest.raises(FileNotFoundError):
        await committer.run(os.stat, str(tmp_path / "nothing"))
    done: list[int] = []
    calls = [committer.run(done.append, n) for n in range(20)]
    await asyncio.gather(*calls)
    await asyncio.to_thread(committer.close)
    assert sorted(done) == list(range(20))


async def test_a_small_spool_stays_in_memory_and_a_large_one_spills(tmp_path: Path) -> None:
    committer = Committer()
    pool = SpoolPool(tmp_path, committer)
    try:
        small = SpoolFile(tmp_path / "spool-small.eml", "SMALL", "a@x.test", ("b@x.test",), pool)
        small.write(b"x" * 1000)
        assert small.fd is None and list(tmp_path.glob("spool-*")) == []
        large = SpoolFile(tmp_path / "spool-large.eml", "LARGE", "a@x.test", ("b@x.test",), pool)
        large.write(b"y" * (200 * 1024))
        assert large.fd is not None and large.path.stat().st_size == 200 * 1024
        large.discard()
        assert not large.path.exists()
        fd, data = small.finish()
        assert bytes(data) == b"x" * 1000
        if fd is not None:  # a pool file was ready for it
            os.close(fd)
    finally:
        await pool.close()
        await asyncio.to_thread(committer.close)
