"""`smtpsvc queue` against a running engine (through its control socket) and offline on a Mailroot."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from control_support import SENDER, Engine, engine_with_queue, queue_deferred, serve_control, stale_socket
from engine_support import make_config, start_server

from app import queue_cmd, serve
from engine.admin.control import socket_path
from engine.conf.config import Config
from engine.conf.config_file import save_config
from engine.server import VirtualServer
from engine.store.lock import MailrootLock

Result = tuple[int, str, str]


def parser() -> argparse.ArgumentParser:
    """The main command line as app/cli.py builds it, with ``queue`` registered."""
    main = argparse.ArgumentParser(prog="smtpsvc")
    serve.add_location_options(main)
    queue_cmd.add_parser(main.add_subparsers(dest="command", metavar="COMMAND"))
    return main


async def smtpsvc(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """Run ``smtpsvc ARGV...`` on a thread (it runs its own event loop) while the test's loop serves the engine."""
    args = parser().parse_args(list(argv))
    code = await asyncio.to_thread(args.func, args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def config_file(tmp_path: Path, config: Config) -> str:
    path = tmp_path / "smtpsvc.toml"
    save_config(path, config)
    return str(path)


@pytest.fixture
async def engine(config: Config) -> AsyncIterator[Engine]:
    async with engine_with_queue(config) as running:
        yield running


@pytest.fixture
async def offline_ids(config: Config) -> list[str]:
    """Three deferred messages in a Mailroot whose engine has stopped."""
    async with engine_with_queue(config) as running:
        ids = running.ids
    assert not socket_path(running.run.mailroot).exists()
    return ids


async def states(config: Config) -> dict[str, tuple[str, float]]:
    """Queue id → (state, next attempt), read back by an engine opened afterwards: what was saved."""
    server = VirtualServer(config)
    await server.start(offline=True)
    try:
        return {i.queue_id: (i.state, i.next_attempt) for i in (await server.list_queue()).items}
    finally:
        await server.stop()


# -- against the running engine ---------------------------------------------------------------------


async def test_list_is_like_mailq(capsys: pytest.CaptureFixture[str], config_file: str, engine: Engine) -> None:
    code, out, err = await smtpsvc(capsys, "queue", "list", "--config", config_file)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["-Queue", "ID-", "--Size--", "----Arrival", "Time----", "-Sender/Recipient-------"]
    listed = [line.split()[0] for line in lines if re.match(r"[0-9A-F]{16,}", line)]
    assert listed == engine.ids
    first = lines.index(next(line for line in lines if line.startswith(engine.ids[0])))
    assert lines[first].split()[-1] == SENDER
    assert lines[first + 1].strip().startswith("(451 4.4.2 ")  # why it is still here
    assert lines[first + 2].strip() == "r0@relay.test"
    assert lines[-1] == "-- 1 Kbytes in 3 Requests."


async def test_list_sorted_reversed_and_limited(capsys: pytest.CaptureFixture[str], config_file: str,
                                                engine: Engine) -> None:
    await engine.server.freeze(engine.ids[0])
    code, out, _ = await smtpsvc(capsys, "--config", config_file, "queue", "list", "--sort", "size", "--reverse",
                                 "--limit", "2")
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines() if re.match(r"[0-9A-F]{16,}", line)]
    assert listed == [engine.ids[2], engine.ids[1]]
    assert out.splitlines()[-1] == "-- 1 Kbytes in 2 of 3 Requests."
    _, out, _ = await smtpsvc(capsys, "--config", config_file, "queue", "list", "--sort", "size")
    assert f"{engine.ids[0]}!" in out  # frozen, as mailq marks a message on hold


async def test_show_envelope_recipients_schedule_transcript(capsys: pytest.CaptureFixture[str], config_file: str,
                                                             engine: Engine) -> None:
    code, out, err = await smtpsvc(capsys, "queue", "show", engine.ids[1], "--config", config_file)
    assert (code, err) == (0, "")
    assert f"Queue ID:     {engine.ids[1]}\n" in out and f"Sender:       {SENDER}\n" in out
    assert "State:        queued\n" in out and "Attempts:     1, last " in out
    assert re.search(r"\n  r1@relay\.test  pending    1 attempt  451 4\.4\.2 ", out)
    schedule = out.split("Schedule ahead, if every attempt fails:\n")[1].split("\n\n")[0].splitlines()
    assert schedule[0].endswith("attempt 2") and schedule[-1].endswith("NDR")
    assert any(line.endswith("delay notice") for line in schedule)
    assert "Transcript:\n  === attempt 1" in out and "127.0.0.1" in out.split("Transcript:")[1]


