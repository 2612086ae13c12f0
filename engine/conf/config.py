"""Configuration as frozen dataclasses: server settings from the option table plus the domain list."""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

from engine.conf.hostport import split_hostport
from engine.conf.options import DOMAIN_TYPES, W3C_LOG_FIELDS_DEFAULT
from engine.errors import DomainError
from engine.store.mailroot import Mailroot


@functools.lru_cache(maxsize=1)
def computer_fqdn() -> str:
    """This computer's name, looked up once: socket.getfqdn() asks the resolver every time."""
    return socket.getfqdn()


@dataclass(frozen=True)
class DomainConfig:
    """One SMTP domain: the default (exactly one), local aliases, or remote domains."""

    name: str
    type: str  # "default" | "alias" | "remote"
    drop_dir: str = ""  # local domains; empty = the default domain's Drop (Mailroot/Drop when that is empty too)
    relay_allowed: bool = False  # remote: allow incoming mail to be relayed to this domain
    route: str = "dns"  # remote: "dns" | "smarthost"
    smart_host: str = ""  # remote with route = "smarthost"
    tls_required: bool = False  # remote: outbound TLS required
    use_helo: bool = False  # remote: send HELO instead of EHLO
    etrn_queue: bool = False  # remote: queue for remote triggered delivery (ETRN)
    outbound_auth: str = "server"  # remote: Outbound Security — "server" (as the server's), "anonymous", "basic"
    outbound_user: str = ""  # remote, basic: the account used with AUTH at this domain's hosts
    outbound_password: str = ""  # remote, basic: its password (a secret: masked wherever shown)


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
    badmail_max_size_mb: int = 0
    badmail_max_age_days: int = 0
    retry_intervals_min: tuple[int, ...] = (15, 30, 60, 240)
    delay_notification_min: int = 720
    expiration_min: int = 2880
    local_delay_notification_min: int = 720
    local_expiration_min: int = 2880
    max_outbound_connections: int = 1000
    max_outbound_per_domain: int = 100
    outbound_timeout: int = 600
    outbound_port: int = 25
    outbound_tls: bool = False
    outbound_user: str = ""
    outbound_password: str = ""
    outbound_tls_verify: str = "required"
    outbound_tls_ca_file: str = ""
    max_hop_count: int = 15
    masquerade_domain: str = ""
    smart_host: str = ""
    attempt_direct_before_smart_host: bool = False
    reverse_dns_lookup: bool = False
    dns_servers: tuple[str, ...] = ()
    relay_mode: str = "only_listed"
    relay_allowed: tuple[str, ...] = ()
    authenticated_may_relay: bool = True
    auth_anonymous: bool = True
    auth_basic: bool = False
    auth_plaintext_allowed: bool = False
    auth_default_domain: str = ""
    users_file: str = ""
    auth_lockout_failures: int = 5
    auth_lockout_seconds: int = 900
    auth_failure_delay_ms: int = 1000
    tls_certificate: str = ""
    tls_key: str = ""
    require_tls: bool = False
    tls_listen: tuple[str, ...] = ()
    connection_grant: str = "all_except_listed"
    connection_list: tuple[str, ...] = ()
    admin_listen: str = ""
    admin_tls_certificate: str = ""
    admin_tls_key: str = ""
    admin_allow_plain_loopback: bool = False
    operators_file: str = ""
    max_bad_commands: int = 10
    max_command_line: int = 2048
    bare_newline: str = "reject"
    log_enabled: bool = True
    log_format: str = "w3c"
    log_dir: str = ""
    log_period: str = "daily"
    log_max_size_mb: int = 20
    log_fields: tuple[str, ...] = W3C_LOG_FIELDS_DEFAULT
    log_local_time: bool = False
    allow_verify: bool = True
    metrics_listen: str = ""


@dataclass(frozen=True)
class Config:
    """A whole virtual server's configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    domains: tuple[DomainConfig, ...] = ()
    mailroot: str = ""  # empty = the user's data directory (platformdirs)
    name: str = "Default SMTP Virtual Server"

    @property
    def fqdn(self) -> str:
        return self.server.fqdn or computer_fqdn()

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


# --- Paths --------------------------------------------------------------------------------------------

APP_NAME = "smtpsvc"


def default_config_path() -> Path:
    return platformdirs.user_config_path(APP_NAME) / "smtpsvc.toml"


def path_problems(config: Config) -> list[tuple[str, str]]:
    """Badmail or a Drop in a place the engine cannot use, as (key, sentence); the rule is the Mailroot's."""
    where = {d.name.lower(): domain_key(d) for d in config.effective_domains}
    return [("server.badmail_dir" if setting == "badmail_dir" else f"{where.get(setting, 'domain')}.drop_dir", why)
            for setting, why in Mailroot.from_config(config).conflicts()]


