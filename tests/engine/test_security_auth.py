"""AUTH PLAIN/LOGIN against the real engine: offered only over TLS unless allowed, the users file, 535 with a
growing delay, lock-out per address (the right password from another address still works), relay for
authenticated clients, Received without secrets, no secrets in logs."""

from __future__ import annotations

import asyncio
import base64
import logging
import smtplib
import time
from pathlib import Path

import pytest
from engine_support import Running, start_server
from security_support import Talk, TlsFiles, tls_files, users_file

from engine.smtpd.security import AuthFailed, AuthRefusedLocked, AuthSucceeded, SecurityWarning
from engine.smtpd.users import UserStore, hash_password, verify_password
from engine.store.envelope import split_envelope

PASSWORD = "correct horse battery staple"


def plain(login: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return tls_files(tmp_path / "tls")


@pytest.fixture
def users(tmp_path: Path) -> Path:
    return users_file(tmp_path / "users", {"alice": PASSWORD, "bob@example.test": "bobs password"})


def auth_config(config_factory, tls: TlsFiles, users: Path, **server: object):
    server.setdefault("auth_failure_delay_ms", 0)
    return config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key), auth_basic=True,
                          users_file=str(users), **server)


def tls_talk(port: int, tls: TlsFiles, source: str = "127.0.0.1") -> Talk:
    talk, _ = Talk.open(port, source)
    talk.cmd("EHLO client.test")
    talk.cmd("STARTTLS")
    talk.starttls(tls.client_context())
    talk.send(b"EHLO client.test\r\n")
    talk.reply()
    return talk


async def test_no_auth_by_default(running: Running) -> None:
    def talk() -> tuple[list[str], str]:
        client, _ = Talk.open(running.port)
        client.send(b"EHLO client.test\r\n")
        lines = client.reply()
        answer = client.cmd("AUTH PLAIN " + plain("alice", PASSWORD))
        client.close()
        return lines, answer

    lines, answer = await asyncio.to_thread(talk)
    assert not any("AUTH" in line for line in lines)
    assert answer == "502 5.5.1 Command not implemented"


async def test_auth_only_after_starttls(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users))
    try:
        def talk() -> tuple[list[str], str, list[str], str]:
            client, _ = Talk.open(running.port)
            client.send(b"EHLO client.test\r\n")
            before = client.reply()
            refused = client.cmd("AUTH PLAIN " + plain("alice", PASSWORD))
            client.cmd("STARTTLS")
            client.starttls(tls.client_context())
            client.send(b"EHLO client.test\r\n")
            after = client.reply()
            accepted = client.cmd("AUTH PLAIN " + plain("alice", PASSWORD))
            client.close()
            return before, refused, after, accepted

        before, refused, after, accepted = await asyncio.to_thread(talk)
        assert not any("AUTH" in line for line in before)
        assert refused == "538 5.7.11 Encryption required for requested authentication mechanism"
        assert "250-AUTH PLAIN LOGIN" in after
        assert accepted == "235 2.7.0 Authentication successful"
        assert [e.user for e in running.events if isinstance(e, AuthSucceeded)] == ["alice"]
        assert not any(isinstance(e, SecurityWarning) for e in running.events)
    finally:
        await running.server.stop()


async def test_authenticated_client_relays_and_received_says_so(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users))
    try:
        def send(login: bool) -> dict[str, tuple[int, bytes]]:
            with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                client.starttls(context=tls.client_context())
                if login:
                    client.login("alice", PASSWORD)
                return client.sendmail("alice@example.test", ["someone@elsewhere.test", "b@example.test"],
                                       b"Subject: relayed\r\n\r\nhello\r\n")

        anonymous = await asyncio.to_thread(send, False)
        assert anonymous == {"someone@elsewhere.test": (550, b"5.7.1 Unable to relay for someone@elsewhere.test")}
        assert await asyncio.to_thread(send, True) == {}
        await running.wait_for(lambda: bool(running.queue_files()) and len(running.drop_files()) == 2)
        bodies = sorted(p.read_bytes()[split_envelope(p.read_bytes())[2]:] for p in running.drop_files())
        assert [b"with ESMTPSA id" in body for body in bodies].count(True) == 1
        assert [b"with ESMTPS id" in body for body in bodies].count(True) == 1
        for data in [*bodies, *(p.read_bytes() for p in running.queue_files())]:
            assert PASSWORD.encode() not in data and plain("alice", PASSWORD).encode() not in data
    finally:
        await running.server.stop()