async def test_freeze_thaw_delete_bounce_act_on_the_live_engine(capsys: pytest.CaptureFixture[str],
                                                                 config_file: str, engine: Engine) -> None:
    code, out, err = await smtpsvc(capsys, "queue", "freeze", engine.ids[0], "NOPE", engine.ids[1],
                                   "--config", config_file)
    assert code == 2  # one was not there; the others were still done
    assert out == f"{engine.ids[0]}: frozen\n{engine.ids[1]}: frozen\n"
    assert err == "smtpsvc queue: no message NOPE in the queue\n"
    items = {i.queue_id: i.state for i in (await engine.server.list_queue()).items}
    assert items == {engine.ids[0]: "frozen", engine.ids[1]: "frozen", engine.ids[2]: "queued"}

    assert await smtpsvc(capsys, "queue", "thaw", engine.ids[1], "--config", config_file) == \
        (0, f"{engine.ids[1]}: thawed\n", "")
    assert await smtpsvc(capsys, "queue", "delete", engine.ids[1], "--config", config_file) == \
        (0, f"{engine.ids[1]}: deleted\n", "")
    assert await smtpsvc(capsys, "queue", "bounce", engine.ids[2], "--config", config_file) == \
        (0, f"{engine.ids[2]}: returned to its sender\n", "")
    await engine.run.wait_for(lambda: len(engine.run.drop_files()) == 1)  # the NDR reached s@example.test
    assert [i.queue_id for i in (await engine.server.list_queue()).items] == [engine.ids[0]]


async def test_flush(capsys: pytest.CaptureFixture[str], config_file: str, engine: Engine) -> None:
    await engine.server.freeze(engine.ids[0])
    assert await smtpsvc(capsys, "queue", "flush", "--config", config_file) == \
        (0, "2 messages due for delivery now\n", "")
    assert (await smtpsvc(capsys, "queue", "flush", "--domain", "relay.test", "--config", config_file))[1] == \
        "2 messages due for delivery now\n"
    assert (await smtpsvc(capsys, "queue", "flush", engine.ids[2], "--config", config_file))[1] == \
        "1 message due for delivery now\n"
    code, out, err = await smtpsvc(capsys, "queue", "flush", engine.ids[2], "--domain", "relay.test",
                                   "--config", config_file)
    assert (code, out, err) == (2, "", "smtpsvc queue: give message ids or --domain, not both\n")


async def test_flush_domain_is_not_the_main_domain_option(capsys: pytest.CaptureFixture[str], config_file: str,
                                                          engine: Engine) -> None:
    # `smtpsvc --domain X` overrides the default domain; `queue flush --domain D` picks the messages: two options.
    args = parser().parse_args(["--domain", "other.test", "queue", "flush", "--domain", "relay.test",
                                "--config", config_file])
    assert (args.domain, args.flush_domain) == ("other.test", "relay.test")
    assert queue_cmd._config(args).default_domain.name == "other.test"
    args = parser().parse_args(["queue", "flush", "--domain", "relay.test", "--config", config_file])
    assert args.domain is None and queue_cmd._config(args).default_domain.name != "relay.test"
    assert (await smtpsvc(capsys, "--domain", "other.test", "queue", "flush", "--domain", "nowhere.test",
                          "--config", config_file))[1] == "0 messages due for delivery now\n"
    assert (await smtpsvc(capsys, "--domain", "other.test", "queue", "flush", "--domain", "relay.test",
                          "--config", config_file))[1] == "3 messages due for delivery now\n"


async def test_not_found_and_usage_errors(capsys: pytest.CaptureFixture[str], config_file: str,
                                          engine: Engine) -> None:
    assert await smtpsvc(capsys, "queue", "show", "NOPE", "--config", config_file) == \
        (2, "", "smtpsvc queue: no message NOPE in the queue\n")
    for argv in (["queue"], ["queue", "list", "--limit", "0"], ["queue", "list", "--sort", "colour"],
                 ["queue", "freeze"], ["queue", "show"]):
        with pytest.raises(SystemExit) as exit_:
            parser().parse_args(argv)
        assert exit_.value.code == 2
    capsys.readouterr()


# -- offline: no engine runs ------------------------------------------------------------------------


async def test_offline_list_and_show(capsys: pytest.CaptureFixture[str], config_file: str,
                                     offline_ids: list[str]) -> None:
    code, out, err = await smtpsvc(capsys, "queue", "list", "--config", config_file)
    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines() if re.match(r"[0-9A-F]{16,}", line)] == offline_ids
    code, out, _ = await smtpsvc(capsys, "queue", "show", offline_ids[0], "--config", config_file)
    assert code == 0 and "Schedule ahead" in out and "=== attempt 1" in out


