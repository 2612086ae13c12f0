"""The hostile pass's AUTH reproduction (shared/reviews/adversarial.md, finding 6): parallel guesses."""

from __future__ import annotations

import asyncio
import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine_support import start_server
from security_support import Talk, TlsFiles, tls_files, users_file

from engine.smtpd.authlimit import AuthLimiter

PASSWORD = "correct horse battery staple"
GUESSERS = 40


def plain(login: str, password: str) -> str:
    return base64.b64encode(f"\0{login}\0{password}".encode()).decode()


async def test_parallel_wrong_passwords_get_no_more_verdicts_than_the_lockout_allows(
        tmp_path: Path, config_factory) -> None:
    tls: TlsFiles = tls_files(tmp_path / "tls")
    users = users_file(tmp_path / "users", {"alice": PASSWORD})
    running = await start_server(config_factory(
        tls_certificate=str(tls.certificate), tls_key=str(tls.key), auth_basic=True, users_file=str(users),
        auth_lockout_failures=5, auth_lockout_seconds=600, auth_failure_delay_ms=0))
    try:
        barrier = threading.Barrier(GUESSERS)

        def guess(index: int) -> str:
            talk, _ = Talk.open(running.port, source="127.0.0.5")
            try:
                talk.cmd("EHLO client.test")
                talk.cmd("STARTTLS")
                talk.starttls(tls.client_context())
                talk.cmd("EHLO client.test")
                barrier.wait(30)  # all at once, as in the review
                password = PASSWORD if index == GUESSERS - 1 else f"wrong-{index}"
                return talk.cmd("AUTH PLAIN " + plain("alice", password))
            finally:
                talk.close()

        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(GUESSERS) as pool:  # one thread per guesser: they meet at the barrier
            answers = await asyncio.gather(*(loop.run_in_executor(pool, guess, i) for i in range(GUESSERS)))
        verdicts = [a for a in answers if a.startswith(("535", "235"))]
        refused = [a for a in answers if a.startswith("454 4.7.0")]
        assert len(verdicts) <= 5, answers
        assert len(verdicts) + len(refused) == GUESSERS, answers
    finally:
        await running.server.stop()


def test_limiter_counts_checks_under_way() -> None:
    now = [100.0]
    limiter = AuthLimiter(clock=lambda: now[0])
    assert [limiter.begin("127.0.0.5", threshold=3, period=60) for _ in range(4)] == [0.0, 0.0, 0.0, 60]
    limiter.end("127.0.0.5")  # a success: the slot is free again, nothing recorded
    assert limiter.begin("127.0.0.5", threshold=3, period=60) == 0.0
    for _ in range(3):
        limiter.end("127.0.0.5")
        limiter.failed("127.0.0.5", threshold=3, period=60, base_delay=0)
    assert limiter.begin("127.0.0.5", threshold=3, period=60) == 60  # locked out now
    assert limiter.begin("127.0.0.6", threshold=3, period=60) == 0.0  # another address is not
    assert limiter.begin("127.0.0.5", threshold=0, period=60) == 60  # the lock stands whatever the threshold