async def test_login_mechanism_and_default_domain(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users, auth_default_domain="example.test"))
    try:
        def talk() -> list[str]:
            client = tls_talk(running.port, tls)
            replies = [client.cmd("AUTH LOGIN"), client.cmd(base64.b64encode(b"bob").decode()),
                       client.cmd(base64.b64encode(b"bobs password").decode())]
            client.close()
            return replies

        assert await asyncio.to_thread(talk) == ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6",
                                                 "235 2.7.0 Authentication successful"]
        assert [e.user for e in running.events if isinstance(e, AuthSucceeded)] == ["bob@example.test"]
        [session] = [s for s in await running.server.list_sessions()] or [None]
        assert session is None or session.user in ("(anonymous)", "bob@example.test")
    finally:
        await running.server.stop()


async def test_session_lists_its_tls_cipher(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users))
    try:
        client = await asyncio.to_thread(tls_talk, running.port, tls)
        [session] = await running.server.list_sessions()
        assert session.tls and session.cipher.startswith("TLSv1.") and session.helo == "client.test"
        secret = plain("alice", PASSWORD).split(" ")[-1]
        assert (await asyncio.to_thread(client.cmd, f"AUTH PLAIN {secret}")).startswith("235")
        await asyncio.to_thread(client.cmd, "AUTH LOGIN")  # (already authenticated: refused, still masked)
        transcript = await running.server.session_transcript(session.session_id)
        assert ">>> EHLO client.test" in transcript and ">>> STARTTLS" in transcript
        assert ">>> AUTH PLAIN *** (masked)" in transcript and any(line.startswith("<<< 235") for line in transcript)
        assert not any(secret in line or PASSWORD in line for line in transcript)
        client.close()
    finally:
        await running.server.stop()


async def test_protocol_errors(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users))
    try:
        def talk() -> list[str]:
            client = tls_talk(running.port, tls)
            replies = [
                client.cmd("AUTH"), client.cmd("AUTH CRAM-MD5"), client.cmd("AUTH PLAIN a b c"),
                client.cmd("AUTH PLAIN not*base64"), client.cmd("AUTH PLAIN " + base64.b64encode(b"x").decode()),
            ]
            client.cmd("AUTH PLAIN")
            replies.append(client.cmd("*"))
            client.cmd("MAIL FROM:<a@example.test>")
            replies.append(client.cmd("AUTH PLAIN " + plain("alice", PASSWORD)))
            client.cmd("RSET")
            replies.append(client.cmd("AUTH PLAIN " + plain("alice", PASSWORD, authzid="bob@example.test")))
            replies.append(client.cmd("AUTH PLAIN " + plain("alice", PASSWORD)))
            replies.append(client.cmd("AUTH PLAIN " + plain("alice", PASSWORD)))
            client.close()
            return replies

        assert await asyncio.to_thread(talk) == [
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]",
            "504 5.5.4 Unrecognized authentication type",
            "501 5.5.4 Syntax: AUTH mechanism [initial-response]",
            "501 5.5.2 Cannot decode base64",
            "501 5.5.2 Malformed credentials",
            "501 5.7.0 Authentication aborted",
            "503 5.5.1 AUTH not permitted during a mail transaction",
            "535 5.7.8 Authentication credentials invalid",  # acting for another user is not supported
            "235 2.7.0 Authentication successful",
            "503 5.5.1 Already authenticated",
        ]
    finally:
        await running.server.stop()


async def test_plaintext_auth_only_when_allowed_and_then_warned(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users, auth_plaintext_allowed=True))
    try:
        def send() -> None:
            with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                client.login("alice", PASSWORD)
                client.sendmail("alice@example.test", ["x@elsewhere.test"], b"Subject: x\r\n\r\nx\r\n")

        await asyncio.to_thread(send)
        warnings = [e for e in running.events if isinstance(e, SecurityWarning)]
        assert len(warnings) == 1 and "clear text" in warnings[0].message
    finally:
        await running.server.stop()


async def test_anonymous_off_needs_auth_before_mail(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users, auth_anonymous=False))
    try:
        def talk() -> list[str]:
            client = tls_talk(running.port, tls)
            replies = [client.cmd("MAIL FROM:<a@example.test>"), client.cmd("AUTH PLAIN " + plain("alice", PASSWORD)),
                       client.cmd("MAIL FROM:<a@example.test>")]
            client.close()
            return replies

        refused, _, accepted = await asyncio.to_thread(talk)
        assert refused == "530 5.7.0 Authentication required"
        assert accepted.startswith("250 2.1.0")
    finally:
        await running.server.stop()