async def test_offline_changes_are_saved(capsys: pytest.CaptureFixture[str], config: Config, config_file: str,
                                         offline_ids: list[str]) -> None:
    one, two, three = offline_ids
    assert (await smtpsvc(capsys, "queue", "freeze", one, "--config", config_file))[0] == 0
    assert (await smtpsvc(capsys, "queue", "delete", two, "--config", config_file))[0] == 0
    assert await smtpsvc(capsys, "queue", "flush", "--config", config_file) == \
        (0, "1 message due for delivery when the engine starts (no engine is running)\n", "")
    saved = await states(config)
    assert saved == {one: ("frozen", saved[one][1]), three: ("queued", 0.0)}

    assert (await smtpsvc(capsys, "queue", "bounce", three, "--config", config_file))[0] == 0
    # The NDR goes to s@example.test, a local Drop: the queue's commit puts it there at once, engine or not.
    assert set(await states(config)) == {one}
    [ndr] = Path(config.mailroot, "Drop").glob("*.eml")
    assert b"r2@relay.test" in ndr.read_bytes() and b"multipart/report" in ndr.read_bytes()
    run = await start_server(config)
    try:
        assert [(i.queue_id, i.state) for i in (await run.server.list_queue()).items] == [(one, "frozen")]
    finally:
        await run.server.stop()


async def test_mailroot_option_and_stale_socket(capsys: pytest.CaptureFixture[str], tmp_path: Path, config: Config,
                                                offline_ids: list[str]) -> None:
    # A configuration without a Mailroot of its own, and the Mailroot given on the command line (either place).
    other = tmp_path / "other.toml"
    save_config(other, make_config(tmp_path / "elsewhere"))
    mailroot = str(tmp_path / "Mailroot")
    stale_socket(tmp_path / "Mailroot" / "control.sock")  # left by a killed engine: no engine answers there
    for argv in (["--config", str(other), "--mailroot", mailroot, "queue", "list"],
                 ["--config", str(other), "queue", "list", "--mailroot", mailroot]):
        code, out, err = await smtpsvc(capsys, *argv)
        assert (code, err) == (0, "") and all(queue_id in out for queue_id in offline_ids)
    assert not (tmp_path / "elsewhere").exists()


async def test_no_mailroot_is_an_error_not_an_empty_queue(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                         config_file: str) -> None:
    code, out, err = await smtpsvc(capsys, "queue", "list", "--config", config_file)
    assert (code, out) == (1, "")
    assert err == f"smtpsvc queue: there is no Mailroot at {tmp_path / 'Mailroot'}\n"
    assert not (tmp_path / "Mailroot").exists()


async def test_empty_queue(capsys: pytest.CaptureFixture[str], config: Config, config_file: str) -> None:
    run = await start_server(config)
    await run.server.stop()
    assert await smtpsvc(capsys, "queue", "list", "--config", config_file) == (0, "Mail queue is empty\n", "")


async def test_bad_configuration(capsys: pytest.CaptureFixture[str], config_file: str) -> None:
    code, out, err = await smtpsvc(capsys, "queue", "list", "--config", config_file, "--mailroot", "relative")
    assert (code, out) == (2, "") and err.startswith("smtpsvc queue: mailroot: ")


# -- an engine that holds the Mailroot but does not answer ------------------------------------------


async def test_refuses_an_engine_that_holds_the_lock_without_a_socket(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config: Config, config_file: str) -> None:
    """Going offline behind a running engine's back would lose changes: refuse, after a short wait."""
    monkeypatch.setattr(queue_cmd, "SETTLE_SECONDS", 0.5)
    run = await start_server(config)
    control = await serve_control(run.server)
    try:
        [queue_id] = await queue_deferred(run.server, 1)
        socket_path(run.mailroot).unlink()  # the engine runs on, but nothing can reach it
        code, out, err = await smtpsvc(capsys, "queue", "delete", queue_id, "--config", config_file)
        assert (code, out) == (1, "")
        assert "is in use by another smtpsvc engine" in err and "does not answer on" in err
        assert len(err.splitlines()) == 1
        assert [i.queue_id for i in (await run.server.list_queue()).items] == [queue_id]
    finally:
        if control is not None:
            await control.stop()
        await run.server.stop()


async def test_waits_for_a_lock_held_for_a_moment(capsys: pytest.CaptureFixture[str], config: Config,
                                                 config_file: str, offline_ids: list[str]) -> None:
    """Another administrator's command (or a stopping engine) holds the Mailroot briefly: wait, then go on."""
    lock = MailrootLock(Path(config.mailroot) / "smtpsvc.lock")
    lock.acquire()
    asyncio.get_running_loop().call_later(0.5, lock.release)
    code, out, _ = await smtpsvc(capsys, "queue", "freeze", offline_ids[0], "--config", config_file)
    assert (code, out) == (0, f"{offline_ids[0]}: frozen\n")
    assert not lock.held
