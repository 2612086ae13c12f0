"""Tests of configuration validation, the TOML file, option values as text, and domain operations."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.conf.config import (
    Config,
    DomainConfig,
    ServerConfig,
    add_domain,
    computer_fqdn,
    default_config_path,
    delete_domain,
    rename_domain,
    set_default_domain,
    update_domain,
)
from engine.conf.config_file import (
    config_from_dict,
    config_to_dict,
    dumps_config,
    format_value,
    load_config,
    loads_config,
    parse_value,
    save_config,
    validate_config,
    with_option,
)
from engine.conf.options import OPTIONS, OPTIONS_BY_NAME, W3C_LOG_FIELDS
from engine.errors import ConfigError, DomainError
from engine.store.mailroot import default_mailroot

# A valid value different from the default for every option: the round trip covers every field.
NON_DEFAULT: dict[str, object] = {
    "listen": ("0.0.0.0:25", "[::1]:2525", "localhost:2526"),
    "fqdn": "mail.example.org",
    "max_connections": 500,
    "connection_timeout": 30,
    "max_connections_per_peer": 4,
    "max_message_size_kb": 0,
    "max_session_size_kb": 0,
    "max_messages_per_connection": 7,
    "max_recipients": 1,
    "ndr_copy_to": "postmaster@example.org",
    "badmail_dir": "/srv/badmail",
    "badmail_max_size_mb": 512,
    "badmail_max_age_days": 30,
    "retry_intervals_min": (1, 2),
    "delay_notification_min": 60,
    "expiration_min": 120,
    "local_delay_notification_min": 61,
    "local_expiration_min": 121,
    "max_outbound_connections": 10,
    "max_outbound_per_domain": 2,
    "outbound_timeout": 45,
    "outbound_port": 587,
    "outbound_tls": True,
    "outbound_user": "relay-account",
    "outbound_password": "s3cret",
    "outbound_tls_verify": "never",
    "outbound_tls_ca_file": "/etc/ssl/lab-ca.pem",
    "max_hop_count": 30,
    "masquerade_domain": "example.org",
    "smart_host": "[192.0.2.1]",
    "attempt_direct_before_smart_host": True,
    "reverse_dns_lookup": True,
    "dns_servers": ("127.0.0.1:5353", "[::1]:53", "192.0.2.53"),
    "relay_mode": "all_except_listed",
    "relay_allowed": ("10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "lab.example", "*.partner.example"),
    "authenticated_may_relay": False,
    "auth_anonymous": False,
    "auth_basic": True,
    "auth_plaintext_allowed": True,
    "auth_default_domain": "example.org",
    "users_file": "/etc/smtpsvc/users",
    "auth_lockout_failures": 0,
    "auth_lockout_seconds": 60,
    "auth_failure_delay_ms": 0,
    "tls_certificate": "/etc/smtpsvc/cert.pem",
    "tls_key": "/etc/smtpsvc/key.pem",
    "require_tls": True,
    "tls_listen": ("0.0.0.0:465", "[::]:465"),
    "connection_grant": "only_listed",
    "connection_list": ("192.0.2.7", "10.0.0.0/255.0.0.0", "2001:db8::/32", "lab.example", "*.partner.example"),
    "admin_listen": "0.0.0.0:8443",
    "admin_tls_certificate": "/etc/smtpsvc/admin-cert.pem",
    "admin_tls_key": "/etc/smtpsvc/admin-key.pem",
    "admin_allow_plain_loopback": True,
    "operators_file": "/etc/smtpsvc/operators",
    "max_bad_commands": 3,
    "max_command_line": 512,
    "bare_newline": "normalize",
    "log_enabled": False,
    "log_format": "ncsa",
    "log_dir": "/var/log/smtpsvc",
    "log_period": "hourly",
    "log_max_size_mb": 5,
    "log_fields": ("date", "time", "cs-method"),
    "log_local_time": True,
    "metrics_listen": "127.0.0.1:9125",
    "allow_verify": False,
}

DOMAINS = (
    DomainConfig("example.org", "default", drop_dir="/srv/drop"),
    DomainConfig("alias.example.org", "alias"),
    DomainConfig("*.partner.example", "remote", relay_allowed=True, route="smarthost",
                 smart_host="relay.partner.example:2525", tls_required=True, use_helo=True, etrn_queue=True,
                 outbound_auth="basic", outbound_user="partner", outbound_password="s3cret"),
)


def full_config() -> Config:
    return Config(server=ServerConfig(**NON_DEFAULT),  # type: ignore[arg-type]
                  domains=DOMAINS, mailroot="/srv/mailroot", name="Relay for the lab")


def valid_dict(**server: object) -> dict[str, Any]:
    data: dict[str, Any] = config_to_dict(Config(server=ServerConfig(fqdn="host.example")))
    data["server"].update(server)
    return data


def problems_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    return caught.value.problems


def test_option_table_matches_server_config() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(ServerConfig)}
    assert list(fields) == [option.name for option in OPTIONS]
    assert fields == {option.name: option.default for option in OPTIONS}
    assert set(NON_DEFAULT) == set(OPTIONS_BY_NAME)
    assert all(NON_DEFAULT[o.name] != o.default for o in OPTIONS)


def test_defaults_are_valid_and_round_trip() -> None:
    assert config_from_dict({}) == Config()
    assert config_from_dict(config_to_dict(Config())) == Config()


def test_every_option_non_default_round_trips_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "smtpsvc.toml"
    config = full_config()
    save_config(path, config)
    assert load_config(path) == config
    text = path.read_text()
    # Every option is written, in table order, with its description as a comment.
    positions = [text.index(f"\n{option.name} = ") for option in OPTIONS]
    assert positions == sorted(positions)
    assert "# MaxRecipients: Recipients accepted per message" in text


def test_defaults_file_lists_every_option(tmp_path: Path) -> None:
    path = tmp_path / "smtpsvc.toml"
    save_config(path, Config())
    text = path.read_text()
    assert all(f"\n{option.name} = " in text for option in OPTIONS)
    assert "[[domain]]" not in text
    assert load_config(path) == Config()


@pytest.mark.parametrize(("data", "key", "fragment"), [
    ({"colour": "blue"}, "colour", "unknown key"),
    ({"name": ""}, "name", "not a name"),
    ({"name": 5}, "name", "not a name"),
    ({"mailroot": "relative/dir"}, "mailroot", "absolute path"),
    ({"server": []}, "server", "must be a table"),
    ({"server": {"max_recipent": 5}}, "server.max_recipent", "did you mean 'max_recipients'"),
    ({"server": {"max_recipients": "20"}}, "server.max_recipients", "not a whole number"),
    ({"server": {"max_recipients": True}}, "server.max_recipients", "not a whole number"),
    ({"server": {"max_recipients": 2.5}}, "server.max_recipients", "not a whole number"),
    ({"server": {"max_recipients": 0}}, "server.max_recipients", "not from 1 to 100000"),
    ({"server": {"outbound_port": 65536}}, "server.outbound_port", "not from 1 to 65535"),
    ({"server": {"max_command_line": 511}}, "server.max_command_line", "not from 512"),
    ({"server": {"reverse_dns_lookup": "yes"}}, "server.reverse_dns_lookup", "not true or false"),
    ({"server": {"fqdn": 3}}, "server.fqdn", "not a string"),
    ({"server": {"bare_newline": "fix"}}, "server.bare_newline", "one of: reject, normalize"),
    ({"server": {"listen": "127.0.0.1:25"}}, "server.listen", "not a list"),
    ({"server": {"listen": []}}, "server.listen", "needs at least 1 entry"),
    ({"server": {"listen": [["127.0.0.1:25"], {"a": 1}]}}, "server.listen", "is not a string"),
    ({"server": {"listen": ["127.0.0.1"]}}, "server.listen", "port missing"),
    ({"server": {"listen": ["::1:25"]}}, "server.listen", "write IPv6 addresses as [address]:port"),
    ({"server": {"listen": [" 127.0.0.1:25"]}}, "server.listen", "spaces around"),
    ({"server": {"listen": ["[::1:25"]}}, "server.listen", "missing ']'"),
    ({"server": {"listen": ["[mail]:25"]}}, "server.listen", "not an IP address"),
    ({"server": {"listen": ["bad host:25"]}}, "server.listen", "not a host name or IP address"),
    ({"server": {"listen": ["127.0.0.1:99999"]}}, "server.listen", "port must be"),
    ({"server": {"listen": ["127.0.0.1:25", "127.0.0.1:25"]}}, "server.listen", "twice"),
    ({"server": {"listen": [25]}}, "server.listen", "not a string"),
    ({"server": {"relay_allowed": ["10.0.0.1/8"]}}, "server.relay_allowed", "host bits set"),
    ({"server": {"relay_allowed": ["10.0.0.0/33"]}}, "server.relay_allowed", "not an IP address or network"),
    ({"server": {"relay_allowed": ["lab example"]}}, "server.relay_allowed", "network or domain name"),
    ({"server": {"dns_servers": ["dns.example"]}}, "server.dns_servers", "not an IP address"),
    ({"server": {"connection_list": ["10.0.0.1/8"]}}, "server.connection_list", "host bits set"),
    ({"server": {"connection_list": ["10.0.0.0/255.0.255.0"]}}, "server.connection_list", "not an IP address"),
    ({"server": {"connection_list": ["bad_name.example"]}}, "server.connection_list", "not an IP address, network"),
    ({"server": {"connection_list": [" 10.0.0.1"]}}, "server.connection_list", "spaces"),
    ({"server": {"connection_grant": "deny"}}, "server.connection_grant", "one of: all_except_listed"),
    ({"server": {"tls_certificate": "cert.pem"}}, "server.tls_certificate", "not an absolute path"),
    ({"server": {"tls_key": "~/key.pem"}}, "server.tls_key", "not an absolute path"),
    ({"server": {"users_file": "users"}}, "server.users_file", "not an absolute path"),
    ({"server": {"outbound_tls_ca_file": "ca.pem"}}, "server.outbound_tls_ca_file", "not an absolute path"),
    ({"server": {"outbound_tls_verify": "always"}}, "server.outbound_tls_verify", "one of: required, never"),
    ({"server": {"auth_default_domain": "bad domain"}}, "server.auth_default_domain", "not a valid domain"),
    ({"server": {"auth_lockout_seconds": 0}}, "server.auth_lockout_seconds", "not from 1"),
    ({"server": {"tls_listen": ["127.0.0.1"]}}, "server.tls_listen", "port missing"),
    ({"server": {"dns_servers": ["127.0.0.1:0"]}}, "server.dns_servers", "port must be 1-65535"),
    ({"server": {"dns_servers": ["::1"]}}, "server.dns_servers", "[address]:port"),
    ({"server": {"retry_intervals_min": []}}, "server.retry_intervals_min", "needs 1 to 4 entries, not 0"),
    ({"server": {"retry_intervals_min": [1, 2, 3, 4, 5]}}, "server.retry_intervals_min", "not 5"),
    ({"server": {"retry_intervals_min": [15, 0]}}, "server.retry_intervals_min", "0 is not from 1"),
    ({"server": {"retry_intervals_min": [15, "30"]}}, "server.retry_intervals_min", "not a whole number"),
    ({"server": {"fqdn": "bad_name.example"}}, "server.fqdn", "not a valid domain name"),
    ({"server": {"fqdn": "192.0.2.1"}}, "server.fqdn", "not a valid domain name"),
    ({"server": {"masquerade_domain": "-x.example"}}, "server.masquerade_domain", "not a valid domain"),
    ({"server": {"ndr_copy_to": "postmaster"}}, "server.ndr_copy_to", "not a mail address"),
    ({"server": {"smart_host": "[relay.example]"}}, "server.smart_host", "not an IP address"),
    ({"server": {"smart_host": "relay.example:x"}}, "server.smart_host", "port must be"),
    ({"server": {"smart_host": "[relay.example"}}, "server.smart_host", "missing ']'"),
    ({"server": {"badmail_dir": "Pickup"}}, "server.badmail_dir", "Pickup directory"),
    ({"server": {"badmail_dir": "/srv/mr/Queue"}, "mailroot": "/srv/mr"}, "server.badmail_dir", "Queue"),
    ({"server": {"max_message_size_kb": 4096, "max_session_size_kb": 1024}}, "server.max_session_size_kb",
     "less than the message size limit"),
    ({"domain": {"name": "x.example"}}, "domain", "array of tables"),
    ({"domain": ["x.example"]}, "domain[#1]", "must be a table"),
    ({"domain": [{"type": "alias"}]}, "domain[#1].name", "is required"),
    ({"domain": [{"name": "x.example"}]}, "domain[x.example].type", "is required"),
    ({"domain": [{"name": "x.example", "type": "alias", "color": 1}]}, "domain[x.example].color",
     "unknown domain field"),
    ({"domain": [{"name": "x.example", "type": "remote", "use_helo": "yes"}]}, "domain[x.example].use_helo",
     "not true or false"),
    ({"domain": [{"name": "x.example", "type": "local"}]}, "domain[x.example].type", "not a domain type"),
    ({"domain": [{"name": "x..example", "type": "alias"}]}, "domain[x..example].name", "not a valid domain"),
    ({"domain": [{"name": "*.x.example", "type": "alias"}]}, "domain[*.x.example].name", "only for remote"),
    ({"domain": [{"name": "a.example", "type": "default"}, {"name": "b.example", "type": "default"}]},
     "domain", "one default domain, not 2"),
    ({"domain": [{"name": "a.example", "type": "alias"}, {"name": "A.Example", "type": "remote"}]},
     "domain[A.Example].name", "already exists"),
    ({"domain": [{"name": "host.example", "type": "alias"}]}, "domain[host.example].name",
     "the default domain, from the FQDN"),
    ({"domain": [{"name": "r.example", "type": "remote", "route": "mx"}]}, "domain[r.example].route",
     "not a route"),
    ({"domain": [{"name": "r.example", "type": "remote", "route": "smarthost"}]},
     "domain[r.example].smart_host", "required"),
    ({"domain": [{"name": "r.example", "type": "remote", "smart_host": "h.example"}]},
     "domain[r.example].smart_host", "only used when the route is 'smarthost'"),
    ({"domain": [{"name": "r.example", "type": "remote", "route": "smarthost", "smart_host": "a b"}]},
     "domain[r.example].smart_host", "not a valid smart host"),
    ({"domain": [{"name": "r.example", "type": "remote", "drop_dir": "/srv/drop"}]},
     "domain[r.example].drop_dir", "only local domains"),
    ({"domain": [{"name": "a.example", "type": "alias", "drop_dir": "SortTemp"}]},
     "domain[a.example].drop_dir", "SortTemp directory"),
    ({"domain": [{"name": "a.example", "type": "alias", "drop_dir": "Drop/a"}]},
     "domain[a.example].drop_dir", "inside the Drop directory of"),
    ({"server": {"badmail_dir": "/srv/bm"}, "domain": [{"name": "a.example", "type": "alias", "drop_dir": "/srv/bm"}]},
     "domain[a.example].drop_dir", "must not be the Badmail directory"),
    ({"domain": [{"name": "a.example", "type": "alias", "relay_allowed": True}]},
     "domain[a.example].relay_allowed", "only remote domains use relay_allowed"),
    ({"domain": [{"name": "d.example", "type": "default", "drop_dir": "Pickup"}]},
     "domain[d.example].drop_dir", "Pickup directory"),
    ({"domain": [{"name": "r.example", "type": "remote", "outbound_auth": "ntlm"}]},
     "domain[r.example].outbound_auth", "not one of: server, anonymous, basic"),
    ({"domain": [{"name": "r.example", "type": "remote", "outbound_auth": "basic"}]},
     "domain[r.example].outbound_user", "needs a user name"),
    ({"domain": [{"name": "r.example", "type": "remote", "outbound_user": "u", "outbound_password": "p"}]},
     "domain[r.example].outbound_user", "only used with basic authentication"),
    ({"domain": [{"name": "a.example", "type": "alias", "outbound_auth": "basic"}]},
     "domain[a.example].outbound_auth", "only remote domains use outbound_auth"),
])
def test_each_kind_of_problem_is_named(data: dict[str, Any], key: str, fragment: str) -> None:
    full = valid_dict()
    for name, value in data.items():
        if name == "server" and isinstance(value, dict):
            full["server"].update(value)
        else:
            full[name] = value
    problems = problems_of(full)
    assert any(k == key and fragment in why for k, why in problems), problems


def test_drop_dir_is_compared_as_resolved_path(tmp_path: Path) -> None:
    mailroot = tmp_path / "Mailroot"
    (mailroot / "Pickup").mkdir(parents=True)
    (tmp_path / "link").symlink_to(mailroot / "Pickup")
    for drop_dir in (str(tmp_path / "link"), f"{mailroot}/Drop/../Pickup", "./Pickup"):
        data = {"mailroot": str(mailroot), "domain": [{"name": "d.example", "type": "default",
                                                       "drop_dir": drop_dir}]}
        assert problems_of(data) == [("domain[d.example].drop_dir",
                                      "the Drop directory must not be the Mailroot's Pickup directory")]
    ok = {"mailroot": str(mailroot), "domain": [{"name": "d.example", "type": "default", "drop_dir": "Out"}]}
    assert config_from_dict(ok).domains[0].drop_dir == "Out"


def test_all_problems_are_reported_at_once() -> None:
    data = valid_dict(max_recipients=0, listen=["nowhere"], bare_newline="x", unknown=1)
    data["mailroot"] = "rel"
    data["domain"] = [{"name": "a.example", "type": "default"}, {"name": "b.example", "type": "default"}]
    keys = [key for key, _ in problems_of(data)]
    assert sorted(keys) == sorted(["server.max_recipients", "server.listen", "server.bare_newline",
                                   "server.unknown", "mailroot", "domain"])
    message = str(ConfigError(problems_of(data)))
    assert "6 problems" in message and "server.listen" in message


def test_valid_forms_are_accepted() -> None:
    config = config_from_dict(valid_dict(
        listen=["[::]:25", "0.0.0.0:25", "localhost:2525", "127.0.0.1:0"],
        dns_servers=["192.0.2.1", "192.0.2.2:5353", "[2001:db8::1]", "[2001:db8::1]:53"],
        relay_allowed=["192.0.2.0/24", "192.0.2.9", "::1", "2001:db8::/48"],
        smart_host="relay.example:587", retry_intervals_min=[5]))
    assert config.server.listen[0] == "[::]:25"
    assert config.server.retry_intervals_min == (5,)
    for smart_host in ("relay", "relay.example", "[192.0.2.1]", "[2001:db8::1]:25", "192.0.2.1"):
        assert with_option(config, "smart_host", smart_host).server.smart_host == smart_host


# --- The file ---------------------------------------------------------------------------------------

def test_missing_file_is_the_default_configuration(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()


def test_broken_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "smtpsvc.toml"
    path.write_text('name = "x"\n[server]\nmax_recipients = = 5\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [(key, why)] = caught.value.problems
    assert key == str(path)
    assert "not valid TOML" in why and "line 3" in why


def test_file_problems_use_setting_keys(tmp_path: Path) -> None:
    path = tmp_path / "smtpsvc.toml"
    path.write_text("[server]\nmax_recipients = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [("server.max_recipients", "0 is not from 1 to 100000")]


def test_not_utf8_and_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "smtpsvc.toml"
    path.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path)  # a directory


def test_save_creates_parents_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "smtpsvc.toml"
    save_config(path, full_config())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["smtpsvc.toml"]


def test_save_replaces_the_target_of_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.toml"
    link = tmp_path / "smtpsvc.toml"
    save_config(target, Config())
    link.symlink_to(target)
    save_config(link, full_config())
    assert link.is_symlink()
    assert load_config(target) == full_config()


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_save_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 failing: str) -> None:
    path = tmp_path / "smtpsvc.toml"
    save_config(path, Config())
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="No space left"):
        save_config(path, full_config())
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["smtpsvc.toml"]  # the temp file is gone too


def test_save_refuses_an_invalid_config_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "smtpsvc.toml"
    save_config(path, Config())
    before = path.read_bytes()
    bad = Config(server=ServerConfig(max_recipients=0))
    with pytest.raises(ConfigError):
        save_config(path, bad)
    with pytest.raises(ConfigError):
        validate_config(bad)
    assert path.read_bytes() == before


def test_default_paths_come_from_platformdirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_config_path() == tmp_path / "config" / "smtpsvc" / "smtpsvc.toml"
    assert default_mailroot() == tmp_path / "data" / "smtpsvc" / "Mailroot"


# --- Values as text and single changes ------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "value"), [
    ("max_recipients", " 42 ", 42),
    ("reverse_dns_lookup", "yes", True), ("reverse_dns_lookup", "ON", True), ("reverse_dns_lookup", "1", True),
    ("reverse_dns_lookup", "true", True), ("reverse_dns_lookup", "no", False),
    ("reverse_dns_lookup", "Off", False), ("reverse_dns_lookup", "0", False),
    ("reverse_dns_lookup", "false", False),
    ("fqdn", "mail.example", "mail.example"),
    ("bare_newline", "normalize", "normalize"),
    ("listen", "127.0.0.1:25, [::1]:25", ("127.0.0.1:25", "[::1]:25")),
    ("relay_allowed", "", ()),
    ("retry_intervals_min", "10,20 , 30", (10, 20, 30)),
])
def test_parse_value(name: str, text: str, value: object) -> None:
    option = OPTIONS_BY_NAME[name]
    assert parse_value(option, text) == value
    assert parse_value(option, format_value(option, value)) == value


@pytest.mark.parametrize(("name", "text"), [
    ("max_recipients", "many"), ("reverse_dns_lookup", "maybe"), ("retry_intervals_min", "15,x"),
])
def test_parse_value_refuses(name: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_value(OPTIONS_BY_NAME[name], text)
    assert caught.value.problems[0][0] == f"server.{name}"


def test_format_value() -> None:
    assert format_value(OPTIONS_BY_NAME["authenticated_may_relay"], True) == "yes"
    assert format_value(OPTIONS_BY_NAME["retry_intervals_min"], (15, 30)) == "15, 30"
    assert format_value(OPTIONS_BY_NAME["dns_servers"], ()) == ""


def test_with_option_validates() -> None:
    config = Config()
    assert with_option(config, "max_recipients", 5).server.max_recipients == 5
    assert with_option(config, "server.listen", ["[::1]:25"]).server.listen == ("[::1]:25",)
    assert with_option(config, "name", "Lab").name == "Lab"
    assert with_option(config, "mailroot", "~/mail").mailroot == "~/mail"
    assert config == Config()  # frozen: nothing changed in place
    with pytest.raises(ConfigError) as caught:
        with_option(config, "max_recipients", "5")
    assert caught.value.problems == [("server.max_recipients", "'5' is not a whole number")]
    with pytest.raises(ConfigError, match="did you mean 'max_hop_count'"):
        with_option(config, "max_hop_cont", 3)


# --- Domains ----------------------------------------------------------------------------------------

def explicit() -> Config:
    return Config(domains=(DomainConfig("main.example", "default", drop_dir="/srv/drop"),
                           DomainConfig("alias.example", "alias"),
                           DomainConfig("remote.example", "remote")))


def names_types(config: Config) -> list[tuple[str, str, str]]:
    return [(d.name, d.type, d.drop_dir) for d in config.domains]


def test_add_domain() -> None:
    config = add_domain(explicit(), DomainConfig("*.wild.example", "remote", relay_allowed=True))
    assert config.domains[-1] == DomainConfig("*.wild.example", "remote", relay_allowed=True)
    with pytest.raises(DomainError, match=r"A domain named .ALIAS\.example. already exists"):
        add_domain(config, DomainConfig("ALIAS.example", "alias"))
    with pytest.raises(DomainError, match="not a valid domain name"):
        add_domain(config, DomainConfig("*.wild2.example", "alias"))
    with pytest.raises(DomainError, match="Set as Default"):
        add_domain(config, DomainConfig("new.example", "default"))
    with pytest.raises(DomainError, match="smart host is required"):
        add_domain(config, DomainConfig("sh.example", "remote", route="smarthost"))


def test_operations_materialize_the_implicit_default() -> None:
    config = Config(server=ServerConfig(fqdn="Host.Example"))
    added = add_domain(config, DomainConfig("alias.example", "alias"))
    assert names_types(added) == [("host.example", "default", ""), ("alias.example", "alias", "")]
    with pytest.raises(DomainError, match="already exists"):
        add_domain(config, DomainConfig("HOST.example", "alias"))


def test_an_odd_computer_name_is_no_error_until_it_becomes_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda: "build_host")  # underscores happen in host names
    computer_fqdn.cache_clear()  # the name is looked up once per process
    try:
        validate_config(Config())
        with pytest.raises(DomainError, match="set the fully-qualified domain name"):
            add_domain(Config(), DomainConfig("alias.example", "alias"))
    finally:
        computer_fqdn.cache_clear()


def test_delete_domain() -> None:
    config = delete_domain(explicit(), "Remote.Example")
    assert [d.name for d in config.domains] == ["main.example", "alias.example"]
    with pytest.raises(DomainError, match=r"^The default domain cannot be deleted$"):
        delete_domain(config, "main.example")
    with pytest.raises(DomainError, match="The default domain cannot be deleted"):
        delete_domain(Config(server=ServerConfig(fqdn="host.example")), "host.example")
    with pytest.raises(DomainError, match=r"There is no domain named .gone\.example."):
        delete_domain(config, "gone.example")


def test_set_default_domain_swaps_types_and_moves_the_drop_directory() -> None:
    config = set_default_domain(explicit(), "alias.example")
    assert names_types(config) == [("main.example", "alias", ""), ("alias.example", "default", "/srv/drop"),
                                   ("remote.example", "remote", "")]
    assert config.default_domain.name == "alias.example"
    assert set_default_domain(config, "alias.example") == config
    with pytest.raises(DomainError, match="Only a local alias"):
        set_default_domain(config, "remote.example")
    with pytest.raises(DomainError, match="There is no domain"):
        set_default_domain(config, "nowhere.example")


def test_set_default_domain_keeps_every_drop_in_place() -> None:
    config = update_domain(explicit(), DomainConfig("alias.example", "alias", drop_dir="AliasDrop"))
    config = set_default_domain(config, "alias.example")
    assert names_types(config)[:2] == [("main.example", "alias", "/srv/drop"),
                                       ("alias.example", "default", "AliasDrop")]
    plain = update_domain(explicit(), DomainConfig("main.example", "default"))
    plain = update_domain(plain, DomainConfig("alias.example", "alias", drop_dir="AliasDrop"))
    assert names_types(set_default_domain(plain, "alias.example"))[:2] == [
        ("main.example", "alias", "Drop"), ("alias.example", "default", "AliasDrop")]


def test_set_default_from_the_implicit_default() -> None:
    config = Config(server=ServerConfig(fqdn="host.example"), domains=(DomainConfig("a.example", "alias"),))
    config = set_default_domain(config, "a.example")
    assert names_types(config) == [("host.example", "alias", ""), ("a.example", "default", "")]
    validate_config(config)


def test_rename_domain() -> None:
    config = rename_domain(explicit(), "alias.example", "other.example")
    assert [d.name for d in config.domains] == ["main.example", "other.example", "remote.example"]
    assert rename_domain(config, "other.example", "OTHER.example").domains[1].name == "OTHER.example"
    with pytest.raises(DomainError, match="already exists"):
        rename_domain(config, "other.example", "Main.example")
    with pytest.raises(DomainError, match="not a valid domain name"):
        rename_domain(config, "other.example", "bad name")
    with pytest.raises(DomainError, match="There is no domain"):
        rename_domain(config, "alias.example", "x.example")


def test_update_domain() -> None:
    changed = DomainConfig("REMOTE.example", "remote", route="smarthost", smart_host="[192.0.2.1]")
    config = update_domain(explicit(), changed)
    assert config.domains[2] == changed
    with pytest.raises(DomainError, match="type of a domain cannot be changed"):
        update_domain(config, DomainConfig("alias.example", "remote"))
    with pytest.raises(DomainError, match="Only remote domains use use_helo"):
        update_domain(config, DomainConfig("alias.example", "alias", use_helo=True))
    with pytest.raises(DomainError, match="Pickup"):
        update_domain(config, DomainConfig("main.example", "default", drop_dir="Pickup"))


# --- Generated configurations -----------------------------------------------------------------------

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
domain_name = st.lists(label, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "example"]))
host_name = st.lists(label, min_size=1, max_size=2).map(lambda ls: ".".join([*ls, "test"]))
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
port = st.integers(1, 65_535)
smart_host = st.one_of(host_name, st.tuples(host_name, port).map(lambda hp: f"{hp[0]}:{hp[1]}"),
                       ipv4.map(lambda ip: f"[{ip}]"), ipv6.map(lambda ip: f"[{ip}]"))
listen_item = st.one_of(st.tuples(ipv4, port).map(lambda a: f"{a[0]}:{a[1]}"),
                        st.tuples(ipv6, port).map(lambda a: f"[{a[0]}]:{a[1]}"),
                        st.tuples(host_name, port).map(lambda a: f"{a[0]}:{a[1]}"))
dns_item = st.one_of(ipv4, st.tuples(ipv4, port).map(lambda a: f"{a[0]}:{a[1]}"),
                     st.tuples(ipv6, port).map(lambda a: f"[{a[0]}]:{a[1]}"))
network = st.one_of(st.tuples(ipv4, st.integers(0, 32)), st.tuples(ipv6, st.integers(0, 128))).map(
    lambda a: str(ipaddress.ip_network(f"{a[0]}/{a[1]}", strict=False)))
directory = st.sampled_from(["", "Out", "/srv/elsewhere", "~/mail/x", "../Shared"])
badmail_directory = st.sampled_from(["", "Bad", "/srv/bad", "~/mail/bad", "../SharedBad"])  # never a Drop

TEXT_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "listen": st.lists(listen_item, min_size=1, max_size=3, unique=True).map(tuple),
    "fqdn": st.just("") | host_name,
    "ndr_copy_to": st.just("") | st.tuples(label, domain_name).map(lambda a: f"{a[0]}@{a[1]}"),
    "badmail_dir": badmail_directory,
    "masquerade_domain": st.just("") | domain_name,
    "smart_host": st.just("") | smart_host,
    "dns_servers": st.lists(dns_item, max_size=3, unique=True).map(tuple),
    "relay_allowed": st.lists(st.one_of(network, domain_name, domain_name.map(lambda d: "*." + d)),
                              max_size=4, unique=True).map(tuple),
    "outbound_user": st.just("") | label,
    "outbound_password": st.just("") | label,
    "outbound_tls_ca_file": st.sampled_from(["", "/etc/ssl/certs/ca-certificates.crt"]),
    "auth_default_domain": st.just("") | domain_name,
    "users_file": st.sampled_from(["", "/etc/smtpsvc/users", "/home/x y/users"]),
    "tls_certificate": st.sampled_from(["", "/etc/smtpsvc/cert.pem"]),
    "tls_key": st.sampled_from(["", "/etc/smtpsvc/key.pem"]),
    "tls_listen": st.lists(listen_item, max_size=2, unique=True).map(tuple),
    "connection_list": st.lists(st.one_of(network, domain_name, domain_name.map(lambda d: "*." + d)),
                                max_size=4, unique=True).map(tuple),
    "log_dir": directory,
    "metrics_listen": st.just("") | listen_item,
    "log_fields": st.lists(st.sampled_from(W3C_LOG_FIELDS), min_size=1, max_size=6, unique=True).map(tuple),
    "admin_listen": st.just("") | listen_item,
    "admin_tls_certificate": st.sampled_from(["", "/etc/smtpsvc/cert.pem"]),
    "admin_tls_key": st.sampled_from(["", "/etc/smtpsvc/key.pem"]),
    "operators_file": st.sampled_from(["", "/etc/smtpsvc/operators"]),
}


def option_value(name: str) -> st.SearchStrategy[Any]:
    option = OPTIONS_BY_NAME[name]
    if name in TEXT_VALUES:
        return TEXT_VALUES[name]
    if option.type == "int":
        return st.integers(option.minimum, option.maximum)
    if option.type == "int_list":
        return st.lists(st.integers(option.minimum, option.maximum), min_size=1, max_size=4).map(tuple)
    if option.type == "bool":
        return st.booleans()
    assert option.type == "choice", name
    return st.sampled_from(option.choices)


@st.composite
def remote_domain(draw: st.DrawFn, name: str) -> DomainConfig:
    route = draw(st.sampled_from(["dns", "smarthost"]))
    auth = draw(st.sampled_from(["server", "anonymous", "basic"]))
    account = {"outbound_user": draw(label), "outbound_password": draw(st.just("") | label)} if auth == "basic" else {}
    return DomainConfig(name, "remote", relay_allowed=draw(st.booleans()), route=route, outbound_auth=auth,
                        **account,
                        smart_host=draw(smart_host) if route == "smarthost" else "",
                        tls_required=draw(st.booleans()), use_helo=draw(st.booleans()),
                        etrn_queue=draw(st.booleans()))


@st.composite
def configs(draw: st.DrawFn) -> Config:
    server = ServerConfig(**{o.name: draw(option_value(o.name)) for o in OPTIONS})
    assume(not 0 < server.max_session_size_kb < server.max_message_size_kb)
    names = draw(st.lists(domain_name, max_size=5, unique_by=str.lower))
    domains: list[DomainConfig] = []
    with_default = draw(st.booleans())
    for index, name in enumerate(names):
        if index == 0 and with_default:
            domains.append(DomainConfig(name, "default", drop_dir=draw(directory)))
        elif draw(st.booleans()):
            domains.append(DomainConfig(name, "alias", drop_dir=draw(directory)))
        else:
            wild = draw(st.booleans())
            domains.append(draw(remote_domain(f"*.{name}" if wild else name)))
    assume(len({d.name.lower() for d in domains}) == len(domains))
    name = draw(st.text(min_size=1, max_size=30).filter(lambda s: bool(s.strip()) and s.isprintable()))
    mailroot = draw(st.sampled_from(["", "/srv/Mailroot", "~/Mailroot"]))
    return Config(server=server, domains=tuple(draw(st.permutations(domains))), mailroot=mailroot, name=name)


@settings(max_examples=150, deadline=None)
@given(configs())
def test_generated_configs_round_trip(config: Config) -> None:
    assert config_from_dict(config_to_dict(config)) == config
    assert loads_config(dumps_config(config)) == config


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_generated_values_round_trip_as_text(data: st.DataObject) -> None:
    option = data.draw(st.sampled_from(OPTIONS))
    value = data.draw(option_value(option.name))
    text = format_value(option, value)
    assert parse_value(option, text) == value
    unlimited = Config(server=ServerConfig(max_message_size_kb=0, max_session_size_kb=0))  # no cross limit
    assert getattr(with_option(unlimited, option.name, parse_value(option, text)).server, option.name) == value
