"""Every option of ``engine.conf.options.OPTIONS`` takes effect on a RUNNING engine when applied.

One probe per option: it applies a changed value with ``apply_config`` (what the property sheet and a running
engine's ``smtpsvc config set`` do) and observes the effect from outside, through real sockets. An option with
neither a probe nor an entry in ``NOT_YET_PROBED`` fails ``test_every_option_has_a_live_probe``: a new option
comes with its test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.web_exceptions import NotAppKeyWarning
from dns_support import DnsRecords, running_dnsmasq
from engine_support import LOCAL_DOMAIN, Running, make_config

from engine.admin.http_server import AdminServer
from engine.admin.operators import operator_store
from engine.bounce.badmail import write_badmail
from engine.conf.options import OPTIONS
from engine.errors import BindError
from engine.server import VirtualServer
from engine.smtpd.tls import create_self_signed
from engine.smtpd.users import UserStore

MESSAGE = "From: a@example.test\r\nSubject: live\r\n\r\nbody\r\n"


class Clock:
    """The engine's wall clock, moved by the test (retry schedules, expiry) instead of waited for."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Live:
    """A running engine, a way to change one setting of it, and real clients."""

    def __init__(self, running: Running, clock: Clock, tmp_path: Path) -> None:
        self.running = running
        self.server = running.server
        self.clock = clock
        self.tmp_path = tmp_path

    async def set(self, **values: object) -> None:
        config = self.server.config()
        await self.server.apply_config(replace(config, server=replace(config.server, **values)))  # type: ignore[arg-type]

    async def talk(self, *commands: str, port: int | None = None, host: str = "127.0.0.1") -> list[str]:
        """Connect, then send each command; the last line of the greeting and of each reply, in order."""
        return await asyncio.to_thread(_dialogue, host, port or self.running.port, list(commands))

    async def send(self, rcpts: list[str], body: str = MESSAGE, sender: str = "a@example.test") -> list[str]:
        return await self.talk("EHLO client.test", f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in rcpts),
                               "DATA", body + ".", "QUIT")

    def queued(self) -> list[str]:
        return list(self.server._store().entries)

    async def wait(self, predicate: Callable[[], bool]) -> None:
        await self.running.wait_for(predicate, 20)


def _dialogue(host: str, port: int, commands: list[str]) -> list[str]:
    replies: list[str] = []
    with socket.create_connection((host, port), timeout=20) as sock, sock.makefile("rb") as reader:
        def reply() -> str:
            while True:
                try:
                    line = reader.readline().decode("latin-1").rstrip("\r\n")
                except ConnectionResetError:
                    return "(closed)"
                if not line:
                    return "(closed)"
                if len(line) < 4 or line[3] != "-":
                    return line

        replies.append(reply())
        for command in commands:
            try:
                sock.sendall(command.encode("latin-1") + b"\r\n")
            except OSError:
                replies.append("(closed)")
                break
            if command == "DATA" and not replies[-1].startswith("5"):
                replies.append(reply())
                continue
            replies.append(reply())
            if replies[-1] == "(closed)":
                break
    return replies


def _ehlo_lines(host: str, port: int) -> list[str]:
    with socket.create_connection((host, port), timeout=20) as sock, sock.makefile("rb") as reader:
        reader.readline()
        sock.sendall(b"EHLO client.test\r\n")
        lines = []
        while True:
            line = reader.readline().decode("latin-1").rstrip("\r\n")
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return lines


