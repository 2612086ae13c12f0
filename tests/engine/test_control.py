"""The control socket against a real started engine with deferred remote mail: every op, errors, framing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from control_support import SENDER, Engine, engine_with_queue, queue_deferred, serve_control, stale_socket
from engine_support import make_config, start_server

from engine.admin.control import (
    MAX_REQUEST_BYTES,
    ControlServer,
    ControlUnavailableError,
    request,
    request_sync,
    socket_path,
)
from engine.admin.control_ops import OPS, RequestError, answer
from engine.admin.operators import may_run
from engine.errors import BindError, EngineError, NotFoundError, StateError


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with engine_with_queue(make_config(tmp_path)) as running:
        yield running


async def exchange(path: Path, data: bytes) -> list[dict[str, Any]]:
    """Send raw bytes, half-close, and read every reply line until the server closes."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    return [json.loads(line) for line in raw.splitlines()]


# -- the socket file --------------------------------------------------------------------------------


async def test_the_socket_is_owner_only_and_nothing_else_is_left(engine: Engine) -> None:
    info = engine.path.lstat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()
    assert not [p for p in engine.path.parent.iterdir() if p.name.startswith(".control-")]  # private dir gone


async def test_start_and_stop_own_only_their_socket(tmp_path: Path) -> None:
    run = await start_server(make_config(tmp_path))
    path = tmp_path / "c.sock"
    try:
        stale_socket(path)
        control = ControlServer(partial(answer, run.server), path)
        await control.start()  # a stale socket (a killed engine's) is replaced
        assert (await request(path, "state"))["state"] == "started"

        with pytest.raises(BindError, match="another process answers"):
            await ControlServer(partial(answer, run.server), path).start()
        assert (await request(path, "state"))["state"] == "started"  # the refused one took nothing away

        path.unlink()  # someone else's socket now has the name: stop must leave it alone
        stale_socket(path)
        await control.stop()
        assert stat.S_ISSOCK(path.lstat().st_mode)
        path.unlink()

        await control.start()  # can start again after a stop
        await control.stop()
        assert not path.exists()

        path.write_text("not a socket")
        with pytest.raises(BindError, match="not a socket"):
            await ControlServer(partial(answer, run.server), path).start()
        assert path.read_text() == "not a socket"
    finally:
        await run.server.stop()


async def test_a_mailroot_path_longer_than_sun_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    run = await start_server(make_config(deep))
    path = socket_path(run.mailroot)
    assert len(os.fsencode(path)) > 108
    control = await serve_control(run.server)
    try:
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        assert (await request(path, "state"))["mailroot"] == str(run.mailroot)
    finally:
        if control is not None:
            await control.stop()
        await run.server.stop()
    assert not path.exists()


SYSTEM_PYTHON = Path("/usr/bin/python3")  # ours lives under /root, which other users cannot enter
NOBODY = 65534


