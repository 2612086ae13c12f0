"""Outbound TLS policy: whether a connection verifies the next hop, and the TLS versions every context allows."""

from __future__ import annotations

import functools
import ssl

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def outbound_verification(tls_required: bool, policy: str, ca_file: str = "") -> tuple[bool, ssl.SSLContext | None]:
    """(verify, context) for one outbound connection: opportunistic TLS is never verified (RFC 7435);
    required TLS is verified against ``ca_file`` or the system's store unless ``policy`` is "never"."""
    if not tls_required or policy == "never":
        return False, None
    return True, _verifying_context(ca_file)


@functools.lru_cache(maxsize=8)
def _verifying_context(ca_file: str) -> ssl.SSLContext:
    """Loading a CA store takes milliseconds: one context per CA file, shared by every connection."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = MINIMUM_VERSION
    return context