class Sink:
    """A next hop on loopback: counts connections, can hold its greeting, records MAIL FROM and messages."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls  # offers STARTTLS with this context
        self.open = 0
        self.most = 0
        self.connections = 0
        self.senders: list[str] = []
        self.logins: list[str] = []
        self.messages = 0
        self.hold = asyncio.Event()
        self.hold.set()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.hold.set()
        if self._server is not None:
            self._server.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.connections += 1
        self.most = max(self.most, self.open)
        try:
            await self.hold.wait()
            writer.write(b"220 sink.test ESMTP\r\n")
            in_data = False
            while line := await reader.readline():
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        self.messages += 1
                        writer.write(b"250 2.0.0 Ok\r\n")
                    continue
                verb = line[:4].upper()
                if verb == b"MAIL":
                    self.senders.append(line.decode().strip())
                if verb == b"DATA":
                    in_data = True
                    writer.write(b"354 go on\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                elif verb == b"EHLO":
                    starttls = b"250-STARTTLS\r\n" if self.tls and writer.get_extra_info("sslcontext") is None else b""
                    writer.write(b"250-sink.test\r\n" + starttls + b"250-AUTH PLAIN\r\n250 8BITMIME\r\n")
                elif verb == b"STAR" and self.tls is not None:
                    writer.write(b"220 2.0.0 Ready to start TLS\r\n")
                    await writer.drain()
                    await writer.start_tls(self.tls)
                    continue
                elif verb == b"AUTH":
                    self.logins.append(line.decode().strip())
                    writer.write(b"235 2.7.0 Authentication successful\r\n")
                else:
                    writer.write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.open -= 1
            writer.close()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    clock = Clock()
    server = VirtualServer(make_config(tmp_path), clock=clock)
    await server.start()
    try:
        yield Live(Running(server), clock, tmp_path)
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def sink(tls: ssl.SSLContext | None = None) -> AsyncIterator[Sink]:
    next_hop = Sink(tls)
    await next_hop.start()
    try:
        yield next_hop
    finally:
        await next_hop.stop()


# --- the probes: one per option ----------------------------------------------------------------------

Probe = Callable[[Live], Awaitable[None]]
PROBES: dict[str, Probe] = {}


def probe(*names: str) -> Callable[[Probe], Probe]:
    def register(function: Probe) -> Probe:
        for name in names:
            PROBES[name] = function
        return function
    return register


@probe("listen")
async def _listen(live: Live) -> None:
    await live.set(listen=("127.0.0.1:0", "127.0.0.2:0"))
    [(_, port)] = [a for a in live.server.bound_addresses if a[0] == "127.0.0.2"]
    assert (await live.talk(port=port, host="127.0.0.2"))[0].startswith("220 ")


@probe("fqdn")
async def _fqdn(live: Live) -> None:
    await live.set(fqdn="live.example.test")
    assert (await live.talk())[0].startswith("220 live.example.test ")


@probe("max_connections", "max_connections_per_peer")
async def _connections(live: Live) -> None:
    for name in ("max_connections", "max_connections_per_peer"):
        await live.set(max_connections=0, max_connections_per_peer=0)
        await live.set(**{name: 1})
        first = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", live.running.port))
        try:
            await asyncio.to_thread(first.recv, 100)
            assert (await live.talk())[0].startswith("421 4.3.2 Too many connections"), name
        finally:
            first.close()


@probe("connection_timeout")
async def _connection_timeout(live: Live) -> None:
    await live.set(connection_timeout=1)
    started = time.monotonic()
    replies = await live.talk("NOOP")  # then idle: the server closes the connection
    assert replies[1].startswith("250")
    with socket.create_connection(("127.0.0.1", live.running.port), timeout=30) as sock:
        data = await asyncio.to_thread(lambda: sock.recv(200) + sock.recv(200))
    assert b"421" in data and time.monotonic() - started < 25


@probe("max_message_size_kb")
async def _message_size(live: Live) -> None:
    await live.set(max_message_size_kb=7)
    assert "SIZE 7168" in await asyncio.to_thread(_ehlo_lines, "127.0.0.1", live.running.port)


@probe("max_session_size_kb")
async def _session_size(live: Live) -> None:
    await live.set(max_message_size_kb=1, max_session_size_kb=2)
    body = MESSAGE + "x" * 700 + "\r\n"
    lines = ["EHLO c.test"]
    for _ in range(3):
        lines += ["MAIL FROM:<a@example.test>", f"RCPT TO:<b@{LOCAL_DOMAIN}>", "DATA", body + "."]
    replies = await live.talk(*lines)
    assert any(r.startswith("552 5.3.4") for r in replies), replies


@probe("max_recipients")
async def _max_recipients(live: Live) -> None:
    await live.set(max_recipients=2)
    replies = await live.talk("EHLO c.test", "MAIL FROM:<a@example.test>",
                              *(f"RCPT TO:<r{n}@{LOCAL_DOMAIN}>" for n in range(3)))
    assert replies[-1].startswith("452 4.5.3") and replies[-2].startswith("250")


@probe("max_hop_count")
async def _max_hop_count(live: Live) -> None:
    await live.set(max_hop_count=1)
    hops = "Received: from a by b; Mon, 7 Dec 2026 10:00:00 +0000\r\n" * 2
    replies = await live.send([f"b@{LOCAL_DOMAIN}"], hops + MESSAGE)
    assert any(r.startswith("554 5.4.6") for r in replies), replies


@probe("badmail_dir")
async def _badmail_dir(live: Live) -> None:
    await live.set(badmail_dir="LiveBad")
    (live.running.mailroot / "Pickup" / "junk.txt").write_bytes(b"junk\r\n")
    folder = live.running.mailroot / "LiveBad"
    await live.wait(lambda: len(list(folder.glob("*.BDR"))) == 1)


@probe("relay_allowed")
async def _relay_allowed(live: Live) -> None:
    rcpt = ["EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<x@elsewhere.example>"]
    assert (await live.talk(*rcpt))[-1].startswith("550 5.7.1")
    await live.set(relay_allowed=("127.0.0.0/8",))
    assert (await live.talk(*rcpt))[-1].startswith("250")


@probe("relay_mode")
async def _relay_mode(live: Live) -> None:
    await live.set(relay_mode="all_except_listed")  # an empty list: every client may relay
    rcpt = ["EHLO c.test", "MAIL FROM:<a@example.test>", "RCPT TO:<x@elsewhere.example>"]
    assert (await live.talk(*rcpt))[-1].startswith("250")


@probe("auth_anonymous")
async def _auth_anonymous(live: Live) -> None:
    await live.set(auth_anonymous=False)
    assert (await live.talk("EHLO c.test", "MAIL FROM:<a@example.test>"))[-1].startswith("530 5.7.0")


@probe("auth_basic", "auth_plaintext_allowed")
async def _auth_basic(live: Live) -> None:
    def offers_auth() -> bool:
        return any(line.startswith("AUTH") for line in _ehlo_lines("127.0.0.1", live.running.port))

    await live.set(auth_basic=True)
    assert not await asyncio.to_thread(offers_auth)  # no TLS: AUTH only when plain text is allowed
    await live.set(auth_plaintext_allowed=True)
    assert await asyncio.to_thread(offers_auth)
    await live.set(auth_basic=False)
    assert not await asyncio.to_thread(offers_auth)


@probe("require_tls")
async def _require_tls(live: Live) -> None:
    await live.set(require_tls=True)
    assert (await live.talk("EHLO c.test", "MAIL FROM:<a@example.test>"))[-1].startswith("530 5.7.0")


@probe("connection_grant", "connection_list")
async def _connection_control(live: Live) -> None:
    await live.set(connection_list=("127.0.0.1",))
    assert (await live.talk())[0].startswith("554 5.7.1")
    await live.set(connection_list=(), connection_grant="only_listed")
    assert (await live.talk())[0].startswith("554 5.7.1")
    await live.set(connection_grant="all_except_listed")
    assert (await live.talk())[0].startswith("220")


@probe("max_bad_commands")
async def _max_bad_commands(live: Live) -> None:
    await live.set(max_bad_commands=2)
    replies = await live.talk("BOGUS", "BOGUS", "BOGUS", "NOOP")
    assert "421 4.7.0 Too many errors, closing transmission channel" in replies, replies


@probe("max_command_line")
async def _max_command_line(live: Live) -> None:
    command = "NOOP " + "x" * 700
    assert (await live.talk(command))[-1].startswith("250")
    await live.set(max_command_line=512)
    assert (await live.talk(command))[-1].startswith("500 5.5.2")


@probe("bare_newline")
async def _bare_newline(live: Live) -> None:
    body = "From: a@example.test\r\nSubject: bare\r\n\r\none\ntwo\r\n"
    assert any(r.startswith("550 5.6.0") for r in await live.send([f"b@{LOCAL_DOMAIN}"], body))
    await live.set(bare_newline="normalize")
    replies = await live.send([f"b@{LOCAL_DOMAIN}"], body)
    assert any(r.startswith("250 2.6.0") for r in replies), replies


@probe("allow_verify")
async def _allow_verify(live: Live) -> None:
    assert (await live.talk(f"VRFY b@{LOCAL_DOMAIN}"))[-1].startswith("252")
    await live.set(allow_verify=False)
    assert (await live.talk(f"VRFY b@{LOCAL_DOMAIN}"))[-1].startswith("502")


@probe("smart_host", "outbound_port", "masquerade_domain")
async def _smart_host(live: Live) -> None:
    async with sink() as next_hop:
        await live.set(smart_host="[127.0.0.1]", outbound_port=next_hop.port, masquerade_domain="masq.test")
        await live.send(["u@relay.test"])
        await live.wait(lambda: next_hop.messages == 1)
        assert next_hop.senders == ["MAIL FROM:<a@masq.test>"]


@probe("dns_servers")
async def _dns_servers(live: Live) -> None:
    records = DnsRecords(mx=[("far.test", "mx.far.test", 10)], hosts=[("mx.far.test", "127.0.0.1")])
    async with sink() as next_hop:
        with running_dnsmasq(live.tmp_path / "dns", records) as dns:
            # MX routing (no smart host) through servers only the new setting names: far.test exists nowhere else.
            await live.set(smart_host="", relay_allowed=("127.0.0.0/8",), outbound_port=next_hop.port,
                           dns_servers=(dns.server,))
            await live.send(["u@far.test"])
            await live.wait(lambda: next_hop.messages == 1)


@probe("max_messages_per_connection")
async def _per_connection(live: Live) -> None:
    for rcpt in ("u@relay.test", "v@relay.test"):
        await live.send([rcpt])
    await live.wait(lambda: len(live.queued()) == 2
                    and not any(e.active for e in live.server._store().entries.values()))
    async with sink() as next_hop:
        await live.set(smart_host=f"[127.0.0.1]:{next_hop.port}", max_messages_per_connection=1)
        await live.server.retry_now()
        await live.wait(lambda: next_hop.messages == 2)
        assert next_hop.connections == 2


@probe("max_outbound_connections", "max_outbound_per_domain")
async def _outbound_limits(live: Live) -> None:
    for name in ("max_outbound_connections", "max_outbound_per_domain"):
        await live.set(smart_host="[127.0.0.1]:1", max_outbound_connections=1000, max_outbound_per_domain=100)
        for n in range(3):
            await live.send([f"u{n}-{name}@relay.test"])
        await live.wait(lambda: len(live.queued()) == 3
                        and not any(e.active for e in live.server._store().entries.values()))
        async with sink() as next_hop:
            next_hop.hold.clear()  # connections stay open, waiting for the greeting
            await live.set(smart_host=f"[127.0.0.1]:{next_hop.port}", max_messages_per_connection=1, **{name: 1})
            await live.server.retry_now()
            delivery = live.server._delivery
            assert delivery is not None
            gate = delivery._global if name == "max_outbound_connections" else delivery._per_domain["relay.test"]
            await live.wait(lambda: next_hop.open == 1 and gate.waiting == 2)  # noqa: B023 - one connects, two wait
            assert next_hop.connections == 1, name
            await live.set(**{name: 3})  # raised while two connections wait for a place
            await live.wait(lambda: next_hop.open == 3)
            next_hop.hold.set()
            await live.wait(lambda: next_hop.messages == 3 and not live.queued())


@probe("outbound_timeout")
async def _outbound_timeout(live: Live) -> None:
    async with sink() as next_hop:
        next_hop.hold.clear()  # never greets
        await live.set(smart_host=f"[127.0.0.1]:{next_hop.port}", outbound_timeout=1)
        await live.send(["u@relay.test"])
        [queue_id] = live.queued()
        await live.wait(lambda: live.server._store().entries[queue_id].record.attempts == 1
                        and not live.server._store().entries[queue_id].active)
        assert next_hop.messages == 0


@probe("retry_intervals_min")
async def _retry_intervals(live: Live) -> None:
    await live.set(retry_intervals_min=(7,))
    await live.send(["u@relay.test"])
    [queue_id] = live.queued()
    entry = live.server._store().entries[queue_id]
    await live.wait(lambda: entry.record.attempts == 1 and not entry.active)
    assert entry.record.next_attempt - entry.record.last_attempt == pytest.approx(7 * 60)


@probe("expiration_min", "delay_notification_min", "ndr_copy_to")
async def _remote_schedule(live: Live) -> None:
    await live.set(delay_notification_min=3, expiration_min=10, ndr_copy_to=f"copies@{LOCAL_DOMAIN}")
    await live.send(["u@relay.test"], sender=f"s@{LOCAL_DOMAIN}")
    [queue_id] = live.queued()
    entry = live.server._store().entries[queue_id]
    await live.wait(lambda: entry.record.attempts == 1 and not entry.active)
    drop = live.running.mailroot / "Drop"

    def notices(rcpt: str) -> int:
        return sum(rcpt in p.read_text("latin-1") for p in drop.glob("*.eml"))

    live.clock.now += 4 * 60  # past the delay notice, not yet expired
    await live.server.retry_now([queue_id])
    await live.wait(lambda: entry.record.delay_notice_sent and notices(f"s@{LOCAL_DOMAIN}") == 1)
    live.clock.now += 7 * 60  # past the expiry: the NDR, and its copy
    await live.server.retry_now([queue_id])
    await live.wait(lambda: not live.queued() and notices(f"copies@{LOCAL_DOMAIN}") == 1)


def _log_lines(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text("utf-8") for p in sorted((folder / "SMTPSVC1").glob("*.log"))}


@probe("log_dir", "log_format", "log_enabled", "log_fields", "log_period")
async def _protocol_log(live: Live) -> None:
    folder = live.tmp_path / "LiveLogs"
    await live.set(log_enabled=False, log_dir=str(folder), log_format="ncsa")
    await live.talk("EHLO off.test", "QUIT")
    await live.set(log_enabled=True)
    await live.talk("EHLO on.test", "QUIT")
    await live.wait(lambda: any("on.test" in text for text in _log_lines(folder).values()))
    [(name, text)] = _log_lines(folder).items()
    assert name.startswith("nc") and "off.test" not in text  # NCSA, and nothing while it was off
    await live.set(log_format="w3c", log_fields=("date", "time", "c-ip", "cs-method"), log_period="hourly")
    await live.talk("EHLO w3c.test", "QUIT")
    await live.wait(lambda: any(n.startswith("ex") for n in _log_lines(folder)))
    [w3c] = [n for n in _log_lines(folder) if n.startswith("ex")]
    assert len(w3c) == len("exYYMMDDHH.log")  # hourly files
    await live.wait(lambda: "QUIT" in _log_lines(folder)[w3c])
    assert "#Fields: date time c-ip cs-method" in _log_lines(folder)[w3c]


PASSWORD = "correct horse battery staple"


def _plain(user: str, password: str = PASSWORD) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@probe("users_file", "auth_default_domain", "authenticated_may_relay", "auth_lockout_failures",
       "auth_failure_delay_ms")
async def _authentication(live: Live) -> None:
    users = live.tmp_path / "users"
    UserStore(users).add(f"bob@{LOCAL_DOMAIN}", PASSWORD)
    await live.set(auth_basic=True, auth_plaintext_allowed=True, auth_failure_delay_ms=0)
    assert (await live.talk("EHLO c.test", _plain(f"bob@{LOCAL_DOMAIN}")))[-1][:3] in ("454", "535")
    await live.set(users_file=str(users))
    assert (await live.talk("EHLO c.test", _plain(f"bob@{LOCAL_DOMAIN}")))[-1].startswith("235")
    assert (await live.talk("EHLO c.test", _plain("bob")))[-1].startswith("535")
    await live.set(auth_default_domain=LOCAL_DOMAIN)
    relay = ["MAIL FROM:<bob@example.test>", "RCPT TO:<x@elsewhere.example>"]
    replies = await live.talk("EHLO c.test", _plain("bob"), *relay)
    assert replies[2].startswith("235") and replies[-1].startswith("250")
    await live.set(authenticated_may_relay=False)
    assert (await live.talk("EHLO c.test", _plain("bob"), *relay))[-1].startswith("550 5.7.1")
    await live.server.unlock_peer("127.0.0.1")  # forget the two failures above (5 allowed so far)
    await live.set(auth_lockout_failures=1)
    replies = await live.talk("EHLO c.test", _plain("bob", "wrong password here"), _plain("bob"))
    assert replies[2].startswith("535") and replies[3].startswith("454 4.7.0")


@probe("tls_certificate", "tls_key", "tls_listen")
async def _tls(live: Live) -> None:
    certificate, key = live.tmp_path / "cert.pem", live.tmp_path / "key.pem"
    await asyncio.to_thread(create_self_signed, "mx.example.test", certificate, key)

    def offers_starttls() -> bool:
        return "STARTTLS" in _ehlo_lines("127.0.0.1", live.running.port)

    assert not await asyncio.to_thread(offers_starttls)
    await live.set(tls_certificate=str(certificate), tls_key=str(key))
    assert await asyncio.to_thread(offers_starttls)
    await live.set(tls_listen=("127.0.0.1:0",))
    [(_, port)] = [a for a in live.server.bound_addresses if a[1] != live.running.port]

    def greeting() -> bytes:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
                context.wrap_socket(raw) as tls:
            return tls.recv(100)

    assert (await asyncio.to_thread(greeting)).startswith(b"220 ")


def _http_status(url: str, user: str = "", password: str = "") -> int:
    """The status of GET ``url`` (certificates not checked: a self-signed test certificate)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()} if user else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return error.code


