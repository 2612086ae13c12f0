"""The Mailroot's places and writes: one path rule (relative = inside the Mailroot, ~ expanded), Badmail and
Drops on another filesystem (real tmpfs mounts), a Drop per local domain, and changes applied live.

The hostile pass's findings 3 (Badmail on another filesystem), 4 (Drop on another filesystem: mixed recipients,
success notices, a final lone dot) and 5 (relative paths taken from the working directory) are reproduced here.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from engine_support import LOCAL_DOMAIN, Running, make_config, start_server

from engine.conf.config import Config, DomainConfig
from engine.conf.config_file import validate_config
from engine.errors import ConfigError, MailrootError, NotFoundError
from engine.server import VirtualServer
from engine.store.mailroot import Mailroot, durable_file, write_durable

BODY = b"From: a@example.test\r\nSubject: hello\r\n\r\nbody\r\n"


def _mount_tmpfs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs (the tests need root): {done.stderr.strip()}")


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than the Mailroot (a real tmpfs mount, removed afterwards)."""
    mount = tmp_path / "other"
    _mount_tmpfs(mount)
    try:
        assert os.stat(mount).st_dev != os.stat(tmp_path).st_dev
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _send(port: int, rcpts: list[str], body: bytes = BODY, sender: str = "a@example.test",
          rcpt_options: tuple[str, ...] = ()) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.sendmail(sender, rcpts, body, rcpt_options=list(rcpt_options))


def _with_domains(config: Config, *domains: DomainConfig) -> Config:
    return replace(config, domains=domains)


async def _started(config: Config) -> Running:
    validate_config(config)
    return await start_server(config)


