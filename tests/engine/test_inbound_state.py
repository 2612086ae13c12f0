"""Guard for InboundSMTP's light constructor: it sets up everything aiosmtpd's own constructor does."""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP

from engine.cleanup.intake import Intake
from engine.smtpd.inbound import InboundSMTP
from engine.smtpd.services import InboundServices


async def test_light_constructor_matches_aiosmtpd_state(tmp_path, config_factory) -> None:
    loop = asyncio.get_running_loop()
    reference = SMTP(object(), loop=loop, enable_SMTPUTF8=True)
    from engine.counters import Counters
    from engine.events import EventBus
    from engine.smtpd.sessions import SessionRegistry

    config = config_factory()
    async def no_etrn(domain: str) -> int | None:
        return None

    services = InboundServices(lambda: config, Intake.__new__(Intake), SessionRegistry(), Counters(), EventBus(),
                               lambda: False, no_etrn)
    ours = InboundSMTP(services, loop=loop)
    missing = set(vars(reference)) - set(vars(ours))
    assert not missing, f"aiosmtpd sets attributes the light constructor does not: {sorted(missing)}"
    assert set(ours._smtp_methods) >= {"EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY",
                                       "HELP", "EXPN", "AUTH", "STARTTLS"}
    assert ours._smtp_methods["DATA"].__func__ is InboundSMTP.smtp_DATA
    assert set(ours._auth_methods) == set(reference._auth_methods) == {"LOGIN", "PLAIN"}