@probe("metrics_listen")
async def _metrics_listen(live: Live) -> None:
    assert live.server.metrics_port is None
    await live.set(metrics_listen="127.0.0.1:0")
    port = live.server.metrics_port
    assert port and await asyncio.to_thread(_http_status, f"http://127.0.0.1:{port}/metrics") == 200


@probe("admin_listen", "admin_allow_plain_loopback", "admin_tls_certificate", "admin_tls_key", "operators_file")
async def _admin_server(live: Live) -> None:
    # The admin server's request keys are plain strings (aiohttp's NotAppKeyWarning, an error under pytest).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotAppKeyWarning)
        await _admin_server_checked(live)


async def _admin_server_checked(live: Live) -> None:
    admin = AdminServer(live.server, operators_default=live.tmp_path / "no-operators")
    await admin.start()  # admin_listen empty: nothing yet, but its changes are followed from now on
    try:
        await live.set(admin_listen="127.0.0.1:0", admin_allow_plain_loopback=True)
        assert admin.bound  # listening before apply_config returned
        plain = f"http://127.0.0.1:{admin.bound[0][1]}/api/v1/ops"
        assert await asyncio.to_thread(_http_status, plain, "ann", PASSWORD) == 401  # no operators yet
        operators = live.tmp_path / "operators"
        operator_store(operators).add("ann", PASSWORD, "admin")
        await live.set(operators_file=str(operators))
        assert await asyncio.to_thread(_http_status, plain, "ann", PASSWORD) == 200

        # An address in use is refused, the setting is not taken, and the old listener keeps serving.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = f"127.0.0.1:{taken.getsockname()[1]}"
            with pytest.raises(BindError, match=f"cannot listen on {busy} for the admin server.*still listens on"):
                await live.set(admin_listen=busy)
        assert live.server.config().server.admin_listen == "127.0.0.1:0"
        assert await asyncio.to_thread(_http_status, plain, "ann", PASSWORD) == 200

        # Another free address: the new one is bound, the old one let go.
        port = _free_port()
        await live.set(admin_listen=f"127.0.0.1:{port}")
        assert admin.bound == [("127.0.0.1", port)]
        with pytest.raises(OSError):
            await asyncio.to_thread(_http_status, plain, "ann", PASSWORD)
        plain = f"http://127.0.0.1:{port}/api/v1/ops"

        # A certificate that cannot be used is refused too, the plain listener kept; a good one replaces it
        # on the same port.
        with pytest.raises(BindError, match="cannot use its certificate"):
            await live.set(admin_tls_certificate=str(live.tmp_path / "missing.pem"))
        assert await asyncio.to_thread(_http_status, plain, "ann", PASSWORD) == 200
        certificate, key = live.tmp_path / "admin.pem", live.tmp_path / "admin-key.pem"
        await asyncio.to_thread(create_self_signed, "mx.example.test", certificate, key)
        await live.set(admin_tls_certificate=str(certificate), admin_tls_key=str(key),
                       admin_allow_plain_loopback=False)
        assert admin.tls and admin.bound == [("127.0.0.1", port)]
        secure = f"https://127.0.0.1:{port}/api/v1/ops"
        assert await asyncio.to_thread(_http_status, secure, "ann", PASSWORD) == 200

        await live.set(admin_listen="")  # off
        assert admin.bound == []
        with pytest.raises(OSError):
            await asyncio.to_thread(_http_status, secure, "ann", PASSWORD)
    finally:
        await admin.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@probe("outbound_user", "outbound_password")
