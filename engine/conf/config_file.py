"""The configuration file: validation of plain data, the TOML layout, atomic saving, option values as text.

Layout: top-level ``name`` and ``mailroot``, a ``[server]`` table with every option of ``OPTIONS`` (in table
order, each with its description as a comment, so the file documents itself) and one ``[[domain]]`` table
per configured domain. Every reader goes through ``config_from_dict``, which reports all problems at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from engine.conf.access import entry_problem
from engine.conf.config import (
    REMOTE_FIELDS,
    Config,
    DomainConfig,
    ServerConfig,
    domain_problems,
    host_port_problem,
    is_domain_name,
    path_problems,
    smart_host_problem,
)
from engine.conf.options import OPTIONS, OPTIONS_BY_NAME, Option
from engine.errors import ConfigError
from engine.store.mailroot import write_private

Problems = list[tuple[str, str]]

TOP_KEYS = ("name", "mailroot", "server", "domain")
_BLANK_DOMAIN = DomainConfig(name="", type="")
DOMAIN_FIELD_TYPES: dict[str, type] = {f.name: type(getattr(_BLANK_DOMAIN, f.name))
                                        for f in fields(DomainConfig)}
_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")
_ADDRESS = re.compile(r"[^@\s<>]+@(?P<domain>[^@\s<>]+)")


# --- Syntax of single values ------------------------------------------------------------------------

def _listen_problem(text: str) -> str | None:
    return host_port_problem(text, default_port=None, min_port=0)  # port 0: the system picks one (tests)


def _dns_server_problem(text: str) -> str | None:
    return host_port_problem(text, default_port=53, ip_only=True)


def _network_problem(text: str) -> str | None:
    try:
        ipaddress.ip_network(text)
    except ValueError as exc:
        return f"{text!r} is not an IP address or network (CIDR): {exc}"
    return None


def _domain_problem(text: str) -> str | None:
    return None if not text or is_domain_name(text) else f"{text!r} is not a valid domain name"


def _address_problem(text: str) -> str | None:
    match = _ADDRESS.fullmatch(text)
    if not text or (match and is_domain_name(match["domain"])):
        return None
    return f"{text!r} is not a mail address (user@domain)"


def _path_problem(text: str) -> str | None:
    return "must not contain NUL characters" if "\0" in text else None


def _absolute_path_problem(text: str) -> str | None:
    if not text:
        return None
    if "\0" in text:
        return "must not contain NUL characters"
    return None if Path(text).is_absolute() else f"{text!r} is not an absolute path (or empty)"


_TEXT_CHECKS: dict[str, Callable[[str], str | None]] = {
    "listen": _listen_problem,
    "fqdn": _domain_problem,
    "ndr_copy_to": _address_problem,
    "badmail_dir": _path_problem,
    "log_dir": _path_problem,
    "metrics_listen": lambda text: _listen_problem(text) if text else None,
    "masquerade_domain": _domain_problem,
    "smart_host": lambda text: smart_host_problem(text) if text else None,
    "dns_servers": _dns_server_problem,
    "relay_allowed": entry_problem,
    "outbound_tls_ca_file": _absolute_path_problem,
    "auth_default_domain": _domain_problem,
    "users_file": _absolute_path_problem,
    "tls_certificate": _absolute_path_problem,
    "tls_key": _absolute_path_problem,
    "tls_listen": _listen_problem,
    "connection_list": entry_problem,
    "admin_listen": lambda text: _listen_problem(text) if text else None,
    "admin_tls_certificate": _absolute_path_problem,
    "admin_tls_key": _absolute_path_problem,
    "operators_file": _absolute_path_problem,
}


def _scalar_problem(option: Option, value: object) -> str | None:
    """Why one value (or one list item) does not fit ``option``, or None."""
    if option.type in ("int", "int_list"):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{value!r} is not a whole number"
        low = option.minimum if option.minimum is not None else value
        high = option.maximum if option.maximum is not None else value
        return None if low <= value <= high else f"{value} is not from {low} to {high}"
    if option.type == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    if option.type in ("choice", "str_list") and option.choices and value not in option.choices:
        return f"{value!r} is not one of: {', '.join(option.choices)}"
    check = _TEXT_CHECKS.get(option.name)
    return check(value) if check else None


def item_problem(option: Option, item: object) -> str | None:
    """Why one entry of a list option (an identity, a relay network, a DNS server …) is not valid, or None."""
    if option.type not in ("str_list", "int_list"):
        raise ValueError(f"{option.name} is not a list option")
    return _scalar_problem(option, item)


def option_problems(option: Option, value: object) -> list[str]:
    """Every reason ``value`` (as read from TOML: lists, not tuples, are fine) cannot be ``option``."""
    if option.type not in ("str_list", "int_list"):
        why = _scalar_problem(option, value)
        return [why] if why else []
    if not isinstance(value, list | tuple):
        return [f"{value!r} is not a list"]
    problems = [why for item in value if (why := _scalar_problem(option, item))]
    if option.max_items is not None and not option.min_items <= len(value) <= option.max_items:
        problems.append(f"needs {option.min_items} to {option.max_items} entries, not {len(value)}")
    elif len(value) < option.min_items:
        problems.append(f"needs at least {option.min_items} entr{'y' if option.min_items == 1 else 'ies'}")
    if option.type == "str_list" and not problems:  # (items might be unhashable tables otherwise)
        problems += [f"lists {item!r} twice" for item in dict.fromkeys(value) if value.count(item) > 1]
    return problems


def _unknown(key: str, known: Mapping[str, object] | tuple[str, ...], what: str) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"unknown {what}" + (f" (did you mean {close[0]!r}?)" if close else "")


# --- Plain data -> Config ---------------------------------------------------------------------------

def config_from_dict(data: Mapping[str, object]) -> Config:
    """Build a Config from plain data (parsed TOML); raise one ConfigError naming every problem."""
    problems: Problems = []
    problems += [(key, _unknown(key, TOP_KEYS, "key")) for key in data if key not in TOP_KEYS]
    defaults = Config()
    name = data.get("name", defaults.name)
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        problems.append(("name", f"{name!r} is not a name (printable text, not empty)"))
        name = defaults.name
    mailroot = data.get("mailroot", defaults.mailroot)
    if not isinstance(mailroot, str) or (mailroot and not Path(mailroot).expanduser().is_absolute()):
        problems.append(("mailroot", f"{mailroot!r} is not an absolute path (or empty for the default)"))
        mailroot = defaults.mailroot
    server, bad_options = _server_from_dict(data.get("server", {}), problems)
    domains = _domains_from_dict(data.get("domain", []), problems)
    config = Config(server=server, domains=domains, mailroot=mailroot, name=name)
    problems += _cross_problems(config, bad_options)
    if problems:
        raise ConfigError(problems)
    return config


def _server_from_dict(data: object, problems: Problems) -> tuple[ServerConfig, set[str]]:
    if not isinstance(data, Mapping):
        problems.append(("server", "must be a table ([server])"))
        return ServerConfig(), set()
    values: dict[str, Any] = {}  # each value checked against its option's type below
    bad: set[str] = set()
    for key, value in data.items():
        option = OPTIONS_BY_NAME.get(key)
        if option is None:
            problems.append((f"server.{key}", _unknown(key, OPTIONS_BY_NAME, "option")))
            continue
        whys = option_problems(option, value)
        problems += [(f"server.{key}", why) for why in whys]
        if whys:
            bad.add(key)
        else:
            values[key] = tuple(value) if isinstance(value, list | tuple) else value
    return replace(ServerConfig(), **values), bad


def _domains_from_dict(data: object, problems: Problems) -> tuple[DomainConfig, ...]:
    if not isinstance(data, list | tuple):
        problems.append(("domain", "must be an array of tables ([[domain]])"))
        return ()
    domains: list[DomainConfig] = []
    for index, entry in enumerate(data, 1):
        if not isinstance(entry, Mapping):
            problems.append((f"domain[#{index}]", "must be a table ([[domain]])"))
            continue
        name = entry.get("name")
        key = f"domain[{name}]" if isinstance(name, str) else f"domain[#{index}]"
        found = len(problems)
        for field, value in entry.items():
            wanted = DOMAIN_FIELD_TYPES.get(field)
            if wanted is None:
                problems.append((f"{key}.{field}", _unknown(field, DOMAIN_FIELD_TYPES, "domain field")))
            elif type(value) is not wanted:
                kind = "true or false" if wanted is bool else "a string"
                problems.append((f"{key}.{field}", f"{value!r} is not {kind}"))
        problems += [(f"{key}.{field}", "is required") for field in ("name", "type") if field not in entry]
        if len(problems) == found:  # entries with bad fields stay out of the list-wide checks
            domains.append(DomainConfig(**{k: v for k, v in entry.items()}))  # types checked above
    return tuple(domains)


def _cross_problems(config: Config, bad_options: set[str]) -> Problems:
    """Checks that involve more than one value; skipped where a value involved is already wrong."""
    problems = domain_problems(config)
    server = config.server
    if not {"max_message_size_kb", "max_session_size_kb"} & bad_options and \
            0 < server.max_session_size_kb < server.max_message_size_kb:
        problems.append(("server.max_session_size_kb",
                         f"{server.max_session_size_kb} KB is less than the message size limit "
                         f"({server.max_message_size_kb} KB)"))
    if server.badmail_dir and "badmail_dir" not in bad_options:
        problems += [(key, why) for key, why in path_problems(config) if key == "server.badmail_dir"]
    return problems


def validate_config(config: Config) -> None:
    """Raise ConfigError if ``config`` (built in code, e.g. by a property sheet) is not valid."""
    config_from_dict(config_to_dict(config))


def resolve_key(key: str) -> str:
    """The setting ``key`` names: ``name``, ``mailroot`` or an option (``server.`` prefix allowed)."""
    option = key.removeprefix("server.")
    if key in ("name", "mailroot") or option in OPTIONS_BY_NAME:
        return key if key in ("name", "mailroot") else option
    raise ConfigError([(key, _unknown(option, (*OPTIONS_BY_NAME, "name", "mailroot"), "key"))])


def with_option(config: Config, key: str, value: object) -> Config:
    """``config`` with one setting (see ``resolve_key``) changed and the result validated."""
    data = config_to_dict(config)
    key = resolve_key(key)
    if key in ("name", "mailroot"):
        data[key] = value
    else:
        server = data["server"]
        assert isinstance(server, dict)
        server[key] = value
    return config_from_dict(data)


# --- Config -> plain data and TOML text ------------------------------------------------------------

def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def domain_to_dict(domain: DomainConfig) -> dict[str, object]:
    """The fields that mean something for the domain's type (the rest must be at their defaults)."""
    keys = ["name", "type"]
    if domain.type != "remote":
        keys.append("drop_dir")
    else:
        keys += REMOTE_FIELDS
    return {key: getattr(domain, key) for key in keys}