@pytest.mark.skipif(os.getuid() != 0 or not SYSTEM_PYTHON.exists(), reason="needs root and a system python3")
async def test_another_user_is_refused_even_if_the_mode_was_widened(tmp_path: Path) -> None:
    run = await start_server(make_config(tmp_path))
    shared = Path(tempfile.mkdtemp(prefix="smtpsvc-control-"))  # tmp_path is not reachable for other users
    shared.chmod(0o711)
    control = ControlServer(partial(answer, run.server), shared / "c.sock")
    # The refusal comes before any request: the client only connects and reads.
    client = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
              "print(s.makefile().readline(), end='')")
    try:
        await control.start()
        control.path.chmod(0o666)  # a mistake by someone: the kernel's peer credentials still say who it is
        done = await asyncio.to_thread(subprocess.run, [str(SYSTEM_PYTHON), "-c", client, str(control.path)],
                                       user=NOBODY, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        reply = json.loads(done.stdout)
        assert reply == {"ok": False, "error": {"type": "RequestError",
                                                "message": "permission denied: not the engine's user"}}
        assert (await request(control.path, "state"))["state"] == "started"  # its own user still gets in
    finally:
        await control.stop()
        await run.server.stop()
        shutil.rmtree(shared)


async def test_stop_closes_idle_connections(tmp_path: Path) -> None:
    run = await start_server(make_config(tmp_path))
    control = ControlServer(partial(answer, run.server), tmp_path / "c.sock")
    await control.start()
    reader, writer = await asyncio.open_unix_connection(str(control.path))
    try:
        await asyncio.wait_for(control.stop(), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
        await writer.wait_closed()
        await run.server.stop()


# -- every op ---------------------------------------------------------------------------------------


async def test_state_and_counters(engine: Engine) -> None:
    state = await request(engine.path, "state")
    assert state["state"] == "started" and state["pid"] == os.getpid()
    assert state["mailroot"] == str(engine.run.mailroot)
    assert state["listening"] == [f"127.0.0.1:{engine.run.port}"]
    counters = await request(engine.path, "counters")
    assert counters == await engine.server.counters_snapshot()
    assert counters["Remote Queue Length"] == 3


async def test_queue_list_pages_and_sorts(engine: Engine) -> None:
    page = await request(engine.path, "queue.list")
    assert page["total"] == 3 and [i["queue_id"] for i in page["items"]] == engine.ids
    first = page["items"][0]
    assert first["sender"] == SENDER and first["recipients"] == first["pending"] == ["r0@relay.test"]
    assert first["attempts"] == 1 and first["state"] == "queued" and "4.4.2" in first["last_error"]
    assert page == json.loads(json.dumps(page))  # plain JSON, nothing else

    two = await request(engine.path, "queue.list", offset=1, limit=2, sort="size", descending=True)
    assert two["total"] == 3 and [i["queue_id"] for i in two["items"]] == [engine.ids[1], engine.ids[0]]
    assert (await request(engine.path, "queue.list", offset=5))["items"] == []
    with pytest.raises(NotFoundError, match="unknown sort key"):
        await request(engine.path, "queue.list", sort="colour")


async def test_queue_page_lists_by_id_after_a_key(engine: Engine) -> None:
    ordered = sorted(engine.ids)
    first = await request(engine.path, "queue.page", limit=2)
    assert first["total"] == 3 and [i["queue_id"] for i in first["items"]] == ordered[:2]
    rest = await request(engine.path, "queue.page", after=ordered[1], limit=2)
    assert [i["queue_id"] for i in rest["items"]] == ordered[2:] and rest["recovering"] is False
    await engine.server.delete_message(ordered[0])  # gone before the next page: no other message moves
    assert [i.queue_id for i in (await engine.server.queue_page(ordered[0], 5)).items] == ordered[1:]
    assert (await request(engine.path, "queue.page", after=ordered[2]))["items"] == []


async def test_queue_show_has_recipients_transcript_and_schedule(engine: Engine) -> None:
    detail = await request(engine.path, "queue.show", id=engine.ids[2])
    assert detail["item"]["queue_id"] == engine.ids[2]
    [rcpt] = detail["recipients"]
    assert rcpt["address"] == "r2@relay.test" and rcpt["status"] == "pending" and rcpt["attempts"] == 1
    assert "127.0.0.1" in detail["transcript"] and detail["last_attempt"] > 0
    assert detail["delay_notice_sent"] is False
    events = [step["event"] for step in detail["schedule"]]
    times = [step["at"] for step in detail["schedule"]]
    assert events[0] == "attempt 2" and events[-1] == "NDR" and "delay notice" in events
    assert times == sorted(times) and times[0] > detail["last_attempt"]

    await request(engine.path, "queue.freeze", id=engine.ids[2])
    assert (await request(engine.path, "queue.show", id=engine.ids[2]))["schedule"] == []  # held: nothing ahead


async def test_queue_read_whole_or_its_first_bytes(engine: Engine) -> None:
    whole = await request(engine.path, "queue.read", id=engine.ids[2])
    head = await request(engine.path, "queue.read", id=engine.ids[2], limit=12)
    assert whole["size"] > 12 and head == {"text": whole["text"][:12], "size": 12}


async def test_flush_all_one_domain_or_some_ids(engine: Engine) -> None:
    assert await request(engine.path, "queue.flush", ids=[engine.ids[0]]) == {"count": 1}
    await request(engine.path, "queue.freeze", id=engine.ids[1])
    assert await request(engine.path, "queue.flush", domain="relay.test") == {"count": 2}  # not the frozen one
    assert await request(engine.path, "queue.flush", domain="elsewhere.test") == {"count": 0}
    assert await request(engine.path, "queue.flush") == {"count": 2}
    assert await request(engine.path, "queue.flush", ids=["NOPE"]) == {"count": 0}
    # Retry Now really retried: the unreachable smart host failed each message a second time.
    await engine.run.wait_for(lambda: all(i.attempts >= 2 for i in engine.server._queue.snapshot()  # type: ignore[union-attr]
                                          if i.queue_id != engine.ids[1]))


async def test_freeze_thaw_delete(engine: Engine) -> None:
    await request(engine.path, "queue.freeze", id=engine.ids[0])
    states = {i.queue_id: i.state for i in (await engine.server.list_queue()).items}
    assert states[engine.ids[0]] == "frozen"
    await request(engine.path, "queue.thaw", id=engine.ids[0])
    assert (await engine.server.queue_detail(engine.ids[0])).item.state != "frozen"

    assert await request(engine.path, "queue.delete", id=engine.ids[1]) is None
    assert [i.queue_id for i in (await engine.server.list_queue()).items] == [engine.ids[0], engine.ids[2]]
    assert not (engine.server.mailroot.queue / f"{engine.ids[1]}.eml").exists()
    with pytest.raises(NotFoundError, match=engine.ids[1]):
        await request(engine.path, "queue.delete", id=engine.ids[1])


async def test_bounce_returns_the_message_and_badmail_lists_a_null_senders(engine: Engine) -> None:
    await request(engine.path, "queue.bounce", id=engine.ids[0])
    await engine.run.wait_for(lambda: len(engine.run.drop_files()) == 1)  # the NDR, delivered locally to s@
    ndr = engine.run.drop_files()[0].read_bytes()
    assert b"r0@relay.test" in ndr and b"multipart/report" in ndr
    with pytest.raises(NotFoundError):
        await request(engine.path, "queue.show", id=engine.ids[0])

    assert await request(engine.path, "badmail.list") == []
    [null] = await queue_deferred(engine.server, 1, sender="")
    await request(engine.path, "queue.bounce", id=null)  # nobody to return it to: Badmail
    [item] = await request(engine.path, "badmail.list")
    assert item["sender"] == "" and item["recipients"] == ["r0@relay.test"] and item["reason"]


# -- errors -----------------------------------------------------------------------------------------


async def test_errors_come_back_as_their_own_types(tmp_path: Path, engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="no message NOPE"):
        await request(engine.path, "queue.show", id="NOPE")
    with pytest.raises(RequestError, match=r"unknown op 'queue\.explode'"):
        await request(engine.path, "queue.explode")
    with pytest.raises(RequestError, match="'id' is required"):
        await request(engine.path, "queue.freeze")

    # A control socket on a server that has stopped: the facade's StateError, through the socket.
    other = await start_server(make_config(tmp_path / "other"))
    control = ControlServer(partial(answer, other.server), tmp_path / "other.sock")
    await control.start()
    try:
        await other.server.stop()
        with pytest.raises(StateError, match="not running"):
            await request(control.path, "queue.show", id="X")
        assert (await request(control.path, "state"))["state"] == "stopped"
    finally:
        await control.stop()


async def test_no_engine_there(tmp_path: Path) -> None:
    with pytest.raises(ControlUnavailableError):
        await request(tmp_path / "missing.sock", "state")
    stale_socket(tmp_path / "stale.sock")
    with pytest.raises(ControlUnavailableError):
        await request(tmp_path / "stale.sock", "state")
    assert issubclass(ControlUnavailableError, EngineError)


async def test_sync_client_from_a_thread(engine: Engine) -> None:
    state = await asyncio.to_thread(request_sync, engine.path, "state")
    assert state["state"] == "started"
    with pytest.raises(NotFoundError):
        await asyncio.to_thread(request_sync, engine.path, "queue.thaw", id="NOPE")


@pytest.mark.parametrize(("line", "message"), [
    (b"not json", "not a JSON request"),
    (b"\xff\xfe", "not a JSON request"),
    (b"[1, 2]", 'a request is an object {"op": NAME'),
    (b'{"args": {}}', 'a request is an object {"op": NAME'),
    (b'{"op": 7}', 'a request is an object {"op": NAME'),
    (b"[" * 30000 + b"]" * 30000, "not a JSON request"),
    (b'{"op": "state", "args": [1]}', '"args" must be an object'),
    (b'{"op": "state", "verbose": true}', "unexpected keys ['verbose']"),
    (b'{"op": "rm -rf /"}', "unknown op 'rm -rf /'; known: state, counters, queue.list"),
    (b'{"op": "state", "args": {"x": 1}}', "state: unknown argument 'x'"),
    (b'{"op": "queue.show", "args": {}}', "queue.show: 'id' is required"),
    (b'{"op": "queue.show", "args": {"id": null}}', "queue.show: 'id' must be a string"),
    (b'{"op": "queue.show", "args": {"id": 5}}', "queue.show: 'id' must be a string"),
    (b'{"op": "queue.list", "args": {"limit": -1}}', "'limit' must be a whole number >= 0"),
    (b'{"op": "queue.list", "args": {"limit": true}}', "'limit' must be a whole number >= 0"),
    (b'{"op": "queue.list", "args": {"limit": 1.5}}', "'limit' must be a whole number >= 0"),
    (b'{"op": "queue.list", "args": {"descending": "yes"}}', "'descending' must be true or false"),
    (b'{"op": "queue.flush", "args": {"ids": "ABC"}}', "'ids' must be a list of strings"),
    (b'{"op": "queue.flush", "args": {"ids": [1]}}', "'ids' must be a list of strings"),
    (b'{"op": "queue.list", "args": {"limit": "x", "bogus": 1}}', "unknown argument 'bogus'; 'limit' must be"),
])
async def test_malformed_requests_get_one_clear_error(engine: Engine, line: bytes, message: str) -> None:
    # The bad request, then a good one on the same connection: the connection survives a bad request.
    replies = await exchange(engine.path, line + b"\n" + b'{"op": "state"}\n')
    assert len(replies) == 2
    assert replies[0]["ok"] is False and replies[0]["error"]["type"] == "RequestError"
    assert message in replies[0]["error"]["message"]
    assert replies[1]["ok"] is True and replies[1]["result"]["state"] == "started"


async def test_several_requests_on_one_connection_and_blank_lines(engine: Engine) -> None:
    replies = await exchange(engine.path, b'{"op":"state"}\r\n\n  \n{"op":"queue.list","args":{"limit":1}}\n'
                                          b'{"op":"queue.show","args":{"id":"NOPE"}}\n{"op":"state"}')
    assert [r["ok"] for r in replies] == [True, True, False]  # the last line lacks its newline: not a request
    assert replies[1]["result"]["total"] == 3 and len(replies[1]["result"]["items"]) == 1
    assert replies[2]["error"] == {"type": "NotFoundError", "message": "no message NOPE in the queue"}


async def test_a_huge_request_is_refused_and_the_connection_closed(engine: Engine) -> None:
    huge = b'{"op": "queue.show", "args": {"id": "' + b"A" * MAX_REQUEST_BYTES + b'"}}\n{"op": "state"}\n'
    [reply] = await exchange(engine.path, huge)
    assert reply["error"] == {"type": "RequestError", "message": f"request longer than {MAX_REQUEST_BYTES} bytes"}
    assert (await request(engine.path, "state"))["state"] == "started"  # the server itself is fine


async def test_concurrent_clients(engine: Engine) -> None:
    results = await asyncio.gather(*(request(engine.path, "queue.list") for _ in range(20)))
    assert all(r["total"] == 3 for r in results)


def test_the_op_table_is_the_protocol() -> None:
    assert list(OPS)[:10] == ["state", "counters", "queue.list", "queue.show", "queue.flush", "queue.freeze",
                              "queue.thaw", "queue.delete", "queue.bounce", "badmail.list"]
    assert {"server.stop", "config.set", "config.replicate", "domain.add", "sessions.terminate"} <= set(OPS)


def test_each_op_says_whether_a_viewer_may_run_it() -> None:
    read = {name for name, op in OPS.items() if op.access == "read"}
    assert {"state", "counters", "queue.list", "queue.show", "config.get", "sessions.list"} <= read
    assert not read & {"queue.delete", "config.set", "server.stop", "domain.delete", "sessions.terminate"}
    assert may_run("viewer", "queue.list") and not may_run("viewer", "queue.delete")
    assert may_run("admin", "queue.delete") and not may_run("admin", "no.such.op")
    assert not may_run("", "state")  # an unknown role may do nothing
    assert may_run("viewer", "events.list")