async def test_failures_delay_grows_then_lock_out_holds_per_address(config_factory, tls: TlsFiles,
                                                                     users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users, auth_lockout_failures=4,
                                             auth_lockout_seconds=60, auth_failure_delay_ms=60))
    try:
        def attack() -> tuple[list[float], list[str]]:
            client = tls_talk(running.port, tls)
            took: list[float] = []
            replies: list[str] = []
            for guess in ("a", "b", "c", "d"):
                started = time.monotonic()
                replies.append(client.cmd("AUTH PLAIN " + plain("alice", guess)))
                took.append(time.monotonic() - started)
            replies.append(client.cmd("AUTH PLAIN " + plain("alice", PASSWORD)))  # right, but locked out
            client.close()
            again = tls_talk(running.port, tls)  # a new connection from the same address is locked out too
            replies.append(again.cmd("AUTH PLAIN " + plain("alice", PASSWORD)))
            again.close()
            other = tls_talk(running.port, tls, source="127.0.0.2")  # another computer is not
            replies.append(other.cmd("AUTH PLAIN " + plain("alice", PASSWORD)))
            other.close()
            return took, replies

        took, replies = await asyncio.to_thread(attack)
        assert replies[:4] == ["535 5.7.8 Authentication credentials invalid"] * 4
        assert replies[4:6] == ["454 4.7.0 Too many failed logins from your address, try again later"] * 2
        assert replies[6] == "235 2.7.0 Authentication successful"
        assert took[0] >= 0.06 and took[1] >= 0.12 and took[2] >= 0.24 and took[3] >= 0.48
        failed = [e for e in running.events if isinstance(e, AuthFailed)]
        assert [(e.peer, e.user, e.failures, e.locked) for e in failed] == [
            ("127.0.0.1", "alice", 1, False), ("127.0.0.1", "alice", 2, False),
            ("127.0.0.1", "alice", 3, False), ("127.0.0.1", "alice", 4, True)]
        assert len([e for e in running.events if isinstance(e, AuthRefusedLocked)]) == 2
    finally:
        await running.server.stop()


async def test_brute_force_from_many_connections_is_locked_out(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users, auth_lockout_failures=5,
                                             auth_plaintext_allowed=True))
    try:
        def guess(index: int) -> list[str]:
            client, _ = Talk.open(running.port)
            client.cmd("EHLO client.test")
            answers = [client.cmd("AUTH PLAIN " + plain("alice", f"guess-{index}-{n}")) for n in range(3)]
            client.close()
            return answers

        results = await asyncio.gather(*(asyncio.to_thread(guess, i) for i in range(5)))
        answers = [a for r in results for a in r]
        assert answers.count("535 5.7.8 Authentication credentials invalid") <= 5  # checks under way count
        assert any(a.startswith("454 4.7.0") for a in answers)

        def right() -> tuple[str, str]:
            mine, _ = Talk.open(running.port)
            mine.cmd("EHLO client.test")
            locked = mine.cmd("AUTH PLAIN " + plain("alice", PASSWORD))
            mine.close()
            other, _ = Talk.open(running.port, source="127.0.0.3")
            other.cmd("EHLO client.test")
            ok = other.cmd("AUTH PLAIN " + plain("alice", PASSWORD))
            other.close()
            return locked, ok

        locked, ok = await asyncio.to_thread(right)
        assert locked.startswith("454 4.7.0") and ok.startswith("235 2.7.0")
    finally:
        await running.server.stop()


async def test_users_file_changes_apply_at_once(config_factory, tls: TlsFiles, users: Path) -> None:
    running = await start_server(auth_config(config_factory, tls, users))
    try:
        def login(name: str, password: str) -> str:
            client = tls_talk(running.port, tls, source="127.0.0.4")
            answer = client.cmd("AUTH PLAIN " + plain(name, password))
            client.close()
            return answer

        assert (await asyncio.to_thread(login, "carol", "new one")).startswith("535")
        UserStore(users).add("carol", "new one")
        assert (await asyncio.to_thread(login, "carol", "new one")).startswith("235")
        UserStore(users).delete("carol")
        assert (await asyncio.to_thread(login, "carol", "new one")).startswith("535")
    finally:
        await running.server.stop()