def config_to_dict(config: Config) -> dict[str, object]:
    return {
        "name": config.name,
        "mailroot": config.mailroot,
        "server": {option.name: _plain(getattr(config.server, option.name)) for option in OPTIONS},
        "domain": [domain_to_dict(domain) for domain in config.domains],
    }


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" for line in textwrap.wrap(text, 100))


def _option_comment(option: Option) -> str:
    limits = ""
    if option.minimum is not None and option.maximum is not None:
        limits = f" [{option.minimum}..{option.maximum}{' ' + option.unit if option.unit else ''}]"
    iis = f"{option.iis_name}: " if option.iis_name else ""
    return _comment(f"{iis}{option.description}{limits}")


def _toml_line(key: str, value: object) -> str:
    """``key = value``, with lists on one line (tomli_w spreads every array over several lines)."""
    if isinstance(value, list):
        items = (tomli_w.dumps({"v": item}).removeprefix("v = ").rstrip("\n") for item in value)
        return f"{key} = [{', '.join(items)}]\n"
    return tomli_w.dumps({key: value})


def dumps_config(config: Config) -> str:
    """The TOML text of ``config``, with every option and its description; validates first."""
    validate_config(config)
    data = config_to_dict(config)
    parts = [
        _comment("smtpsvc: the configuration of one SMTP virtual server. Every option is listed; "
                 "change it with `smtpsvc config set KEY VALUE` or in the manager's property sheets."),
        tomli_w.dumps({"name": data["name"]}),
        _comment("The Mailroot directory (Badmail, Drop, Pickup, Queue, SortTemp); empty = the user's "
                 "data directory."),
        tomli_w.dumps({"mailroot": data["mailroot"]}),
        "\n[server]\n",
    ]
    server = data["server"]
    assert isinstance(server, dict)
    for option in OPTIONS:
        parts += [_option_comment(option), _toml_line(option.name, server[option.name])]
    if config.domains:
        parts += ["\n", _comment("Domains: one default, local aliases, remote domains. Without a default, the "
                                 "FQDN is the default domain. drop_dir (local domains): their Drop directory, "
                                 "relative = inside the Mailroot; empty = the default domain's Drop.")]
        # Written table by table: tomli_w would put short tables inline, as one long "domain = [...]".
        parts += [f"\n[[domain]]\n{tomli_w.dumps(domain_to_dict(domain))}" for domain in config.domains]
    return "".join(parts)