def _emls(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.eml"))


# --- the path rule ------------------------------------------------------------------------------------

def test_the_one_rule_relative_inside_the_mailroot_and_tilde_expanded(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = make_config(tmp_path, badmail_dir="MyBad")
    config = _with_domains(config, DomainConfig(LOCAL_DOMAIN, "default", drop_dir="MyDrop"),
                           DomainConfig("alias.test", "alias", drop_dir="~/aliasdrop"),
                           DomainConfig("other.test", "alias"))
    mailroot = Mailroot.from_config(config)
    root = tmp_path / "Mailroot"
    assert mailroot.root == root and mailroot.badmail == root / "MyBad"
    assert mailroot.drop == root / "MyDrop" == mailroot.drop_for("OTHER.test") == mailroot.drop_for(LOCAL_DOMAIN)
    assert mailroot.drop_for("alias.test") == tmp_path / "home" / "aliasdrop"
    assert [names for _, names in mailroot.drop_folders()] == [(LOCAL_DOMAIN, "other.test"), ("alias.test",)]
    plain = Mailroot.from_config(replace(make_config(tmp_path), mailroot="~/MR"))
    assert (plain.badmail, plain.drop) == (tmp_path / "home/MR/Badmail", tmp_path / "home/MR/Drop")


async def test_relative_badmail_and_drop_are_inside_the_mailroot_not_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 5: `smtpsvc serve` started elsewhere put MyBad and MyDrop into its working directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    config = make_config(tmp_path, badmail_dir="MyBad")
    config = _with_domains(config, DomainConfig(LOCAL_DOMAIN, "default", drop_dir="MyDrop"))
    running = await _started(config)
    try:
        await asyncio.to_thread(_send, running.port, [f"b@{LOCAL_DOMAIN}"])
        drop = tmp_path / "Mailroot" / "MyDrop"
        await running.wait_for(lambda: len(_emls(drop)) == 1)
        (running.mailroot / "Pickup" / "junk.txt").write_bytes(b"not a message\r\n")
        badmail = tmp_path / "Mailroot" / "MyBad"
        await running.wait_for(lambda: len(list(badmail.glob("*.BDR"))) == 1)
        assert list(cwd.iterdir()) == []
        [item] = await running.server.list_drop()
        assert item.recipients == (f"b@{LOCAL_DOMAIN}",)
    finally:
        await running.server.stop()


async def test_a_relative_path_naming_pickup_from_the_working_directory_cannot_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 5: from the Mailroot's parent, "MR/Pickup" passed the check but the engine wrote into Pickup, and
    one junk file became thousands. Now the value means Mailroot/MR/Pickup, a directory like any other."""
    monkeypatch.chdir(tmp_path)
    config = replace(make_config(tmp_path, badmail_dir="Mailroot/Pickup"))
    running = await _started(config)
    try:
        assert running.server.mailroot.badmail == tmp_path / "Mailroot" / "Mailroot" / "Pickup"
        (running.mailroot / "Pickup" / "junk.txt").write_bytes(b"not a message\r\n")
        badmail = running.server.mailroot.badmail
        await running.wait_for(lambda: len(list(badmail.glob("*.BDR"))) == 1)
        await running.wait_for(lambda: not list((running.mailroot / "Pickup").iterdir()))
        assert len(list(badmail.glob("*.BAD"))) == 1
    finally:
        await running.server.stop()


async def test_the_engine_refuses_a_badmail_or_drop_that_is_pickup(tmp_path: Path) -> None:
    """Defence in depth: even a configuration that skipped validation (or a symbolic link made afterwards)
    cannot start with Badmail or a Drop being Pickup."""
    root = tmp_path / "Mailroot"
    (root / "Pickup").mkdir(parents=True)
    (tmp_path / "link").symlink_to(root / "Pickup")
    for config in (make_config(tmp_path, badmail_dir=str(tmp_path / "link")),
                   _with_domains(make_config(tmp_path), DomainConfig(LOCAL_DOMAIN, "default"),
                                 DomainConfig("alias.test", "alias", drop_dir=str(tmp_path / "link")))):
        with pytest.raises(ConfigError):
            validate_config(config)
        server = VirtualServer(config)
        with pytest.raises(MailrootError, match="Pickup"):
            await server.start()
        assert server.state == "stopped"


# --- durable writes -----------------------------------------------------------------------------------

def test_durable_write_leaves_the_old_file_or_the_new_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.eml"
    write_durable(target, b"one")
    with pytest.raises(RuntimeError), durable_file(target) as handle:
        handle.write(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"one" and os.listdir(tmp_path) == ["f.eml"]
    write_durable(target, b"two")
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["f.eml"]
    assert (target.stat().st_mode & 0o777) == 0o600


def test_temporaries_left_by_a_crash_are_swept(tmp_path: Path) -> None:
    mailroot = Mailroot(tmp_path)
    mailroot.create()
    left = mailroot.drop / ".X.eml.0123456789ab.tmp"
    left.write_bytes(b"x")
    kept = mailroot.drop / "Y.eml"
    kept.write_bytes(b"y")
    assert mailroot.sweep_temps() == [left]
    assert _emls(mailroot.drop) == [kept] and not left.exists()


# --- Badmail and Drop on another filesystem -----------------------------------------------------------

async def test_badmail_on_another_filesystem_from_pickup_and_from_delivery(tmp_path: Path, other_fs: Path) -> None:
    """Finding 3: every Badmail write failed with EXDEV; a bad Pickup file stayed in Pickup for ever, and a failed
    message from <> stayed "active"."""
    badmail = other_fs / "Badmail"
    running = await _started(make_config(tmp_path, badmail_dir=str(badmail)))
    try:
        pickup = running.mailroot / "Pickup"
        (pickup / "bad1.eml").write_bytes(b"not a message\r\n")
        await running.wait_for(lambda: len(list(badmail.glob("*.BDR"))) == 1)
        await running.wait_for(lambda: not list(pickup.iterdir()))
        [item] = await running.server.list_badmail()
        assert await running.server.read_badmail(item.name) == b"not a message\r\n"
        # A message from <> that fails: its NDR would go to no one, so it is badmailed.
        await asyncio.to_thread(_send, running.port, ["u@relay.test"], BODY, "")
        await running.wait_for(lambda: len(running.server._store().entries) == 1)
        [entry] = list(running.server._store().entries.values())
        await running.wait_for(lambda: not entry.active and entry.record.attempts > 0)  # the smart host refused
        queue_id = entry.queue_id
        await running.server.bounce_now(queue_id)
        await running.wait_for(lambda: len(list(badmail.glob("*.BDR"))) == 2)
        assert not running.server._store().entries
        assert not [p for p in badmail.iterdir() if p.name.startswith(".")]
    finally:
        await running.server.stop()


@pytest.mark.parametrize("case", ["mixed local and remote", "success notice", "final lone dot"])
async def test_drop_on_another_filesystem_takes_every_kind_of_local_mail(tmp_path: Path, other_fs: Path,
                                                                         case: str) -> None:
    """Finding 4: these three went through a copy written in SortTemp and renamed into Drop: EXDEV, and the
    message stayed queued with 451 4.3.0 for days."""
    drop = other_fs / "Drop"
    config = _with_domains(make_config(tmp_path), DomainConfig(LOCAL_DOMAIN, "default", drop_dir=str(drop)),
                           DomainConfig("relay.test", "remote", relay_allowed=True))
    running = await _started(config)
    local = f"b@{LOCAL_DOMAIN}"
    try:
        if case == "mixed local and remote":
            await asyncio.to_thread(_send, running.port, [local, "u@relay.test"])
        elif case == "success notice":
            await asyncio.to_thread(_send, running.port, [local], BODY, "s@relay.test", ("NOTIFY=SUCCESS",))
        else:
            await asyncio.to_thread(_send, running.port, [local], BODY + b".\r\n")
        await running.wait_for(lambda: any(local in p.read_text("latin-1") for p in _emls(drop)))
        [item] = [i for i in await running.server.list_drop() if local in i.recipients]
        message = await running.server.read_drop(item.ref)
        # A Drop file is Pickup-ready: a final lone "." line is kept dot-stuffed, with "." ending the file.
        assert message.endswith(BODY + b"..\r\n.\r\n" if case == "final lone dot" else BODY)
        errors = [e for e in running.events if type(e).__name__ == "ErrorEvent"]
        assert errors == []
        assert not [p for p in drop.iterdir() if p.name.startswith(".")]
        if case == "final lone dot":
            await running.wait_for(lambda: not running.server._store().entries)
    finally:
        await running.server.stop()


# --- a Drop per local domain --------------------------------------------------------------------------

async def test_each_local_domain_delivers_into_its_own_drop(tmp_path: Path, other_fs: Path) -> None:
    alias_drop = other_fs / "AliasDrop"
    config = _with_domains(make_config(tmp_path), DomainConfig(LOCAL_DOMAIN, "default"),
                           DomainConfig("alias.test", "alias", drop_dir=str(alias_drop)),
                           DomainConfig("shared.test", "alias"))
    running = await _started(config)
    default_drop = running.mailroot / "Drop"
    try:
        await asyncio.to_thread(_send, running.port, ["x@alias.test"])
        await asyncio.to_thread(_send, running.port, ["y@shared.test"])
        await asyncio.to_thread(_send, running.port, ["z@alias.test", f"w@{LOCAL_DOMAIN}"])  # one copy each
        await running.wait_for(lambda: len(_emls(alias_drop)) == 2 and len(_emls(default_drop)) == 2)
        await running.wait_for(lambda: not running.server._store().entries)
        by_domain = {(i.domain, i.recipients) for i in await running.server.list_drop()}
        assert by_domain == {("alias.test", ("x@alias.test",)), ("alias.test", ("z@alias.test",)),
                             (LOCAL_DOMAIN, ("y@shared.test",)), (LOCAL_DOMAIN, (f"w@{LOCAL_DOMAIN}",))}
        items = await running.server.list_drop()
        [x] = [i for i in items if i.recipients == ("x@alias.test",)]
        assert x.ref == f"alias.test/{x.name}"
        assert (await running.server.read_drop(x.ref)).endswith(BODY)
        assert [i.ref for i in await running.server.drop_items([x.ref, "alias.test/gone.eml"])] == [x.ref]
        with pytest.raises(NotFoundError):
            await running.server.read_drop(f"relay.test/{x.name}")
        with pytest.raises(NotFoundError):
            await running.server.read_drop(x.name)  # a bare name is the default domain's Drop
        await running.server.delete_drop(x.ref)
        assert len(_emls(alias_drop)) == 1
        dropped = [e for e in running.events if type(e).__name__ == "MessageDropped"]
        assert {e.ref.partition("/")[0] for e in dropped} == {"alias.test", LOCAL_DOMAIN}  # type: ignore[attr-defined]
    finally:
        await running.server.stop()


# --- changes applied live -----------------------------------------------------------------------------

async def test_badmail_and_drop_changes_take_effect_at_once(tmp_path: Path, other_fs: Path) -> None:
    running = await _started(make_config(tmp_path))
    try:
        config = running.server.config()
        changed = replace(config, server=replace(config.server, badmail_dir=str(other_fs / "Bad2")),
                          domains=tuple(replace(d, drop_dir="Drop2") if d.type == "default" else d
                                        for d in config.domains))
        await running.server.apply_config(changed)
        assert (other_fs / "Bad2").is_dir() and (running.mailroot / "Drop2").is_dir()
        await asyncio.to_thread(_send, running.port, [f"b@{LOCAL_DOMAIN}"])
        await running.wait_for(lambda: len(_emls(running.mailroot / "Drop2")) == 1)
        [item] = await running.server.list_drop()
        assert (await running.server.read_drop(item.ref)).endswith(BODY)
        (running.mailroot / "Pickup" / "junk.txt").write_bytes(b"junk\r\n")
        await running.wait_for(lambda: len(list((other_fs / "Bad2").glob("*.BDR"))) == 1)
        assert len(await running.server.list_badmail()) == 1
        assert _emls(running.mailroot / "Drop") == []
    finally:
        await running.server.stop()


async def test_a_badmail_or_drop_that_cannot_be_made_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    running = await _started(make_config(tmp_path))
    try:
        (tmp_path / "plain-file").write_bytes(b"not a folder")
        before = running.server.config()
        for changed in (replace(before, server=replace(before.server, badmail_dir=str(tmp_path / "plain-file/B"))),
                        _with_domains(before, DomainConfig(LOCAL_DOMAIN, "default"),
                                      DomainConfig("alias.test", "alias", drop_dir=str(tmp_path / "plain-file/D")))):
            with pytest.raises(MailrootError, match="plain-file"):
                await running.server.apply_config(changed)
            assert running.server.config() == before
            assert running.server.mailroot.badmail == running.mailroot / "Badmail"
            assert running.server.mailroot.drop_for("alias.test") == running.mailroot / "Drop"
    finally:
        await running.server.stop()