async def test_secrets_stay_out_of_the_log(config_factory, tls: TlsFiles, users: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    running = await start_server(auth_config(config_factory, tls, users, auth_plaintext_allowed=True))
    try:
        caplog.set_level(logging.DEBUG)

        def talk() -> None:
            client, _ = Talk.open(running.port)
            client.cmd("EHLO client.test")
            client.cmd("AUTH PLAIN " + plain("alice", "wrong secret"))
            client.cmd("AUTH PLAIN " + plain("alice", PASSWORD))
            client.close()

        await asyncio.to_thread(talk)
        await running.wait_for(lambda: len(running.server.sessions) == 0)
        text = caplog.text
        assert "AUTH failed from 127.0.0.1 for 'alice'" in text  # the failure is logged...
        for secret in ("wrong secret", PASSWORD, plain("alice", "wrong secret"), plain("alice", PASSWORD)):
            assert secret not in text  # ...without the credentials
            assert all(secret not in repr(event) for event in running.events)
    finally:
        await running.server.stop()


def test_password_hashes() -> None:
    encoded = hash_password("pässword", n=2**10)
    assert encoded.startswith("scrypt$1024$8$1$") and "pässword" not in encoded
    assert verify_password("pässword", encoded) and not verify_password("password", encoded)
    assert hash_password("x", n=2**10) != hash_password("x", n=2**10)  # salted
    assert not verify_password("x", "scrypt$1024$8$1$!!$!!") and not verify_password("x", "md5$abc")


def test_users_file_is_private_and_case_insensitive(tmp_path: Path) -> None:
    from engine.smtpd.users import UserError

    store = UserStore(tmp_path / "conf" / "users")
    store.add("Alice", "one")
    assert (tmp_path / "conf" / "users").stat().st_mode & 0o777 == 0o600
    assert store.check("alice", "one") and not store.check("alice", "two") and not store.check("nobody", "one")
    store.set_password("ALICE", "two")
    assert store.check("Alice", "two") and store.names() == ["Alice"]
    with pytest.raises(UserError, match="exists already"):
        store.add("alice", "x")
    with pytest.raises(UserError, match="no spaces"):
        store.add("a b", "x")
    with pytest.raises(UserError, match="empty"):
        store.add("carol", "")
    store.delete("alice")
    assert store.names() == []
    (tmp_path / "conf" / "users").write_text("garbage line\n")
    assert "line 1" in store.error and not store.check("alice", "two")


def test_limiter_counts_per_address_and_forgets() -> None:
    from engine.smtpd.authlimit import AuthLimiter, failure_delay, peer_key

    assert peer_key("2001:db8::1") == peer_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert peer_key("::ffff:192.0.2.1") == "192.0.2.1" and peer_key("192.0.2.1") == "192.0.2.1"
    assert [failure_delay(n, 1.0) for n in range(7)] == [0, 1, 2, 4, 8, 16, 16]
    now = [1000.0]
    limiter = AuthLimiter(clock=lambda: now[0])
    verdicts = [limiter.failed("2001:db8::1", threshold=3, period=60, base_delay=0) for _ in range(3)]
    assert [v.locked for v in verdicts] == [False, False, True]
    assert limiter.locked_for("2001:db8::2") == 60  # the same /64
    assert limiter.locked_for("2001:db8:0:1::1") == 0  # another /64
    now[0] += 61
    assert limiter.locked_for("2001:db8::1") == 0
    assert limiter.failed("2001:db8::1", threshold=3, period=60, base_delay=0).failures == 1  # old ones forgotten
    assert limiter.failed("192.0.2.1", threshold=0, period=60, base_delay=0.5).delay == 0.5  # 0 = never locked
    assert limiter.locked_for("192.0.2.1") == 0


async def test_facade_manages_users_and_lockouts(tmp_path, config_factory) -> None:
    from engine_support import start_server

    from engine.errors import StateError

    run = await start_server(config_factory())
    try:
        with pytest.raises(StateError, match="no users file"):
            await run.server.list_users()
    finally:
        await run.server.stop()
    users = tmp_path / "users"
    config = config_factory(users_file=str(users))
    run = await start_server(config)
    try:
        await run.server.add_user("alice", "correct horse")
        await run.server.add_user("bob", "battery staple")
        await run.server.set_user_password("bob", "new one")
        await run.server.delete_user("alice")
        assert await run.server.list_users() == ["bob"]
        assert run.server.security.users(config).check("bob", "new one")  # type: ignore[union-attr]
        await run.server.unlock_peer("192.0.2.1")  # nothing locked: no error
        await run.server.reload_certificate()
    finally:
        await run.server.stop()
