"""Check DNS (IIS's Advanced Delivery button): what the engine's resolver finds for a host name, said plainly."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from engine.smtp.resolver import Resolver, RouteError, ip_literal

CHECK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DnsReport:
    name: str
    servers: tuple[str, ...]  # the DNS servers asked; () = the system's resolver
    addresses: tuple[str, ...]  # A and AAAA
    address_problem: str  # why there is no address ("" when there are)
    mx: tuple[str, ...]  # the MX hosts in the order delivery tries them (the name itself when it has no MX)
    mx_implicit: bool  # no MX record: mail to this name goes to its own address
    mx_problem: str

    @property
    def ok(self) -> bool:
        """The name leads somewhere: an address, or MX hosts of its own."""
        return bool(self.addresses) or (bool(self.mx) and not self.mx_implicit)


async def check_name(name: str, servers: Sequence[str] = (), timeout: float = CHECK_TIMEOUT_S) -> DnsReport:
    """Look ``name`` up as delivery would (A/AAAA, and MX as if it were a mail domain), with ``servers``."""
    name = name.strip().rstrip(".")
    try:
        resolver = Resolver(servers, timeout=timeout)
    except ValueError as error:  # a DNS server that is no IP address
        return DnsReport(name, tuple(servers), (), str(error), (), False, str(error))
    if ip_literal(name) is not None:
        return DnsReport(name, tuple(servers), (name,), "", (), False, "an IP address has no MX record")
    addresses, mx = await asyncio.gather(resolver.addresses(name), resolver.mx_hosts(name), return_exceptions=True)
    found = tuple(addresses) if isinstance(addresses, list) else ()
    address_problem = _why(addresses) if not isinstance(addresses, list) else ""
    if isinstance(mx, BaseException):
        return DnsReport(name, tuple(servers), found, address_problem, (), False, _why(mx))
    return DnsReport(name, tuple(servers), found, address_problem, mx.hosts, mx.implicit, "")


def _why(error: BaseException) -> str:
    if isinstance(error, RouteError):
        return error.reason
    if isinstance(error, ValueError | OSError):
        return str(error)
    raise error