# --- Names and addresses ------------------------------------------------------------------------------

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_domain_name(text: str, *, wildcard: bool = False) -> bool:
    """RFC 1035 letters-digits-hyphen name (one label allowed); ``*.`` prefix only if ``wildcard``."""
    if wildcard and text.startswith("*."):
        text = text[2:]
    if not text or len(text) > 253:
        return False
    labels = text.split(".")
    # An all-digit last label would make "1.2.3.4" a domain name; IP literals are written [1.2.3.4].
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def host_port_problem(text: str, *, default_port: int | None, ip_only: bool = False,
                      min_port: int = 1) -> str | None:
    """Why ``text`` is not ``HOST[:PORT]`` as ``engine.conf.hostport`` reads it, with a real host, or None.

    ``default_port`` None: the port is required. A host in brackets must be an IP address.
    """
    try:
        host, port = split_hostport(text, default_port)
    except ValueError as exc:
        return str(exc)
    if text != text.strip():
        return f"{text!r}: spaces around the address"
    if text.startswith("[") or ip_only:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return f"{text!r}: {host!r} is not an IP address"
    elif not (is_domain_name(host) or _is_ipv4(host)):
        return f"{text!r}: {host!r} is not a host name or IP address"
    return None if port >= min_port else f"{text!r}: port must be {min_port}-65535"


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def smart_host_problem(text: str) -> str | None:
    """Why ``text`` is not a smart host (``name``, ``name:port``, ``[1.2.3.4]``), or None."""
    why = host_port_problem(text, default_port=25)
    return f"not a valid smart host: {why}" if why else None


# --- Domains ------------------------------------------------------------------------------------------

DOMAIN_ROUTES = ("dns", "smarthost")
REMOTE_FIELDS = ("relay_allowed", "route", "smart_host", "tls_required", "use_helo", "etrn_queue",
                 "outbound_auth", "outbound_user", "outbound_password")
DOMAIN_SECRETS = ("outbound_password",)  # masked when shown, never replicated
OUTBOUND_AUTH = ("server", "anonymous", "basic")


def domain_key(domain: DomainConfig) -> str:
    return f"domain[{domain.name}]"


def domain_problems(config: Config) -> list[tuple[str, str]]:
    """Every problem of the domain list, as (key, sentence); types of the fields are assumed right."""
    problems: list[tuple[str, str]] = []
    defaults = [d for d in config.domains if d.type == "default"]
    if len(defaults) > 1:
        names = ", ".join(d.name for d in defaults)
        problems.append(("domain", f"there must be one default domain, not {len(defaults)} ({names})"))
    seen: dict[str, DomainConfig] = {}
    for domain in config.effective_domains:
        key = domain_key(domain)
        if domain in config.domains:  # the implicit default is this computer's name, not a setting
            problems += [(f"{key}.{field}", why) for field, why in _one_domain_problems(config, domain)]
        folded = domain.name.lower()
        if folded in seen:
            implicit = " (the default domain, from the FQDN)" if seen[folded] not in config.domains else ""
            problems.append((f"{key}.name", f"a domain named {seen[folded].name!r}{implicit} "
                             "already exists"))
        seen.setdefault(folded, domain)
    if not problems:  # the places of the Drops, once every domain is well-formed
        problems += [(key, why) for key, why in path_problems(config) if key != "server.badmail_dir"]
    return problems


