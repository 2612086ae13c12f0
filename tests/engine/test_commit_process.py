"""The cleanup process for real: commits through a child process, its death under load, its restart and its end."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.cleanup.commit_process import CleanupCommitter
from engine.store.commit import TargetUnavailable

REPO = Path(__file__).resolve().parents[2]


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    spool, drop = tmp_path / "SortTemp", tmp_path / "Drop"
    spool.mkdir()
    drop.mkdir()
    return spool, drop


def _wait_exit(pid: int, timeout: float = 30) -> bool:
    """True when process ``pid`` ended within ``timeout`` (its pidfd turns readable)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


async def test_commits_land_whole_in_the_child_and_the_loop_keeps_no_spool_open(tmp_path: Path) -> None:
    spool, drop = _dirs(tmp_path)
    committer = CleanupCommitter()
    try:
        await asyncio.gather(*(committer.commit(None, spool / f"s{n}", drop / f"m{n}.eml", b"message %d\r\n" % n)
                               for n in range(200)))
        pid = committer.child_pid
        assert pid is not None and pid != os.getpid()
        # A spilled spool: the engine wrote its head and passes it by name; the child appends the rest.
        fd = os.open(spool / "big", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"head," * 20000)
        await committer.commit(fd, spool / "big", drop / "big.eml", bytearray(b"tail" * 30000))
        with pytest.raises(OSError):
            os.fstat(fd)  # closed on the engine's side
    finally:
        await asyncio.to_thread(committer.close)
    assert sorted(p.name for p in drop.iterdir()) == sorted([f"m{n}.eml" for n in range(200)] + ["big.eml"])
    assert all((drop / f"m{n}.eml").read_bytes() == b"message %d\r\n" % n for n in range(200))
    assert (drop / "big.eml").read_bytes() == b"head," * 20000 + b"tail" * 30000
    assert list(spool.iterdir()) == []
    assert _wait_exit(pid)


async def test_spools_for_large_messages_are_made_by_the_child_and_opened_here(tmp_path: Path) -> None:
    spool, drop = _dirs(tmp_path)
    committer = CleanupCommitter()
    try:
        made = await committer.create_spools([spool / f"p{n}" for n in range(5)])
        assert [path.name for path, _ in made] == [f"p{n}" for n in range(5)]
        path, fd = made[0]
        os.write(fd, b"spilled,")
        await committer.commit(fd, path, drop / "m.eml", b"rest")
        for _, other in made[1:]:
            os.close(other)
        with pytest.raises(FileExistsError):
            await committer.create_spools([spool / "p1"])  # (O_EXCL: an existing spool is never reused)
        with pytest.raises(FileNotFoundError):
            await committer.create_spools([tmp_path / "gone" / "p"])
    finally:
        await asyncio.to_thread(committer.close)
    assert (drop / "m.eml").read_bytes() == b"spilled,rest"
    assert sorted(p.name for p in spool.iterdir()) == ["p1", "p2", "p3", "p4"]


async def test_a_missing_target_raises_target_unavailable_with_the_spool_kept(tmp_path: Path) -> None:
    spool, _ = _dirs(tmp_path)
    committer = CleanupCommitter()
    try:
        with pytest.raises(TargetUnavailable, match="cannot move the message into"):
            await committer.commit(None, spool / "s", tmp_path / "gone" / "m.eml", b"kept")
        with pytest.raises(OSError, match="cannot write the spool") as raised:
            await committer.commit(None, tmp_path / "no-such-dir" / "s", tmp_path / "m.eml", b"x")
        assert not isinstance(raised.value, TargetUnavailable)
    finally:
        await asyncio.to_thread(committer.close)
    assert (spool / "s").read_bytes() == b"kept"


@pytest.mark.expect_errors
async def test_a_killed_child_fails_its_pending_commits_and_the_next_commit_starts_another(tmp_path: Path) -> None:
    spool, drop = _dirs(tmp_path)
    committer = CleanupCommitter()
    try:
        await committer.commit(None, spool / "first", drop / "first.eml", b"first")
        first_child = committer.child_pid
        assert first_child is not None
        commits = [asyncio.ensure_future(committer.commit(None, spool / f"s{n}", drop / f"m{n}.eml", b"m%d" % n))
                   for n in range(300)]
        await asyncio.sleep(0)  # the requests are sent
        os.kill(first_child, signal.SIGKILL)
        results = await asyncio.gather(*commits, return_exceptions=True)
        failed = {n for n, result in enumerate(results) if isinstance(result, OSError)}
        assert all(result is None or isinstance(result, OSError) for result in results)
        # Whatever was answered "durable" is in place, whole; whatever failed is not in Drop.
        for n in range(300):
            in_drop = (drop / f"m{n}.eml").exists()
            assert in_drop == (n not in failed), n
            if in_drop:
                assert (drop / f"m{n}.eml").read_bytes() == b"m%d" % n
        assert failed, "the kill came after every commit was answered"
        await committer.commit(None, spool / "after", drop / "after.eml", b"after")
        assert committer.child_pid not in (None, first_child)
    finally:
        await asyncio.to_thread(committer.close)
    assert (drop / "after.eml").read_bytes() == b"after"


async def test_close_lets_the_child_finish_what_it_was_given(tmp_path: Path) -> None:
    spool, drop = _dirs(tmp_path)
    committer = CleanupCommitter()
    await committer.commit(None, spool / "first", drop / "first.eml", b"first")
    pid = committer.child_pid
    assert pid is not None
    commits = [asyncio.ensure_future(committer.commit(None, spool / f"s{n}", drop / f"m{n}.eml", b"x" * 5000))
               for n in range(200)]
    await asyncio.sleep(0)
    await asyncio.gather(asyncio.to_thread(committer.close), *commits)  # every one durable, none failed
    assert len(list(drop.iterdir())) == 201
    assert _wait_exit(pid, 0)  # close() returned after the child had exited


def test_the_child_exits_when_the_engine_dies(tmp_path: Path) -> None:
    spool, drop = _dirs(tmp_path)
    script = textwrap.dedent(f"""
        import asyncio, os, sys
        from pathlib import Path
        from engine.cleanup.commit_process import CleanupCommitter
        async def main():
            committer = CleanupCommitter()
            await committer.commit(None, Path({str(spool)!r}) / "s", Path({str(drop)!r}) / "m.eml", b"x")
            print(committer.child_pid, flush=True)
            sys.stdin.read()  # until killed
        asyncio.run(main())
    """)
    with subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(REPO)}) as engine:
        try:
            assert engine.stdout is not None
            child = int(engine.stdout.readline())
        finally:
            engine.kill()
            engine.wait()
    assert _wait_exit(child), "the cleanup process outlived the engine"
    assert (drop / "m.eml").read_bytes() == b"x"


async def test_without_a_child_the_commits_run_on_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    spool, drop = _dirs(tmp_path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    committer = CleanupCommitter()
    try:
        for n in range(3):
            await committer.commit(None, spool / f"s{n}", drop / f"m{n}.eml", b"m")
        assert committer.child_pid is None
    finally:
        await asyncio.to_thread(committer.close)
    assert len(list(drop.iterdir())) == 3
    assert [r.message for r in caplog.records].count(
        f"the cleanup process cannot start ([Errno 2] No such file or directory: '{tmp_path / 'no-python'}'); "
        "committing on threads") == 1
