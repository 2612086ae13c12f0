"""Every action of the SMTP Service Manager (HTML), posted as its form does, against a real `smtpsvc serve`
(aiohttp as the browser, with the session cookie and the CSRF token of the page): server start/stop/pause,
domains, sessions, the queue (paging, retry/thaw/bounce/delete), Badmail and Drop; and, on every page, the
headers and the markup the issue asks for (no caching, no framing, no inline script, a label for each field)."""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from admin_support import OPERATORS, AdminServe, cli
from serve_support import free_port

from engine.conf.config_file import load_config

pytestmark = pytest.mark.slow


@dataclass
class Page:
    status: int
    path: str
    text: str
    headers: dict[str, str]

    @property
    def flash(self) -> str:
        found = re.search(r'<p class="flash [a-z]+" role="[a-z]+">([^<]*)</p>', self.text)
        return found[1] if found else ""


class Markup(HTMLParser):
    """What the page's markup does that a strict CSP or a screen reader would mind."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.handlers: list[str] = []  # onclick=... attributes
        self.styles = 0  # style="..." attributes
        self.labelled_ids: set[str] = set()
        self.unlabelled: list[str] = []  # controls with neither a label nor an aria-label
        self._controls: list[tuple[str, str]] = []  # (id, description) to match against label[for]
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.handlers += [name for name in a if name.startswith("on")]
        self.styles += "style" in a
        if tag == "script" and not a.get("src"):
            self.inline_scripts += 1
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.labelled_ids.add(str(a["for"]))
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            if self._in_label or a.get("aria-label"):
                return
            self._controls.append((str(a.get("id") or ""), f"<{tag} name={a.get('name')!r}>"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1

    def check(self, page: Page) -> None:
        self.feed(page.text)
        unlabelled = [what for ident, what in self._controls if not ident or ident not in self.labelled_ids]
        assert (self.inline_scripts, self.handlers, self.styles, unlabelled) == (0, [], 0, []), page.path


class Browser:
    """A logged-in browser session: GET pages, POST their forms with the page's CSRF token."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url
        self.csrf = ""
        self.seen: list[Page] = []

    async def get(self, path: str) -> Page:
        async with self.session.get(self.url + path, ssl=False) as response:
            page = Page(response.status, response.url.path_qs, await response.text(), dict(response.headers))
        token = re.search(r'<meta name="csrf-token" content="([^"]*)">', page.text)
        self.csrf = token[1] if token else self.csrf
        self.seen.append(page)
        return page

    async def post(self, path: str, fields: list[tuple[str, str]]) -> Page:
        """The form posted (303 to a page, followed as a browser does)."""
        async with self.session.post(self.url + path, data=[("csrf", self.csrf), *fields], ssl=False) as response:
            return Page(response.status, response.url.path_qs, await response.text(), dict(response.headers))

    async def login(self, name: str, password: str) -> None:
        page = await self.get("/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text)
        assert token
        async with self.session.post(self.url + "/login", data={"login_token": token[1], "name": name,
                                                                "password": password}, ssl=False) as response:
            assert response.status == 200 and "/login" not in response.url.path
        await self.get("/")


def send(port: int, recipients: list[str], count: int = 1, subject: str = "held") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for n in range(count):
            client.sendmail("ann@example.test", recipients, f"Subject: {subject} {n}\r\n\r\nhi\r\n".encode())


def post_file(engine: AdminServe, path: Path, data: bytes) -> None:
    path.write_bytes(data)
    subprocess.run(["curl", "-sSk", "-u", f"boss:{OPERATORS['boss'][0]}", "-F", f"file=@{path}",
                    f"{engine.url}/post"], check=True, capture_output=True, timeout=60)


def queue_ids(page: Page) -> list[str]:
    return re.findall(r'<input type="checkbox" name="id" value="([^"]+)"', page.text)


def greeting(port: int) -> int:
    """The code of the server's greeting to a new connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        return int(connection.makefile("rb").readline()[:3])


@pytest.fixture
def engine(tmp_path: Path) -> AdminServe:
    process = AdminServe(tmp_path / "a")
    conf = str(process.config)
    # A remote domain whose smart host refuses connections: its mail stays in the queue.
    assert cli("config", "domain", "add", "partner.test", "--type", "remote", "--relay", "--smart-host",
               f"[127.0.0.1]:{free_port()}", "--config", conf) == 0
    return process


async def test_every_action_of_the_html_manager(engine: AdminServe, tmp_path: Path) -> None:
    with engine:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # an IP host
            browser = Browser(session, engine.url)
            await browser.login("boss", OPERATORS["boss"][0])
            await server_actions(browser, engine)
            await session_actions(browser, engine)
            await queue_actions(browser, engine)
            await folder_actions(browser, engine, tmp_path)
            await domain_actions(browser, engine)
            for path in ("/properties/General", "/properties/Security", "/counters", "/events", "/upload",
                         "/operators", "/domains/partner.test"):
                assert (await browser.get(path)).status == 200, path

            for page in browser.seen:  # every page the manager showed on the way
                if page.path.startswith("/static"):
                    continue
                assert page.headers["Cache-Control"] == "no-store", page.path
                assert page.headers["X-Frame-Options"] == "DENY", page.path
                csp = page.headers["Content-Security-Policy"]
                assert "script-src 'self';" in csp and "unsafe-inline" not in csp, page.path
                Markup().check(page)
            assert len({page.path.split("?")[0] for page in browser.seen}) >= 15


async def until_state(browser: Browser, state: str, timeout: float = 30.0) -> None:
    """Reload the server page until it shows ``state`` (another process: no event to wait on), bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while f"data-state>{state}<" not in (await browser.get("/")).text:
        assert asyncio.get_running_loop().time() < deadline, f"the server never became {state}"
        await asyncio.sleep(0.1)


async def server_actions(browser: Browser, engine: AdminServe) -> None:
    page = await browser.post("/server", [("action", "pause")])
    assert page.flash == "Pause: done." and 'data-state>paused<' in page.text
    assert greeting(engine.port) == 421  # paused: new connections are turned away
    page = await browser.post("/server", [("action", "continue")])
    assert page.flash == "Continue: done." and 'data-state>started<' in page.text
    page = await browser.post("/server", [("action", "stop")])
    assert page.flash == "Stop: done." and 'data-state>stopping<' in page.text  # the stop goes on after the answer
    await until_state(browser, "stopped")
    with pytest.raises(OSError):
        greeting(engine.port)
    page = await browser.post("/server", [("action", "start")])
    assert page.flash == "Start: done." and 'data-state>started<' in page.text
    assert greeting(engine.port) == 220
    page = await browser.post("/server", [("action", "start")])  # already started: said, not a crash
    assert page.status == 200 and "flash error" in page.text


async def domain_actions(browser: Browser, engine: AdminServe) -> None:
    page = await browser.post("/domains", [("action", "add"), ("name", "branch.test"), ("type", "alias")])
    assert page.flash == "Added the domain branch.test."
    page = await browser.post("/domains", [("action", "set_default"), ("name", "branch.test")])
    assert page.flash == "branch.test is now the default domain."
    domains = {d.name: d.type for d in load_config(engine.config).domains}
    assert domains["branch.test"] == "default"
    page = await browser.post("/domains", [("action", "add"), ("name", "gone.test"), ("type", "remote")])
    page = await browser.post("/domains", [("action", "delete"), ("name", "gone.test")])
    assert page.flash == "Deleted gone.test." and "/domains/gone.test" not in page.text
    assert "gone.test" not in {d.name for d in load_config(engine.config).domains}
    page = await browser.post("/domains", [("action", "delete"), ("name", "branch.test")])  # the default
    assert "flash error" in page.text and "branch.test" in {d.name for d in load_config(engine.config).domains}


async def session_actions(browser: Browser, engine: AdminServe) -> None:
    client = smtplib.SMTP("127.0.0.1", engine.port, timeout=10)
    try:
        client.ehlo("lingering.test")
        page = await browser.get("/sessions")
        ids = re.findall(r'<input type="hidden" name="id" value="([^"]+)">', page.text)
        assert len(ids) == 1 and "1 current session" in page.text
        page = await browser.post("/sessions", [("action", "terminate"), ("id", ids[0])])
        assert page.flash == "The session was ended."
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
            client.noop()
    finally:
        client.close()
    page = await browser.post("/sessions", [("action", "terminate_all")])
    assert page.flash == "Every session was ended." and "No current sessions." in page.text


async def queue_actions(browser: Browser, engine: AdminServe) -> None:
    send(engine.port, ["x@partner.test"], count=52)
    page = await browser.get("/queue")
    first = queue_ids(page)
    assert len(first) == 50 and "50 of 52 messages" in page.text and "Page 1 of 2" in page.text
    assert 'href="/queue?page=2" rel="next"' in page.text
    page = await browser.get("/queue?page=2")
    second = queue_ids(page)
    assert len(second) == 2 and not set(second) & set(first) and "Page 2 of 2" in page.text
    one, two = second

    page = await browser.post("/queue", [("action", "retry"), ("id", one), ("id", two), ("back", "/queue?page=2")])
    assert page.flash == "2 message(s) due for delivery now." and page.path == "/queue?page=2"
    page = await browser.post("/queue", [("action", "freeze"), ("id", one), ("back", "/queue")])
    assert page.flash == "1 message(s) frozen."
    page = await browser.get("/queue?state=frozen")
    assert queue_ids(page) == [one] and "(1 matching)" in page.text
    page = await browser.post("/queue", [("action", "thaw"), ("id", one), ("back", "/queue?state=frozen")])
    assert page.flash == "1 message(s) thawed." and queue_ids(page) == []

    page = await browser.get(f"/queue/{one}")
    assert "SMTP transcript" in page.text and "x@partner.test" in page.text
    page = await browser.post("/queue", [("action", "bounce"), ("id", one), ("back", "/queue")])
    assert page.flash == "1 message(s) returned to the sender."
    page = await browser.post("/queue", [("action", "delete"), ("id", two), ("back", "/queue")])
    assert page.flash == "1 message(s) deleted." and "50 of 50 messages" in page.text
    page = await browser.post("/queue", [("action", "delete"), ("id", "NOSUCHID"), ("back", "/queue")])
    assert page.flash.startswith("NOSUCHID: ")
    page = await browser.post("/queue", [("action", "delete"), ("back", "/queue")])
    assert page.flash == "Select one or more messages first."
    page = await browser.get("/queue?q=nothing-like-this")
    assert "(0 matching)" in page.text and "nothing matches" in page.text
    await browser.post("/queue", [("action", "delete"), *(("id", i) for i in first), ("back", "/queue")])

    # The bounced message's notice went to its sender, a local address: it is in Drop.
    page = await browser.get("/drop")
    assert "Delivery Status Notification (Failure)" in page.text


async def folder_actions(browser: Browser, engine: AdminServe, tmp_path: Path) -> None:
    send(engine.port, ["bob@example.test"], subject="kept in drop")
    drop = engine.mailroot / "Drop"
    page = await browser.get("/drop")
    names = re.findall(r'<a href="/drop/([^"?]+)', page.text)
    assert len(names) == len(list(drop.iterdir())) >= 2
    item = await browser.get(f"/drop/{names[0]}")
    assert item.status == 200 and "Subject:" in item.text
    page = await browser.post("/drop", [("action", "resend"), ("name", names[0])])
    assert page.flash == f"A copy of {names[0]} went into Pickup." and (drop / names[0]).exists()
    deadline = asyncio.get_running_loop().time() + 30
    while len(list(drop.iterdir())) < len(names) + 1:  # delivered again (another process: polled, bounded)
        assert asyncio.get_running_loop().time() < deadline, "the resent copy never reached Drop"
        await asyncio.sleep(0.1)
    names = re.findall(r'<a href="/drop/([^"?]+)', (await browser.get("/drop")).text)
    page = await browser.post("/drop", [("action", "delete"), ("name", names[0])])
    assert page.flash == f"Deleted {names[0]}." and not (drop / names[0]).exists()

    loop = b"".join(b"Received: from hop%d.test by x.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % n
                    for n in range(40)) + b"From: a@example.test\r\nTo: bob@example.test\r\n\r\nloop\r\n"
    post_file(engine, tmp_path / "loop.eml", loop)
    page = await browser.get("/badmail")
    bad = re.findall(r'<a href="/badmail/([^"]+)"', page.text)
    assert len(bad) == 1 and "hop count exceeded" in page.text
    item = await browser.get(f"/badmail/{bad[0]}")
    assert "hop0.test" in item.text
    page = await browser.post("/badmail", [("action", "resend"), ("name", bad[0])])
    assert page.flash == f"{bad[0]} went back into Pickup."
    page = await browser.get("/badmail")
    for name in re.findall(r'<a href="/badmail/([^"]+)"', page.text):
        page = await browser.post("/badmail", [("action", "delete"), ("name", name)])
        assert page.flash == f"Deleted {name}."
    assert not list((engine.mailroot / "Badmail").glob(bad[0]))