def _one_domain_problems(config: Config, domain: DomainConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    remote = domain.type == "remote"
    if domain.type not in DOMAIN_TYPES:
        problems.append(("type", f"{domain.type!r} is not a domain type ({', '.join(DOMAIN_TYPES)})"))
    if not is_domain_name(domain.name, wildcard=remote):
        misplaced_wildcard = "*" in domain.name and not remote
        wildcard = " (wildcards like *.example.com only for remote domains)" if misplaced_wildcard else ""
        problems.append(("name", f"{domain.name!r} is not a valid domain name{wildcard}"))
    if domain.drop_dir and remote:
        problems.append(("drop_dir", "only local domains (default and alias) have a Drop directory"))
    elif "\0" in domain.drop_dir:
        problems.append(("drop_dir", "must not contain NUL characters"))
    if not remote:
        plain = DomainConfig(domain.name, domain.type, domain.drop_dir)
        problems += [(name, f"only remote domains use {name}") for name in REMOTE_FIELDS
                     if getattr(domain, name) != getattr(plain, name)]
        return problems
    if domain.route not in DOMAIN_ROUTES:
        problems.append(("route", f"{domain.route!r} is not a route ({', '.join(DOMAIN_ROUTES)})"))
    if domain.route == "smarthost" and not domain.smart_host:
        problems.append(("smart_host", "a smart host is required when the route is 'smarthost'"))
    if domain.smart_host and domain.route != "smarthost":
        problems.append(("smart_host", "a smart host is only used when the route is 'smarthost'"))
    if domain.smart_host and (why := smart_host_problem(domain.smart_host)):
        problems.append(("smart_host", why))
    if domain.outbound_auth not in OUTBOUND_AUTH:
        problems.append(("outbound_auth", f"{domain.outbound_auth!r} is not one of: {', '.join(OUTBOUND_AUTH)}"))
    elif domain.outbound_auth == "basic" and not domain.outbound_user:
        problems.append(("outbound_user", "basic authentication needs a user name"))
    elif domain.outbound_auth != "basic" and (domain.outbound_user or domain.outbound_password):
        problems.append(("outbound_user", "a user name and password are only used with basic authentication"))
    return problems


def _checked(config: Config) -> Config:
    problems = domain_problems(config)
    if problems:
        raise DomainError("; ".join(why[:1].upper() + why[1:] for _key, why in problems))
    return config


def _materialized(config: Config) -> Config:
    """``config`` with the implicit default domain (from the FQDN) written into the domain list."""
    if config.effective_domains == config.domains:
        return config
    if not is_domain_name(config.default_domain.name):
        raise DomainError(f"This computer's name {config.default_domain.name!r} is not a valid domain name; "
                          "set the fully-qualified domain name (fqdn) first")
    return replace(config, domains=config.effective_domains)


def find_domain(config: Config, name: str) -> DomainConfig:
    """The configured domain named ``name`` (any case), the implicit default included; DomainError if none."""
    return _find(_materialized(config), name)


def _find(config: Config, name: str) -> DomainConfig:
    for domain in config.domains:
        if domain.name.lower() == name.lower():
            return domain
    raise DomainError(f"There is no domain named {name!r}")


def add_domain(config: Config, domain: DomainConfig) -> Config:
    """Add a local alias or remote domain (the default domain is changed with ``set_default_domain``)."""
    config = _materialized(config)
    if domain.type == "default":
        raise DomainError("A new domain must be a local alias or a remote domain; use Set as Default "
                          "to change the default domain")
    if any(d.name.lower() == domain.name.lower() for d in config.domains):
        raise DomainError(f"A domain named {domain.name!r} already exists")
    return _checked(replace(config, domains=(*config.domains, domain)))


def delete_domain(config: Config, name: str) -> Config:
    config = _materialized(config)
    target = _find(config, name)
    if target.type == "default":
        raise DomainError("The default domain cannot be deleted")
    return replace(config, domains=tuple(d for d in config.domains if d is not target))


def set_default_domain(config: Config, name: str) -> Config:
    """Make local alias ``name`` the default; the old default becomes an alias (every Drop stays in place)."""
    config = _materialized(config)
    target = _find(config, name)
    if target.type == "default":
        return config
    if target.type != "alias":
        raise DomainError("Only a local alias domain can become the default domain")
    old = config.default_domain

    # Each of the two keeps its Drop where it was: an alias with its own Drop keeps it as the default, and the
    # old default then keeps Mailroot/Drop (or its own); an alias without one takes over the default's Drop.
    def swapped(domain: DomainConfig) -> DomainConfig:
        if domain is target:
            return replace(domain, type="default", drop_dir=target.drop_dir or old.drop_dir)
        if domain is old:
            return replace(domain, type="alias", drop_dir=(old.drop_dir or "Drop") if target.drop_dir else "")
        return domain

    return _checked(replace(config, domains=tuple(swapped(d) for d in config.domains)))


def rename_domain(config: Config, old_name: str, new_name: str) -> Config:
    config = _materialized(config)
    target = _find(config, old_name)
    if any(d.name.lower() == new_name.lower() and d is not target for d in config.domains):
        raise DomainError(f"A domain named {new_name!r} already exists")
    renamed = replace(target, name=new_name)
    return _checked(replace(config, domains=tuple(renamed if d is target else d for d in config.domains)))


def update_domain(config: Config, domain: DomainConfig) -> Config:
    """Replace the domain of the same name (case-insensitive) with ``domain``; its type cannot change."""
    config = _materialized(config)
    target = _find(config, domain.name)
    if domain.type != target.type:
        raise DomainError("The type of a domain cannot be changed; delete the domain and add it again "
                          "(Set as Default makes an alias the default domain)")
    return _checked(replace(config, domains=tuple(domain if d is target else d for d in config.domains)))


def with_domain_settings(domain: DomainConfig, *, drop_dir: str | None = None, tls_required: bool | None = None,
                         outbound_auth: str | None = None, outbound_user: str | None = None,
                         outbound_password: str | None = None) -> DomainConfig:
    """`config domain set`: ``domain`` with the settings given (None: left as it is); an Outbound Security other
    than basic drops the account, which only basic authentication uses. update_domain validates the result."""
    changes: dict[str, object] = {}
    if drop_dir is not None:
        changes["drop_dir"] = drop_dir
    if tls_required is not None:
        changes["tls_required"] = tls_required
    if outbound_auth is not None:
        changes["outbound_auth"] = outbound_auth
        if outbound_auth != "basic":
            changes["outbound_user"] = changes["outbound_password"] = ""
    if outbound_user is not None:
        changes["outbound_user"] = outbound_user
    if outbound_password is not None:
        changes["outbound_password"] = outbound_password
    return replace(domain, **changes)  # type: ignore[arg-type]