async def _outbound_auth(live: Live) -> None:
    async with sink() as next_hop:
        await live.set(smart_host=f"[127.0.0.1]:{next_hop.port}", outbound_user="relay", outbound_password="s3cret!")
        await live.send(["u@relay.test"])
        await live.wait(lambda: next_hop.messages == 1)
        assert next_hop.logins == ["AUTH PLAIN " + base64.b64encode(b"\0relay\0s3cret!").decode()]


@probe("outbound_tls")
async def _outbound_tls(live: Live) -> None:
    async with sink() as next_hop:  # a next hop without STARTTLS
        await live.set(smart_host=f"[127.0.0.1]:{next_hop.port}", outbound_tls=True)
        await live.send(["u@relay.test"])
        [entry] = live.server._store().entries.values()
        await live.wait(lambda: entry.record.attempts == 1 and not entry.active)
        assert next_hop.messages == 0 and "STARTTLS" in entry.record.last_error


@probe("attempt_direct_before_smart_host")
async def _direct_first(live: Live) -> None:
    records = DnsRecords(mx=[("far.test", "mx.far.test", 10)], hosts=[("mx.far.test", "127.0.0.1")])
    async with sink() as next_hop:
        with running_dnsmasq(live.tmp_path / "dns", records) as dns:
            # The smart host ([127.0.0.1]:1) refuses; the MX (the sink) is tried first only with the option on.
            await live.set(relay_allowed=("127.0.0.0/8",), outbound_port=next_hop.port, dns_servers=(dns.server,),
                           attempt_direct_before_smart_host=True)
            await live.send(["u@far.test"])
            await live.wait(lambda: next_hop.messages == 1)


