"""The outbound TLS verification policy: opportunistic STARTTLS is never verified; required TLS is verified (the
next hop's name, against a CA file or the system store) unless the policy says never. The next hop is a real
smtpsvc with STARTTLS and a trustme certificate for mx.remote.test."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from engine_support import start_server
from security_support import tls_files

from engine.smtp.outbound import DEFERRED, DELIVERED, Job, Settings, Transcript, deliver
from engine.smtp.resolver import Target
from engine.smtp.tls_policy import outbound_verification

REMOTE = "mx.remote.test"


def test_policy_table() -> None:
    assert outbound_verification(False, "required") == (False, None)  # opportunistic: never verified
    assert outbound_verification(True, "never") == (False, None)
    verify, context = outbound_verification(True, "required")
    assert verify and context is not None and context.check_hostname


@pytest.mark.parametrize(("host", "trusted", "required", "policy", "status", "reply"), [
    (REMOTE, True, True, "required", DELIVERED, "250 2.6.0"),
    (REMOTE, False, True, "required", DEFERRED, "451 4.7.5 The certificate of mx.remote.test could not be verified"),
    ("other.remote.test", True, True, "required", DEFERRED, "451 4.7.5 The certificate of other.remote.test"),
    (REMOTE, False, True, "never", DELIVERED, "250 2.6.0"),
    (REMOTE, False, False, "required", DELIVERED, "250 2.6.0"),  # opportunistic
])
async def test_verification(tmp_path: Path, config_factory, host: str, trusted: bool, required: bool, policy: str,
                            status: str, reply: str) -> None:
    tls = tls_files(tmp_path / "remote", REMOTE)
    ca_file = tmp_path / "ca.pem"
    (tls.ca if trusted else trustme.CA()).cert_pem.write_to_path(str(ca_file))
    remote = await start_server(config_factory(tls_certificate=str(tls.certificate), tls_key=str(tls.key),
                                               fqdn=REMOTE))
    try:
        verify, context = outbound_verification(required, policy, str(ca_file))
        settings = Settings(fqdn="mx.example.test", tls_required=required, verify_tls=verify, tls_context=context,
                            timeout=10)
        job = Job("Q1", "a@example.test", ["b@example.test"], b"Subject: out\r\n\r\nverified?\r\n")
        transcript = Transcript()
        await deliver([Target(host, "127.0.0.1", remote.port)], [job], settings, transcript)
        outcome = job.outcomes["b@example.test"]
        assert outcome.status == status, (outcome, transcript.lines)
        assert outcome.reply.startswith(reply), outcome.reply
        assert any("TLS: TLSv1." in line for line in transcript.lines) == (status == DELIVERED)
    finally:
        await remote.server.stop()
