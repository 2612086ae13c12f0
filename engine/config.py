"""Configuration as frozen dataclasses: server settings from the option table plus the domain list."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DomainConfig:
    """One SMTP domain: the default (exactly one), local aliases, or remote domains."""

    name: str
    type: str  # "default" | "alias" | "remote"
    drop_dir: str = ""  # default domain only; empty = Mailroot/Drop
    relay_allowed: bool = False  # remote: allow incoming mail to be relayed to this domain
    route: str = "dns"  # remote: "dns" | "smarthost"
    smart_host: str = ""  # remote with route = "smarthost"
    tls_required: bool = False  # remote: outbound TLS required
    use_helo: bool = False  # remote: send HELO instead of EHLO
    etrn_queue: bool = False  # remote: queue for remote triggered delivery (ETRN)


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one virtual server; one field per row of ``options.OPTIONS``."""

    listen: tuple[str, ...] = ("127.0.0.1:2525",)
    fqdn: str = ""
    max_connections: int = 0
    connection_timeout: int = 600
    max_connections_per_peer: int = 0
    max_message_size_kb: int = 2048
    max_session_size_kb: int = 10240
    max_messages_per_connection: int = 20
    max_recipients: int = 100
    ndr_copy_to: str = ""
    badmail_dir: str = ""
    retry_intervals_min: tuple[int, ...] = (15, 30, 60, 240)
    delay_notification_min: int = 720
    expiration_min: int = 2880
    local_delay_notification_min: int = 720
    local_expiration_min: int = 2880
    max_outbound_connections: int = 1000
    max_outbound_per_domain: int = 100
    outbound_timeout: int = 600
    outbound_port: int = 25
    max_hop_count: int = 15
    masquerade_domain: str = ""
    smart_host: str = ""
    attempt_direct_before_smart_host: bool = False
    reverse_dns_lookup: bool = False
    dns_servers: tuple[str, ...] = ()
    relay_allowed: tuple[str, ...] = ()
    authenticated_may_relay: bool = True
    max_bad_commands: int = 10
    max_command_line: int = 2048
    bare_newline: str = "reject"


@dataclass(frozen=True)
class Config:
    """A whole virtual server's configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    domains: tuple[DomainConfig, ...] = ()
    mailroot: str = ""  # empty = the user's data directory (platformdirs)
    name: str = "Default SMTP Virtual Server"

    @property
    def fqdn(self) -> str:
        return self.server.fqdn or socket.getfqdn()

    @property
    def default_domain(self) -> DomainConfig:
        for domain in self.domains:
            if domain.type == "default":
                return domain
        return DomainConfig(name=self.fqdn.lower(), type="default")

    @property
    def effective_domains(self) -> tuple[DomainConfig, ...]:
        """The domain list with the implicit default domain added when none is configured."""
        if any(d.type == "default" for d in self.domains):
            return self.domains
        return (self.default_domain, *self.domains)