@probe("badmail_max_age_days", "badmail_max_size_mb")
async def _badmail_limits(live: Live) -> None:
    root = live.server.mailroot
    old = write_badmail(root, b"old\r\n", "test item")
    aged = live.clock.now - 3 * 86400
    for path in root.badmail.glob(f"{old}.*"):
        os.utime(path, (aged, aged))
    big = [write_badmail(root, b"x" * 600_000, "big item") for _ in range(2)]
    await live.set(badmail_max_age_days=2)
    await live.wait(lambda: not list(root.badmail.glob(f"{old}.*")))
    assert all(list(root.badmail.glob(f"{name}.BAD")) for name in big)
    await live.set(badmail_max_size_mb=1)  # 1.2 MB: the older big item goes
    await live.wait(lambda: len(list(root.badmail.glob("*.BAD"))) == 1)


@probe("reverse_dns_lookup")
async def _reverse_dns(live: Live) -> None:
    records = DnsRecords(hosts=[("client.far.test", "127.0.0.1")])  # dnsmasq answers the PTR as well
    with running_dnsmasq(live.tmp_path / "dns", records) as dns:
        await live.set(dns_servers=(dns.server,))
        await live.send([f"b@{LOCAL_DOMAIN}"])
        await live.set(reverse_dns_lookup=True)
        await live.send([f"c@{LOCAL_DOMAIN}"])
        await live.wait(lambda: len(live.running.drop_files()) == 2)
    texts = {p.read_text("latin-1").split("x-receiver: ")[1][:1]: p.read_text("latin-1")
             for p in live.running.drop_files()}
    assert "client.far.test" not in texts["b"] and "client.far.test" in texts["c"]