def loads_config(text: str, source: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # the message ends with "(at line N, column M)"
        raise ConfigError([(source, f"not valid TOML: {exc}")]) from None
    return config_from_dict(data)


def load_config(path: Path) -> Config:
    """Read the configuration file; a missing file is the default configuration."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot be read: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([(str(path), f"is not UTF-8 text (byte {exc.start})")]) from None
    return loads_config(text, str(path))


def save_config(path: Path, config: Config) -> None:
    """Write ``config`` atomically (temp file beside it, fsync, rename, fsync dir), mode 0600.

    A crash or error leaves either the old file or the new one, never a mix. A symbolic link at
    ``path`` is kept: its target is replaced.
    """
    data = dumps_config(config).encode("utf-8")
    write_private(path.expanduser().resolve(), data)


# --- Option values as command-line text -------------------------------------------------------------

def _parse_int(option: Option, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError([(f"server.{option.name}", f"{text.strip()!r} is not a whole number")]) from None


def parse_value(option: Option, text: str) -> object:
    """The value typed on a command line as the option's type (checked further by ``with_option``).

    Lists are comma separated; booleans are yes/no, true/false, on/off or 1/0.
    """
    if option.type == "int":
        return _parse_int(option, text)
    if option.type == "bool":
        word = text.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ConfigError([(f"server.{option.name}", f"{text!r} is not yes or no")])
    if option.type in ("str_list", "int_list"):
        items = [item.strip() for item in text.split(",") if item.strip()]
        if option.type == "int_list":
            return tuple(_parse_int(option, item) for item in items)
        return tuple(items)
    return text.strip()


def format_value(option: Option, value: object) -> str:
    """The text ``parse_value`` reads back as ``value``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)
