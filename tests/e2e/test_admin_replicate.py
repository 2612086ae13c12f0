"""`smtpsvc replicate`: three real engines; one's settings copied to two peers over HTTPS, minus local paths."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from admin_support import OPERATORS, AdminServe, cli

from engine.conf.options import OPTIONS


@pytest.fixture
def engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[AdminServe]]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("SMTPSVC_PASSWORD", OPERATORS["boss"][0])
    started = []
    try:
        for name in "abc":
            engine = AdminServe(tmp_path / name)
            if name == "a":
                conf = str(engine.config)
                for setting in (("max_message_size_kb", "1234"), ("relay_allowed", "192.0.2.0/24, 198.51.100.7"),
                                ("retry_intervals_min", "10, 20, 30, 40"), ("outbound_password", "s3cret")):
                    assert cli("config", "set", *setting, "--config", conf) == 0
                assert cli("config", "domain", "add", "partner.test", "--type", "remote", "--relay",
                           "--smart-host", "[192.0.2.9]", "--config", conf) == 0
                assert cli("config", "domain", "add", "alias.test", "--type", "alias", "--config", conf) == 0
            engine.start()
            started.append(engine)
        yield started
    finally:
        for engine in started:
            engine.stop()


LOCAL = {o.name for o in OPTIONS if o.local or o.secret} | {"name", "mailroot"}


def shown(config: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """`smtpsvc config show` minus the settings that are specific to each computer."""
    capsys.readouterr()
    assert cli("config", "show", "--config", str(config)) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.split(" = ")[0] not in LOCAL]


def ehlo_size(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("replica.test")
        return int(client.esmtp_features["size"])


def test_replicate_to_two_peers(engines: list[AdminServe], capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = engines
    assert shown(a.config, capsys) != shown(b.config, capsys)
    source = ("--connect", a.url, "--user", "boss")
    peers = ("--to", b.url, "--to", c.url)
    assert cli(*source, "replicate", *peers, "--dry-run", stdin="yes\nyes\nyes\n") == 0
    out = capsys.readouterr().out
    assert f"{b.url}: " in out and "max_message_size_kb: 2048 → 1234" in out
    assert "domain partner.test: added, remote" in out and "(dry run: nothing was changed)" in out
    assert "outbound_password" not in out and "tls_certificate" not in out and "admin_listen" not in out
    assert ehlo_size(b.port) == 2048 * 1024

    # From a's configuration file this time (the engines run with the command line's --domain override)
    assert cli("--user", "boss", "--config", str(a.config), "replicate", *peers) == 0  # pinned: no questions
    out = capsys.readouterr().out
    assert f"{b.url}: replicated" in out and f"{c.url}: replicated" in out
    assert ehlo_size(b.port) == ehlo_size(c.port) == 1234 * 1024
    for peer in (b, c):
        assert shown(peer.config, capsys) == shown(a.config, capsys)
    peer_text = b.config.read_text()
    assert "s3cret" not in peer_text and str(a.config.parent) not in peer_text  # no secret, no path of a's

    assert cli("--user", "boss", "--config", str(a.config), "replicate", *peers, "--dry-run") == 0
    assert capsys.readouterr().out.count(": no differences") == 2

    # Each peer has its own result: one that cannot be reached fails, the others go on.
    assert cli("config", "set", "max_recipients", "33", "--config", str(a.config)) == 0
    capsys.readouterr()
    down = "https://127.0.0.1:9"  # nothing listens there
    assert cli("--user", "boss", "--config", str(a.config), "replicate", "--to", down, "--to", b.url) == 1
    captured = capsys.readouterr()
    assert f"{down}: failed: cannot connect to {down}" in captured.err
    assert f"{b.url}: replicated (1 setting(s) changed)" in captured.out and "max_recipients: 100 → 33" in captured.out


def test_replicate_refused_for_a_viewer(engines: list[AdminServe], capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, _ = engines
    monkeypatch.setenv("SMTPSVC_PASSWORD", OPERATORS["watcher"][0])
    assert cli("--user", "watcher", "--config", str(a.config), "replicate", "--to", b.url, stdin="yes\n") == 1
    captured = capsys.readouterr()
    assert "max_message_size_kb: 2048 → 1234" in captured.out  # a viewer may look
    assert "watcher is a viewer (read-only)" in captured.err  # but not change