@probe("auth_lockout_seconds")
async def _lockout_seconds(live: Live) -> None:
    users = live.tmp_path / "users"
    UserStore(users).add("bob", PASSWORD)
    await live.set(auth_basic=True, auth_plaintext_allowed=True, auth_failure_delay_ms=0, users_file=str(users),
                   auth_lockout_failures=1, auth_lockout_seconds=1)
    assert (await live.talk("EHLO c.test", _plain("bob", "wrong password here")))[-1].startswith("535")
    assert (await live.talk("EHLO c.test", _plain("bob")))[-1].startswith("454")  # locked out now
    deadline = time.monotonic() + 20  # the lock-out ends after one second (900 by default)
    while not (await live.talk("EHLO c.test", _plain("bob")))[-1].startswith("235"):
        assert time.monotonic() < deadline, "still locked out"
        await asyncio.sleep(0.2)


@probe("local_delay_notification_min", "local_expiration_min")
async def _local_schedule(live: Live) -> None:
    config = live.server.config()
    await live.server.apply_config(replace(config, domains=tuple(
        replace(d, drop_dir="Broken") if d.name == "alias.test" else d for d in config.domains)))
    broken = live.running.mailroot / "Broken"
    broken.rmdir()
    broken.write_bytes(b"a file where alias.test's Drop should be")  # local delivery fails (root ignores modes)
    await live.set(local_delay_notification_min=3, local_expiration_min=10)
    await live.send(["x@alias.test"], sender=f"s@{LOCAL_DOMAIN}")
    await live.wait(lambda: len(live.queued()) == 1)
    [entry] = live.server._store().entries.values()
    await live.wait(lambda: entry.record.recipients[0].attempts >= 1 and not entry.active)

    async def again() -> None:  # the next local attempt now (the engine's own retry timer is minutes away)
        await live.server.freeze(entry.queue_id)
        await live.server.thaw(entry.queue_id)

    live.clock.now += 4 * 60
    await again()
    await live.wait(lambda: entry.record.delay_notice_sent)
    live.clock.now += 7 * 60
    await again()
    await live.wait(lambda: not live.queued())
    notices = [p.read_text("latin-1") for p in live.running.drop_files()]
    assert len([t for t in notices if f"x-receiver: s@{LOCAL_DOMAIN}" in t]) == 2  # the delay notice, the NDR


