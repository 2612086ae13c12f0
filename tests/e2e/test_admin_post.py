"""The Posting Acceptor against a real `smtpsvc serve`: uploads with curl go through Pickup, answered per file;
the poster role may post and nothing else."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from admin_support import OPERATORS, AdminServe, cli
from engine_support import make_config

from app.serve import admin_setups
from engine.admin.http_post import PROBE_BYTES, _probe
from engine.admin.http_server import API_MAX_BODY, AdminServer
from engine.admin.operators import operator_store
from engine.conf.config_file import load_config
from engine.pickup.pickup import PickupError, parse_pickup
from engine.server import VirtualServer

POSTER = ("mailer", "mailer-secret")
LOCAL = b"From: a@example.test\r\nTo: bob@example.test\r\nSubject: posted\r\n\r\nhello\r\n"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AdminServe]:
    process = AdminServe(tmp_path / "a")
    assert cli("operator", "add", POSTER[0], "--role", "poster", "--password-stdin", "--config",
               str(process.config), stdin=POSTER[1] + "\n") == 0
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.stop()


def boss() -> str:
    return f"boss:{OPERATORS['boss'][0]}"


def curl_post(engine: AdminServe, user: str, files: dict[str, bytes], directory: Path) -> tuple[int, dict[str, Any]]:
    """POST the files with `curl -F file=@NAME`; (HTTP status, the JSON answer)."""
    form = []
    for name, data in files.items():
        (directory / name).write_bytes(data)
        form += ["-F", f"file=@{directory / name}"]
    out = subprocess.run(["curl", "-sSk", "-u", user, "-w", "\n%{http_code}", *form, f"{engine.url}/post"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    body, _, status = out.rpartition("\n")
    return int(status), json.loads(body)


def by_file(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["file"]: r for r in answer["result"]["files"]}


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll the filesystem of another process (no event crosses the process boundary), bounded."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def api(engine: AdminServe, user: str, op: str) -> int:
    out = subprocess.run(["curl", "-sSk", "-o", "/dev/null", "-w", "%{http_code}", "-u", user, "-H",
                          "Content-Type: application/json", "-d", "{}", f"{engine.url}/api/v1/{op}"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return int(out)


def test_uploads_go_through_pickup_and_are_answered_per_file(engine: AdminServe, tmp_path: Path) -> None:
    files = {
        "local.eml": LOCAL,
        "envelope.txt": b"x-sender: s@example.test\r\nx-receiver: carol@example.test\r\n"
                        b"From: s@example.test\r\nSubject: with envelope\r\n\r\nhi\r\n",
        "notes.txt": b"just some words, no headers\r\n",
        "nobody.eml": b"From: a@example.test\r\nSubject: no one\r\n\r\nbody\r\n",
        "picture.png": b"\x89PNG\r\n\x1a\n",
        "huge.eml": b"From: a@example.test\r\nTo: bob@example.test\r\n\r\n" + b"x" * (2100 * 1024) + b"\r\n",
        # Far beyond the API's body limit, within the message size limit: streamed through, whole.
        "big.eml": b"From: a@example.test\r\nTo: bob@example.test\r\nSubject: big\r\n\r\n"
                   + b"0123456789abcdef" * 12 * 1024 * 5 + b"\r\n",
        # A message Pickup itself refuses (a mail loop): its Badmail reason is the answer.
        "loop.eml": b"".join(b"Received: from hop%d.test by x.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % n
                             for n in range(40)) + LOCAL,
    }
    status, answer = curl_post(engine, boss(), files, tmp_path)
    results = by_file(answer)
    assert status == 200
    for name in ("local.eml", "envelope.txt", "big.eml"):
        assert results[name]["state"] == "queued" and results[name]["accepted"]
    assert "no 'Name: value' header" in results["notes.txt"]["reason"]
    assert "no recipients" in results["nobody.eml"]["reason"]
    assert "only .eml and .txt" in results["picture.png"]["reason"]
    assert "too large" in results["huge.eml"]["reason"]
    loop = results["loop.eml"]
    assert loop["state"] == "refused" and "hop count exceeded" in loop["reason"] and "in Badmail as" in loop["reason"]
    big = (engine.mailroot / "Drop" / f"{results['big.eml']['queue_id']}.eml").read_bytes()
    assert big.endswith(files["big.eml"].split(b"\r\n\r\n", 1)[1]) and len(big) > API_MAX_BODY * 3
    dropped = {p.name for p in (engine.mailroot / "Drop").iterdir()}
    assert {f"{results['local.eml']['queue_id']}.eml", f"{results['envelope.txt']['queue_id']}.eml"} <= dropped
    # The refused-at-once files never reached Pickup (nothing badmailed but the loop); nothing is left over.
    assert len(list((engine.mailroot / "Badmail").glob("*.BAD"))) == 1
    assert not list((engine.mailroot / "Pickup").iterdir())
    assert not list((engine.mailroot / "SortTemp").glob("post-*"))

    refused = subprocess.run(["curl", "-sSk", "-u", f"watcher:{OPERATORS['watcher'][0]}", "-F",
                              f"file=@{tmp_path / 'local.eml'}", f"{engine.url}/post"],
                             capture_output=True, text=True, timeout=60).stdout
    assert "needs the admin or the poster role" in refused


def test_stopped_pickup_answers_202_and_loses_nothing_to_a_kill(engine: AdminServe, tmp_path: Path) -> None:
    assert api(engine, boss(), "server.stop") == 200
    status, answer = curl_post(engine, boss(), {"later.eml": LOCAL}, tmp_path)
    [result] = answer["result"]["files"]
    assert status == 202 and result["state"] == "pickup" and result["accepted"]
    assert result["detail"] == (f"accepted into Pickup; the Pickup service is not running (the server is stopped, "
                                f"or its queue cannot store now). It is queued as {result['queue_id']} when the "
                                "service takes it.")
    queue_id = result["queue_id"]
    assert [p.name for p in (engine.mailroot / "Pickup").iterdir()] == [f"{queue_id}-later.eml"]
    engine.kill()
    engine.start()  # the Pickup service runs again: the file is queued under the id it was answered with
    wait_for(lambda: (engine.mailroot / "Drop" / f"{queue_id}.eml").exists(), "the posted message in Drop")
    assert not list((engine.mailroot / "Pickup").iterdir())


def test_kill_right_after_the_answer_loses_nothing(engine: AdminServe, tmp_path: Path) -> None:
    files = {f"m{n}.eml": LOCAL.replace(b"posted", b"posted %d" % n) for n in range(5)}
    status, answer = curl_post(engine, boss(), files, tmp_path)
    engine.kill()
    ids = [r["queue_id"] for r in answer["result"]["files"]]
    assert status in (200, 202) and len(ids) == 5 and all(r["accepted"] for r in answer["result"]["files"])

    def where(queue_id: str) -> list[Path]:
        root = engine.mailroot
        return [*root.glob(f"Drop/{queue_id}.eml"), *root.glob(f"Queue/{queue_id}.eml"),
                *root.glob(f"Pickup/{queue_id}-*"), *root.glob(f"SortTemp/pickup-{queue_id}-*")]

    assert all(where(queue_id) for queue_id in ids)  # durable before the answer: in Pickup or queued
    engine.start()
    wait_for(lambda: all((engine.mailroot / "Drop" / f"{q}.eml").exists() for q in ids), "every message in Drop")
    assert len(list((engine.mailroot / "Drop").iterdir())) == 5  # each once


def routes(engine: AdminServe) -> list[tuple[str, str]]:
    """(method, path) of every route of the admin server (the API, the HTML manager, the Posting Acceptor)."""
    app = AdminServer(VirtualServer(load_config(engine.config)), setups=admin_setups()).application()
    found = []
    for route in app.router.routes():
        path = re.sub(r"\{[^}]+\}", "x", route.resource.canonical if route.resource else "")
        if route.method != "HEAD" and not path.startswith("/static"):
            found.append((route.method, path))
    return found


async def test_a_poster_may_post_and_nothing_else(engine: AdminServe, tmp_path: Path) -> None:
    status, answer = curl_post(engine, ":".join(POSTER), {"by-poster.eml": LOCAL}, tmp_path)
    assert status == 200 and by_file(answer)["by-poster.eml"]["state"] == "queued"

    everything = routes(engine)
    assert len(everything) > 30 and ("POST", "/api/v1/x") in everything
    auth = {"Authorization": "Basic " + base64.b64encode(":".join(POSTER).encode()).decode()}
    async with aiohttp.ClientSession(engine.url, headers=auth) as basic:
        for method, path in everything:
            if path in ("/post", "/upload", "/login", "/logout"):
                continue
            for op in (["state", "queue.list", "config.get", "operators.list", "server.stop"]
                       if path == "/api/v1/x" else ["x"]):
                async with basic.request(method, path.replace("/x", f"/{op}") if path == "/api/v1/x" else path,
                                         json={}, ssl=False, allow_redirects=False) as response:
                    if (method, path) == ("GET", "/"):  # the start page sends a poster to the upload page
                        assert response.status == 303 and response.headers["Location"] == "/upload"
                        continue
                    assert response.status == 403, (method, path, op)
                    assert "may only post messages" in await response.text()  # JSON for the API, a page else
        async with basic.get("/upload", ssl=False) as response:
            assert response.status == 200

    # The HTML login lands on the upload page; the menu offers nothing else; every other page is refused.
    async with aiohttp.ClientSession(engine.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:  # an IP host
        async with browser.get("/login", ssl=False) as response:
            token = re.search(r'name="login_token" value="([^"]+)"', await response.text())
        assert token
        async with browser.post("/login", data={"login_token": token[1], "name": POSTER[0], "password": POSTER[1]},
                                ssl=False, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/upload"
        async with browser.get("/", ssl=False, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/upload"
        async with browser.get("/upload", ssl=False, headers={"Accept": "text/html"}) as response:
            page = await response.text()
        assert 'action="/post"' in page and re.findall(r'<li><a href="([^"]+)"', page) == ["/upload"]
        for method, path in everything:
            if method == "GET" and path not in ("/", "/upload", "/login"):
                async with browser.get(path, ssl=False, headers={"Accept": "text/html"},
                                       allow_redirects=False) as response:
                    assert response.status == 403, path
                    assert "may only post messages" in await response.text()


def _verdict(data: bytes) -> str:
    try:
        parse_pickup(data, "example.test")
    except PickupError as error:
        return f"{type(error).__name__}: {error}"
    return "taken"


BIG_BODY = b"0123456789abcdef" * (200 * 1024)  # 3.2 MB: beyond what the checks read of a file


@pytest.mark.parametrize("data", [
    b"From: a@example.test\r\nTo: b@example.test\r\n\r\n" + BIG_BODY + b"\r\n",
    b"From: a@example.test\r\nSubject: nobody\r\n\r\n" + BIG_BODY + b"\r\n",
    b"just words\r\n" + BIG_BODY,
    b"From: a@example.test\r\n" + b"X-Long: " + b"y" * (1100 * 1024) + b"\r\nTo: b@example.test\r\n\r\nbody\r\n",
    b"From: a@example.test\r\nTo: b@example.test\r\n\r\n" + BIG_BODY + b"\r\n.\r\n",  # dot-stuffed, as from DATA
    b"..From: a@example.test\r\nTo: b@example.test\r\n\r\n" + BIG_BODY + b"\r\n.\r\n",
    b"From: a@example.test\r\nTo: b@example.test\r\n\r\n" + BIG_BODY + b"\r\n.",
    b"x-sender: s@example.test\r\nx-receiver: r@example.test\r\nSubject: envelope\r\n\r\n" + BIG_BODY,
    b"\r\n\r\n" + b" " * (1200 * 1024),
    b"\r\n\r\n" + b" " * (1200 * 1024) + b"From: a@example.test\r\n",
])
def test_the_checks_of_a_large_upload_read_its_head_only_and_judge_it_as_the_whole(data: bytes, tmp_path: Path) -> None:
    spool = tmp_path / "post.tmp"
    spool.write_bytes(data)
    probe = _probe(spool, len(data))
    assert len(probe) < PROBE_BYTES + 100 < len(data)
    assert _verdict(probe) == _verdict(data)


@pytest.fixture
def stopped_engine(tmp_path: Path) -> VirtualServer:
    """An engine never started (the Pickup service takes nothing: an upload is answered once it is in Pickup),
    its admin server on plain loopback with one admin operator."""
    operators = tmp_path / "operators"
    operator_store(operators).add("boss", "boss-secret", "admin")
    return VirtualServer(make_config(tmp_path, admin_listen="127.0.0.1:0", admin_allow_plain_loopback=True,
                                     operators_file=str(operators), max_message_size_kb=65536))


async def test_a_large_upload_costs_little_memory(stopped_engine: VirtualServer, tmp_path: Path) -> None:
    message = tmp_path / "large.eml"
    with open(message, "wb") as out:
        out.write(b"From: a@example.test\r\nTo: bob@example.test\r\nSubject: large\r\n\r\n")
        for _ in range(24 * 16):  # 24 MB
            out.write(b"0123456789abcdef" * 4095 + b"0123456789abcd\r\n")
    admin = AdminServer(stopped_engine, setups=admin_setups())
    await admin.start()
    try:
        tracemalloc.start()
        try:
            with open(message, "rb") as body:
                form = aiohttp.FormData()
                form.add_field("file", body, filename="large.eml", content_type="message/rfc822")
                auth = {"Authorization": aiohttp.encode_basic_auth("boss", "boss-secret")}
                async with aiohttp.ClientSession(headers=auth) as client, \
                        client.post(f"{admin.url}/post", data=form) as response:
                    answer = await response.json()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await admin.stop()
    [result] = answer["result"]["files"]
    assert response.status == 202 and result["state"] == "pickup", answer
    [landed] = stopped_engine.mailroot.pickup.iterdir()
    assert landed.stat().st_size == message.stat().st_size
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.1f} MB allocated at the peak for a 24 MB upload"
