"""Tests of `smtpsvc config`: real files, the real argparse parser, output and exit codes."""

from __future__ import annotations

import argparse
import errno
import os
import stat
from pathlib import Path

import pytest

from app import config_cmd
from engine.conf.config import Config, DomainConfig, ServerConfig
from engine.conf.config_file import load_config, save_config
from engine.conf.options import OPTIONS


def smtpsvc(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``smtpsvc config ARGV...`` as the main command line will: parse, then ``args.func(args)``."""
    parser = argparse.ArgumentParser(prog="smtpsvc")
    config_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["config", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "conf" / "smtpsvc.toml"


def test_set_then_get(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    assert smtpsvc(capsys, "set", "max_recipients", "5", "--config", str(path)) == (0, "", "")
    assert smtpsvc(capsys, "--config", str(path), "get", "max_recipients") == (0, "5\n", "")
    assert smtpsvc(capsys, "get", "server.max_recipients", "--config", str(path))[1] == "5\n"
    assert load_config(path).server.max_recipients == 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_set_each_kind_of_value(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    for key, text in [("listen", "127.0.0.1:25, [::1]:2525"), ("reverse_dns_lookup", "on"),
                      ("retry_intervals_min", "5,10"), ("bare_newline", "normalize"), ("name", "Lab relay"),
                      ("mailroot", "/srv/Mailroot"), ("relay_allowed", "")]:
        assert smtpsvc(capsys, "set", key, text, "--config", str(path))[0] == 0
    config = load_config(path)
    assert config.server.listen == ("127.0.0.1:25", "[::1]:2525")
    assert config.server.reverse_dns_lookup is True
    assert config.server.retry_intervals_min == (5, 10)
    assert config.server.bare_newline == "normalize"
    assert (config.name, config.mailroot) == ("Lab relay", "/srv/Mailroot")
    assert smtpsvc(capsys, "get", "reverse_dns_lookup", "--config", str(path))[1] == "yes\n"
    assert smtpsvc(capsys, "get", "retry_intervals_min", "--config", str(path))[1] == "5, 10\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["set", "max_recipients", "0"], "server.max_recipients: 0 is not from 1 to 100000"),
    (["set", "max_recipients", "many"], "server.max_recipients: 'many' is not a whole number"),
    (["set", "reverse_dns_lookup", "perhaps"], "'perhaps' is not yes or no"),
    (["set", "listen", "127.0.0.1"], "port missing"),
    (["set", "max_recipent", "5"], "max_recipent: unknown key (did you mean 'max_recipients'?)"),
    (["set", "mailroot", "relative"], "mailroot: 'relative' is not an absolute path"),
    (["get", "nonsense"], "nonsense: unknown key"),
])
def test_bad_key_or_value_is_one_message_and_exit_2(capsys: pytest.CaptureFixture[str], path: Path,
                                                     argv: list[str], message: str) -> None:
    save_config(path, Config(server=ServerConfig(max_recipients=7)))
    before = path.read_bytes()
    code, out, err = smtpsvc(capsys, *argv, "--config", str(path))
    assert (code, out) == (2, "")
    assert err.startswith("smtpsvc config: ") and message in err
    assert path.read_bytes() == before


def test_show_lists_every_option(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    code, out, _ = smtpsvc(capsys, "show", "--config", str(path))
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == ["name = Default SMTP Virtual Server", "mailroot = "]
    assert [line.split(" = ")[0] for line in lines[2:2 + len(OPTIONS)]] == [o.name for o in OPTIONS]
    assert "listen = 127.0.0.1:2525" in lines
    assert "authenticated_may_relay = yes" in lines
    assert any(line.startswith("domain[") and "Local (Default)" in line and "implicit" in line for line in lines)


def test_show_n_and_v(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    save_config(path, Config(server=ServerConfig(max_recipients=7, fqdn="mail.example"),
                             domains=(DomainConfig("mail.example", "default", drop_dir="/srv/drop"),
                                      DomainConfig("r.example", "remote", use_helo=True))))
    code, out, _ = smtpsvc(capsys, "show", "-n", "--config", str(path))
    assert code == 0
    assert out.splitlines() == ["fqdn = mail.example", "max_recipients = 7",
                                "domain[mail.example] = Local (Default), drop_dir=/srv/drop",
                                "domain[r.example] = Remote, use_helo=True"]
    out = smtpsvc(capsys, "show", "-n", "-v", "--config", str(path))[1]
    assert "# MaxRecipients: Recipients accepted per message" in out
    assert "# FullyQualifiedDomainName: " in out


def test_domain_commands(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    save_config(path, Config(server=ServerConfig(fqdn="host.example")))
    conf = ["--config", str(path)]
    assert smtpsvc(capsys, "domain", "add", "alias.example", "--type", "alias", *conf)[0] == 0
    assert smtpsvc(capsys, "domain", "add", "*.partner.example", "--type", "remote", "--relay",
                   "--smart-host", "[192.0.2.1]", "--use-helo", *conf)[0] == 0
    code, out, _ = smtpsvc(capsys, "domain", "list", *conf)
    assert code == 0
    assert out.splitlines() == [
        "Domain Name        Type",
        "host.example       Local (Default)",  # the implicit default, written into the file
        "alias.example      Local (Alias)",
        "*.partner.example  Remote, relay_allowed=True, route=smarthost, smart_host=[192.0.2.1], use_helo=True",
    ]
    assert smtpsvc(capsys, "domain", "set-default", "alias.example", *conf)[0] == 0
    config = load_config(path)
    assert [(d.name, d.type) for d in config.domains] == [
        ("host.example", "alias"), ("alias.example", "default"), ("*.partner.example", "remote")]
    assert smtpsvc(capsys, "domain", "delete", "host.example", *conf)[0] == 0
    assert [d.name for d in load_config(path).domains] == ["alias.example", "*.partner.example"]


@pytest.mark.parametrize(("argv", "message"), [
    (["delete", "host.example"], "The default domain cannot be deleted"),
    (["delete", "gone.example"], "There is no domain named 'gone.example'"),
    (["add", "HOST.example", "--type", "alias"], "A domain named 'HOST.example' already exists"),
    (["add", "*.x.example", "--type", "alias"], "is not a valid domain name"),
    (["add", "x.example", "--type", "alias", "--relay"], "Only remote domains use relay_allowed"),
    (["set-default", "r.example"], "Only a local alias domain can become the default domain"),
])
def test_refused_domain_commands(capsys: pytest.CaptureFixture[str], path: Path, argv: list[str],
                                 message: str) -> None:
    save_config(path, Config(domains=(DomainConfig("host.example", "default"),
                                      DomainConfig("r.example", "remote"))))
    before = path.read_bytes()
    code, out, err = smtpsvc(capsys, "domain", *argv, "--config", str(path))
    assert (code, out) == (2, "")
    assert err == f"smtpsvc config: {message}\n" or (err.startswith("smtpsvc config: ") and message in err)
    assert path.read_bytes() == before


def test_broken_file_names_the_line_and_exits_1(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    path.parent.mkdir()
    path.write_text("[server]\nmax_recipients = 5\nlisten = [127.0.0.1:25]\n")
    code, out, err = smtpsvc(capsys, "show", "--config", str(path))
    assert (code, out) == (1, "")
    assert str(path) in err and "not valid TOML" in err and "line 3" in err
    path.write_text("[server]\nmax_recipients = 0\n")
    code, _, err = smtpsvc(capsys, "get", "fqdn", "--config", str(path))
    assert code == 1
    assert f"{path}: server.max_recipients: 0 is not from 1 to 100000" in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_unwritable_file_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path("/proc/smtpsvc-test.toml")  # not there (defaults), and not even root can create it
    code, out, err = smtpsvc(capsys, "set", "max_recipients", "5", "--config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"smtpsvc config: cannot write {path}: ")


def test_full_disk_exits_1_and_keeps_the_file(capsys: pytest.CaptureFixture[str], path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    save_config(path, Config())
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)  # a full disk cannot be made here without root and loop devices
    code, _, err = smtpsvc(capsys, "set", "max_recipients", "5", "--config", str(path))
    monkeypatch.undo()
    assert (code, err) == (1, f"smtpsvc config: cannot write {path}: No space left on device\n")
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["smtpsvc.toml"]


def test_config_defaults_to_the_user_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert smtpsvc(capsys, "set", "max_hop_count", "20")[0] == 0
    assert load_config(tmp_path / "smtpsvc" / "smtpsvc.toml").server.max_hop_count == 20


def test_missing_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        smtpsvc(capsys)
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        smtpsvc(capsys, "domain", "add", "x.example")  # --type is required


def test_a_remote_domains_password_is_never_shown(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    partner = DomainConfig("partner.example", "remote", outbound_auth="basic", outbound_user="partner",
                           outbound_password="s3cret")
    save_config(path, Config(server=ServerConfig(fqdn="host.example"), domains=(partner,)))
    for argv in (["show"], ["domain", "list"]):
        code, out, _ = smtpsvc(capsys, *argv, "--config", str(path))
        assert code == 0 and "outbound_user=partner" in out and "outbound_password=********" in out, argv
        assert "s3cret" not in out
    assert load_config(path).domains == (partner,)


def test_masked_config_and_replication_keep_a_remote_domains_password_local() -> None:
    from engine.admin.control_ops import masked_config, replicable

    partner = DomainConfig("partner.example", "remote", outbound_auth="basic", outbound_user="partner",
                           outbound_password="s3cret")
    data = masked_config(Config(server=ServerConfig(fqdn="host.example"), domains=(partner,)))
    assert data["domain"][0]["outbound_password"] == "********"
    assert "outbound_password" not in replicable(data)["domain"][0]


def test_replication_never_carries_a_path_an_address_a_certificate_or_a_key() -> None:
    """A guard for new options: one whose name says it is a file, a folder, a listening address, a certificate or
    a key must be marked local (or secret), and then never travels with replication."""
    from engine.admin.control_ops import masked_config, replicable
    from engine.conf.options import OPTIONS, OPTIONS_BY_NAME

    machine = ("_dir", "_file", "_certificate", "_key", "listen", "_path", "fqdn")
    named = [o.name for o in OPTIONS if o.name.endswith(machine)]
    assert len(named) >= 14 and [n for n in named if not OPTIONS_BY_NAME[n].local] == []
    alias = DomainConfig("alias.example", "alias", drop_dir="/srv/elsewhere/Drop")
    data = replicable(masked_config(Config(server=ServerConfig(fqdn="host.example", log_dir="/var/log/x"),
                                           domains=(alias,))))
    assert not {o.name for o in OPTIONS if o.local or o.secret} & set(data["server"])
    assert "/srv/elsewhere" not in str(data) and "host.example" not in str(data) and "/var/log/x" not in str(data)


async def test_the_domain_list_op_never_carries_a_password(tmp_path: Path) -> None:
    from engine.admin.control_ops import OPS
    from engine.server import VirtualServer

    partner = DomainConfig("partner.example", "remote", outbound_auth="basic", outbound_user="partner",
                           outbound_password="s3cret")
    server = VirtualServer(Config(server=ServerConfig(fqdn="host.example"), domains=(partner,),
                                  mailroot=str(tmp_path / "Mailroot")))
    listed = await OPS["domain.list"].handler(server, {})
    [remote] = [d for d in listed if d["name"] == "partner.example"]
    assert remote["outbound_user"] == "partner" and remote["outbound_password"] == "********"


def test_domain_set_outbound_security_with_the_password_from_stdin(
        capsys: pytest.CaptureFixture[str], path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    assert smtpsvc(capsys, "domain", "add", "partner.example", "--type", "remote", "--config", str(path))[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    code, out, err = smtpsvc(capsys, "domain", "set", "partner.example", "--tls-required", "yes", "--outbound-auth",
                             "basic", "--outbound-user", "partner", "--outbound-password-stdin", "--config", str(path))
    assert (code, out, err) == (0, "", "")
    [partner] = [d for d in load_config(path).domains if d.name == "partner.example"]
    assert (partner.tls_required, partner.outbound_auth, partner.outbound_user, partner.outbound_password) == (
        True, "basic", "partner", "s3cret")
    code, _, err = smtpsvc(capsys, "domain", "set", "partner.example", "--outbound-auth", "anonymous",
                           "--config", str(path))
    [partner] = [d for d in load_config(path).domains if d.name == "partner.example"]
    assert code == 0 and (partner.outbound_auth, partner.outbound_user, partner.outbound_password) == (
        "anonymous", "", "")
    code, _, err = smtpsvc(capsys, "domain", "set", "partner.example", "--outbound-auth", "basic",
                           "--config", str(path))
    assert code == 2 and "Basic authentication needs a user name" in err