@probe("log_local_time")
async def _log_local_time(live: Live) -> None:
    folder = live.tmp_path / "TimeLogs"
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "Etc/GMT-9"  # UTC+9 for this process, whatever the machine says
    time.tzset()
    try:
        # IIS: "use local time for file naming and rollover": the hourly file is named by the local hour.
        await live.set(log_dir=str(folder), log_period="hourly", log_local_time=True)
        before = time.gmtime().tm_hour
        await live.talk("EHLO local.test", "QUIT")
        await live.wait(lambda: "QUIT" in "".join(_log_lines(folder).values()))
        after = time.gmtime().tm_hour
    finally:
        if zone is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = zone
        time.tzset()
    [name] = _log_lines(folder)
    assert int(name[8:10]) in {(before + 9) % 24, (after + 9) % 24}, name  # exYYMMDDHH.log


@probe("outbound_tls_verify", "outbound_tls_ca_file")
async def _outbound_verification(live: Live) -> None:
    certificate, key = live.tmp_path / "mx.pem", live.tmp_path / "mx-key.pem"
    await asyncio.to_thread(create_self_signed, "mx.far.test", certificate, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    records = DnsRecords(hosts=[("mx.far.test", "127.0.0.1")])
    async with sink(context) as next_hop:
        with running_dnsmasq(live.tmp_path / "dns", records) as dns:
            await live.set(smart_host=f"mx.far.test:{next_hop.port}", dns_servers=(dns.server,), outbound_tls=True)
            await live.send(["u@relay.test"])
            [entry] = live.server._store().entries.values()
            await live.wait(lambda: entry.record.attempts == 1 and not entry.active)
            assert next_hop.messages == 0 and "4.7.5" in entry.record.last_error, entry.record.last_error  # untrusted
            await live.set(outbound_tls_ca_file=str(certificate))  # now trusted
            await live.server.retry_now()
            await live.wait(lambda: next_hop.messages == 1)
            await live.set(outbound_tls_ca_file="", outbound_tls_verify="never")  # not checked at all
            await live.send(["v@relay.test"])
            await live.wait(lambda: next_hop.messages == 2)


def _noops(port: int, count: int) -> int:
    """One session of ``count`` pipelined NOOPs; how many 250 replies came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock, sock.makefile("rb") as reader:
        reader.readline()
        sock.sendall(b"NOOP\r\n" * count)
        return sum(reader.readline().startswith(b"250") for _ in range(count))


@probe("log_max_size_mb")
async def _log_max_size(live: Live) -> None:
    folder = live.tmp_path / "SizeLogs"
    await live.set(log_dir=str(folder), log_period="size", log_max_size_mb=1)
    assert await asyncio.to_thread(_noops, live.running.port, 14_000) == 14_000  # about 1.4 MB of W3C lines
    await live.wait(lambda: len(_log_lines(folder)) == 2)  # the first file reached 1 MB: a second one
    sizes = sorted(len(text) for text in _log_lines(folder).values())
    assert sizes[-1] <= 1024 * 1024


# Options whose live test is still to be written, with why: each one is a gap, not a pass. Empty: every option
# of OPTIONS is applied to a running engine above.
NOT_YET_PROBED: dict[str, str] = {}


def test_every_option_has_a_live_probe() -> None:
    names = [option.name for option in OPTIONS]
    missing = [n for n in names if n not in PROBES and n not in NOT_YET_PROBED]
    assert not missing, f"options without a live test (add a probe to PROBES): {missing}"
    assert not set(PROBES) & set(NOT_YET_PROBED), "probed options must leave NOT_YET_PROBED"
    assert not (set(PROBES) | set(NOT_YET_PROBED)) - set(names), "probes for options that do not exist"


# require_tls without a certificate is said at ERROR level, as it must be (tests/conftest.py's logfail).
# Probes whose point is a failure the engine reports (an ErrorEvent): the test checks the effect itself.
EXPECT_ERRORS = {"require_tls", "local_delay_notification_min", "local_expiration_min"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.expect_errors) if name in EXPECT_ERRORS
                                  else name for name in sorted(PROBES)])
async def test_option_applies_to_the_running_engine(live: Live, name: str) -> None:
    await PROBES[name](live)
