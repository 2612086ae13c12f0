"""Tests of the Pickup service (engine.pickup.pickup_watch) and its inotify adapter: real files, real inotify."""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.bounce.badmail import read_badmail
from engine.errors import MessageRejected, QueueWriteError
from engine.events import ErrorEvent, Event, EventBus, MessageBadmailed
from engine.pickup import inotify
from engine.pickup.pickup_watch import CLAIM_PREFIX, PickupService, recover
from engine.store.mailroot import Mailroot, new_id

DOMAIN = "example.com"


def _bypasses_permissions() -> bool:
    """Whether this process reads files regardless of their mode (root, or CAP_DAC_OVERRIDE)."""
    with tempfile.NamedTemporaryFile() as probe:
        os.chmod(probe.name, 0)
        try:
            open(probe.name, "rb").close()
        except PermissionError:
            return False
        return True


PRIVILEGED = _bypasses_permissions()

Submitted = tuple[str, tuple[str, ...], bytes, str]
Start = Callable[..., Awaitable[PickupService]]


def mail(subject: str = "test", to: str = "t@b.org") -> bytes:
    return f"From: f@a.org\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


class Submitter:
    """The queue's side of ``submit``: stores what it gets, or fails on demand, or waits at a gate."""

    def __init__(self) -> None:
        self.messages: list[Submitted] = []
        self.ids: list[str] = []  # the queue_id asked for, per message
        self.calls = 0
        self.error: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, sender: str, recipients: tuple[str, ...], content: bytes, source: str,
                       queue_id: str = "", binarymime: bool = False) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        self.messages.append((sender, recipients, content, source))
        self.ids.append(queue_id)
        return queue_id or f"Q{len(self.messages)}"

    def subjects(self) -> list[str]:
        return [
            content.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for _, _, content, _ in self.messages
        ]


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def claims(mailroot: Mailroot) -> list[str]:
    return [name for name in names(mailroot.sorttemp) if name.startswith(CLAIM_PREFIX)]


def errors(events: list[Event]) -> list[ErrorEvent]:
    return [event for event in events if isinstance(event, ErrorEvent)]


@pytest.fixture
def mailroot(tmp_path: Path) -> Mailroot:
    root = Mailroot(tmp_path / "mailroot")
    root.create()
    return root


@pytest.fixture
def submitter() -> Submitter:
    return Submitter()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def bus(events: list[Event]) -> EventBus:
    bus = EventBus()
    bus.subscribe(events.append)
    return bus


@pytest.fixture(params=["inotify", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def start(mailroot: Mailroot, submitter: Submitter, bus: EventBus) -> AsyncIterator[Start]:
    services: list[PickupService] = []

    async def start(**options: Any) -> PickupService:
        settings: dict[str, Any] = {"poll_interval": 0.1, "settle": 0.3, "retry_delay": 0.5, **options}
        service = PickupService(mailroot, submitter, bus, lambda: DOMAIN, **settings)
        await service.start()
        assert service.uses_inotify == settings.get("use_inotify", True)
        services.append(service)
        return service

    yield start
    for service in services:
        await service.stop()


# -- noticing files


async def test_slow_writer_is_taken_once_only_after_close(
    mailroot: Mailroot, submitter: Submitter, start: Start, mode: str
) -> None:
    polling = mode == "polling"
    await start(use_inotify=not polling, poll_interval=0.5 if polling else 0.1)
    # Polling can only see a pause longer than a poll; inotify needs no pause limit at all.
    gap = 0.05 if polling else 0.4
    data = mail("slow") + b"".join(b"line %d\r\n" % i for i in range(1000))
    chunks = [data[i : i + len(data) // 5 + 1] for i in range(0, len(data), len(data) // 5 + 1)]
    with open(mailroot.pickup / "slow.eml", "wb") as file:
        for chunk in chunks:
            file.write(chunk)
            file.flush()
            await asyncio.sleep(gap)
            assert submitter.messages == []
            assert names(mailroot.pickup) == ["slow.eml"]
    await eventually(lambda: len(submitter.messages) == 1)
    assert submitter.messages[0] == ("f@a.org", ("t@b.org",), data, "pickup")
    await asyncio.sleep(1.2)
    assert len(submitter.messages) == 1
    assert names(mailroot.pickup) == [] and claims(mailroot) == []


async def test_file_moved_in_and_hidden_temp_files(
    mailroot: Mailroot, submitter: Submitter, start: Start, mode: str
) -> None:
    await start(use_inotify=mode == "inotify")
    outside = mailroot.root / "outside.tmp"
    outside.write_bytes(mail("moved"))
    os.rename(outside, mailroot.pickup / "moved.eml")
    await eventually(lambda: submitter.subjects() == ["moved"])

    hidden = mailroot.pickup / ".writing.tmp"
    hidden.write_bytes(mail("renamed"))
    await asyncio.sleep(0.8)  # several polls and more than the settle time
    assert submitter.subjects() == ["moved"] and hidden.exists()
    os.rename(hidden, mailroot.pickup / "renamed.eml")
    await eventually(lambda: submitter.subjects() == ["moved", "renamed"])
    assert names(mailroot.pickup) == []


async def test_files_present_at_start(
    mailroot: Mailroot, submitter: Submitter, start: Start, mode: str
) -> None:
    (mailroot.pickup / "old.eml").write_bytes(mail("old"))
    os.utime(mailroot.pickup / "old.eml", (1e9, 1e9))
    (mailroot.pickup / "fresh.eml").write_bytes(mail("fresh"))
    service = await start(use_inotify=mode == "inotify", concurrency=1)  # one at a time: the order shows
    await eventually(lambda: sorted(submitter.subjects()) == ["fresh", "old"])
    assert submitter.subjects()[0] == "old"  # oldest first
    assert service.files_retrieved == 2
    assert names(mailroot.pickup) == []


async def test_200_files_at_once_are_each_submitted_exactly_once(
    mailroot: Mailroot, submitter: Submitter, start: Start, mode: str
) -> None:
    for index in range(50):  # some before start, the rest while running
        (mailroot.pickup / f"m{index:03}.eml").write_bytes(mail(f"m{index:03}"))
    service = await start(use_inotify=mode == "inotify")
    for index in range(50, 200):
        (mailroot.pickup / f"m{index:03}.eml").write_bytes(mail(f"m{index:03}"))
    await eventually(lambda: service.files_retrieved == 200)
    await asyncio.sleep(0.5)
    assert sorted(submitter.subjects()) == [f"m{index:03}" for index in range(200)]
    assert names(mailroot.pickup) == [] and claims(mailroot) == []


async def test_subdirectories_and_hidden_files_are_left_alone(
    mailroot: Mailroot, submitter: Submitter, events: list[Event], start: Start, mode: str
) -> None:
    (mailroot.pickup / "sub").mkdir()
    (mailroot.pickup / "sub" / "inner.eml").write_bytes(mail("inner"))
    (mailroot.pickup / ".hidden").write_bytes(mail("hidden"))
    service = await start(use_inotify=mode == "inotify")
    (mailroot.pickup / "sub2").mkdir()
    await service.scan_now()
    await asyncio.sleep(0.8)
    assert submitter.calls == 0 and events == []
    assert names(mailroot.pickup) == [".hidden", "sub", "sub2"]


async def test_watch_lost_falls_back_to_polling_and_watches_again(
    mailroot: Mailroot, submitter: Submitter, start: Start
) -> None:
    service = await start()
    os.rename(mailroot.pickup, mailroot.root / "OldPickup")
    await eventually(lambda: not service.uses_inotify)
    mailroot.pickup.mkdir()
    await eventually(lambda: service.uses_inotify)
    (mailroot.pickup / "again.eml").write_bytes(mail("again"))
    await eventually(lambda: submitter.subjects() == ["again"])


# -- failures


@pytest.mark.expect_errors
async def test_queue_write_error_keeps_the_file_and_retries(
    mailroot: Mailroot, submitter: Submitter, events: list[Event], start: Start, mode: str
) -> None:
    submitter.error = QueueWriteError("disk full")
    await start(use_inotify=mode == "inotify")
    (mailroot.pickup / "a.eml").write_bytes(mail("a"))
    await eventually(lambda: submitter.calls == 1 and names(mailroot.pickup) == ["a.eml"])
    assert claims(mailroot) == [] and submitter.messages == []
    assert len(errors(events)) == 1 and "disk full" in errors(events)[0].message
    await asyncio.sleep(0.25)
    assert submitter.calls == 1  # backs off, no hot loop
    submitter.error = None
    await eventually(lambda: submitter.subjects() == ["a"])
    assert names(mailroot.pickup) == [] and claims(mailroot) == []


@pytest.mark.expect_errors
async def test_returned_file_never_overwrites_a_new_one(
    mailroot: Mailroot, submitter: Submitter, start: Start
) -> None:
    submitter.gate = asyncio.Event()
    await start()
    (mailroot.pickup / "a.eml").write_bytes(mail("first"))
    await eventually(lambda: submitter.calls == 1)
    (mailroot.pickup / "a.eml").write_bytes(mail("second"))
    await eventually(lambda: submitter.calls == 2)
    submitter.error = QueueWriteError("queue unwritable")
    submitter.gate.set()
    await eventually(lambda: len(names(mailroot.pickup)) == 2)
    assert "a.eml" in names(mailroot.pickup)
    submitter.error = None
    await eventually(lambda: sorted(submitter.subjects()) == ["first", "second"])


async def test_file_without_from_goes_to_badmail_with_reason(
    mailroot: Mailroot, submitter: Submitter, events: list[Event], start: Start, mode: str
) -> None:
    service = await start(use_inotify=mode == "inotify")
    data = b"To: t@b.org\r\nSubject: no sender\r\n\r\nbody\r\n"
    (mailroot.pickup / "bad.eml").write_bytes(data)
    await eventually(lambda: any(isinstance(event, MessageBadmailed) for event in events))
    [event] = [event for event in events if isinstance(event, MessageBadmailed)]
    assert (event.reason, event.source) == ("no From: header", "pickup")
    assert names(mailroot.badmail) == sorted(f"{event.name}.{ext}" for ext in ("BAD", "BDP", "BDR"))
    assert (mailroot.badmail / f"{event.name}.BAD").read_bytes() == data
    item = read_badmail(mailroot.badmail, event.name)
    assert (item.reason, item.source) == ("no From: header", "pickup")
    assert b"x-pickup-file: bad.eml" in (mailroot.badmail / f"{event.name}.BDP").read_bytes()
    assert submitter.calls == 0 and service.files_retrieved == 1
    assert names(mailroot.pickup) == [] and claims(mailroot) == []


async def test_rejected_message_goes_to_badmail_with_envelope(
    mailroot: Mailroot, submitter: Submitter, events: list[Event], start: Start
) -> None:
    submitter.error = MessageRejected("hop count exceeded")
    await start()
    (mailroot.pickup / "loop.eml").write_bytes(mail("loop"))
    await eventually(lambda: any(isinstance(event, MessageBadmailed) for event in events))
    [event] = [event for event in events if isinstance(event, MessageBadmailed)]
    item = read_badmail(mailroot.badmail, event.name)
    assert (item.reason, item.sender, item.recipients) == ("hop count exceeded", "f@a.org", ("t@b.org",))
    assert (mailroot.badmail / f"{event.name}.BAD").read_bytes() == mail("loop")


async def test_a_name_starting_with_a_free_queue_id_is_submitted_under_it(
    mailroot: Mailroot, submitter: Submitter, events: list[Event], start: Start
) -> None:
    wanted, taken, refused = new_id(), new_id(), new_id()
    (mailroot.queue / f"{taken}.eml").write_bytes(mail("queued before"))  # that id is in use: never reused
    await start()
    (mailroot.pickup / f"{wanted}-named.eml").write_bytes(mail("named"))
    (mailroot.pickup / f"{taken}-taken.eml").write_bytes(mail("taken"))
    (mailroot.pickup / "plain.eml").write_bytes(mail("plain"))
    (mailroot.pickup / f"{refused}-nofrom.eml").write_bytes(b"To: t@b.org\r\n\r\nno sender\r\n")
    await eventually(lambda: len(submitter.ids) == 3 and any(isinstance(e, MessageBadmailed) for e in events))
    by_subject = dict(zip(submitter.subjects(), submitter.ids, strict=True))
    assert by_subject["named"] == wanted
    assert by_subject["taken"] not in ("", taken) and by_subject["plain"] not in ("", wanted, taken)
    [bad] = [e for e in events if isinstance(e, MessageBadmailed)]
    assert bad.queue_id == refused and bad.reason == "no From: header"


async def test_empty_file_goes_to_badmail_after_settling(
    mailroot: Mailroot, events: list[Event], start: Start, mode: str
) -> None:
    await start(use_inotify=mode == "inotify")
    (mailroot.pickup / "empty.eml").touch()
    await eventually(lambda: any(isinstance(event, MessageBadmailed) for event in events))
    [event] = [event for event in events if isinstance(event, MessageBadmailed)]
    assert event.reason == "empty file"


async def test_too_large_file_goes_to_badmail_unread(
    mailroot: Mailroot, submitter: Submitter, events: list[Event], start: Start
) -> None:
    await start(max_file_bytes=1000)
    data = mail("big") + b"x" * 2000 + b"\r\n"
    (mailroot.pickup / "big.eml").write_bytes(data)
    await eventually(lambda: any(isinstance(event, MessageBadmailed) for event in events))
    [event] = [event for event in events if isinstance(event, MessageBadmailed)]
    assert event.reason.startswith("file larger than 1000 bytes")
    assert (mailroot.badmail / f"{event.name}.BAD").read_bytes() == data
    assert submitter.calls == 0


async def test_read_only_file_is_taken_once(
    mailroot: Mailroot, submitter: Submitter, start: Start, mode: str
) -> None:
    path = mailroot.pickup / "ro.eml"
    path.write_bytes(mail("ro"))
    path.chmod(0o444)
    await start(use_inotify=mode == "inotify")
    await eventually(lambda: submitter.subjects() == ["ro"])
    await asyncio.sleep(0.8)
    assert submitter.subjects() == ["ro"]
    assert names(mailroot.pickup) == [] and claims(mailroot) == []


@contextmanager
def unclaimable(mailroot: Mailroot, path: Path) -> Iterator[None]:
    """Make ``path`` unrenamable: the immutable flag if privileged, a read-only directory otherwise."""
    if PRIVILEGED:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode:
            pytest.skip("privileged, and without a working chattr")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mailroot.pickup.chmod(0o555)
        try:
            yield
        finally:
            mailroot.pickup.chmod(0o755)


@pytest.mark.expect_errors
async def test_file_that_cannot_be_claimed_is_reported_once_and_left(
    mailroot: Mailroot, submitter: Submitter, events: list[Event], start: Start, mode: str
) -> None:
    path = mailroot.pickup / "stuck.eml"
    path.write_bytes(mail("stuck"))
    os.utime(path, (1e9, 1e9))
    with unclaimable(mailroot, path):
        service = await start(use_inotify=mode == "inotify")
        await eventually(lambda: len(errors(events)) == 1)
        for _ in range(3):
            await service.scan_now()
        await asyncio.sleep(0.6)
        assert len(errors(events)) == 1 and "stuck.eml" in errors(events)[0].message
        assert submitter.calls == 0 and names(mailroot.pickup) == ["stuck.eml"]
    await service.scan_now()  # fixed by the operator: taken now
    await eventually(lambda: submitter.subjects() == ["stuck"])


@pytest.mark.skipif(PRIVILEGED, reason="this process reads every file")
async def test_unreadable_file_goes_to_badmail(mailroot: Mailroot, events: list[Event], start: Start) -> None:
    path = mailroot.pickup / "secret.eml"
    path.write_bytes(mail("secret"))
    path.chmod(0)
    await start()
    await eventually(lambda: any(isinstance(event, MessageBadmailed) for event in events))
    [event] = [event for event in events if isinstance(event, MessageBadmailed)]
    assert event.reason.startswith("cannot read the file")
    assert (mailroot.badmail / f"{event.name}.BAD").stat().st_size == len(mail("secret"))
    assert names(mailroot.pickup) == []


# -- crash recovery and stopping


async def test_recover_returns_claims_without_overwriting(
    mailroot: Mailroot, submitter: Submitter, start: Start
) -> None:
    (mailroot.sorttemp / f"{CLAIM_PREFIX}18A2B3C4D5E6F7A8DEADBEEF-a.eml").write_bytes(mail("claimed a"))
    (mailroot.sorttemp / f"{CLAIM_PREFIX}18A2B3C4D5E6F7A8DEADBEF0-b.eml").write_bytes(mail("claimed b"))
    (mailroot.sorttemp / "w-18A2B3C4D5E6F7A8DEADBEF1").write_bytes(b"someone else's temp file")
    (mailroot.pickup / "a.eml").write_bytes(mail("new a"))
    assert recover(mailroot) == 2
    assert claims(mailroot) == [] and len(names(mailroot.sorttemp)) == 1
    assert len(names(mailroot.pickup)) == 3 and "b.eml" in names(mailroot.pickup)
    assert (mailroot.pickup / "a.eml").read_bytes() == mail("new a")
    await start()
    await eventually(lambda: sorted(submitter.subjects()) == ["claimed a", "claimed b", "new a"])
    assert recover(mailroot) == 0


async def test_stop_is_clean(mailroot: Mailroot, submitter: Submitter, bus: EventBus, mode: str) -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    service = PickupService(
        mailroot, submitter, bus, lambda: DOMAIN, use_inotify=mode == "inotify", settle=0.3
    )
    await service.start()
    (mailroot.pickup / "one.eml").write_bytes(mail("one"))
    os.utime(mailroot.pickup / "one.eml", (1e9, 1e9))
    await service.scan_now()
    await eventually(lambda: submitter.subjects() == ["one"])
    await service.stop()
    await service.stop()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert len(os.listdir("/proc/self/fd")) == fds_before
    (mailroot.pickup / "two.eml").write_bytes(mail("two"))
    await asyncio.sleep(0.3)
    assert submitter.subjects() == ["one"]


async def test_stop_returns_a_file_in_progress(
    mailroot: Mailroot, submitter: Submitter, bus: EventBus
) -> None:
    submitter.gate = asyncio.Event()  # the queue never answers
    service = PickupService(mailroot, submitter, bus, lambda: DOMAIN, stop_timeout=0.2)
    await service.start()
    (mailroot.pickup / "hang.eml").write_bytes(mail("hang"))
    await eventually(lambda: submitter.calls == 1)
    assert names(mailroot.pickup) == [] and len(claims(mailroot)) == 1
    await service.stop()
    assert names(mailroot.pickup) == ["hang.eml"] and claims(mailroot) == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- the inotify adapter


def test_decode_events() -> None:
    name = b"file.eml\0\0\0\0\0\0\0\0"
    buffer = struct.pack("iIII", 1, inotify.IN_CLOSE_WRITE, 0, len(name)) + name
    buffer += struct.pack("iIII", -1, inotify.IN_Q_OVERFLOW, 0, 0)
    assert inotify.decode_events(buffer) == [
        inotify.InotifyEvent(1, inotify.IN_CLOSE_WRITE, 0, "file.eml"),
        inotify.InotifyEvent(-1, inotify.IN_Q_OVERFLOW, 0, ""),
    ]


async def test_inotify_reports_close_write_and_moved_to(tmp_path: Path) -> None:
    assert inotify.available()
    loop = asyncio.get_running_loop()
    received: list[inotify.InotifyEvent] = []
    with inotify.Inotify() as watcher:
        watcher.add_watch(tmp_path, inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO)
        loop.add_reader(watcher.fileno(), lambda: received.extend(watcher.read_events()))
        try:
            (tmp_path / "written").write_bytes(b"x")
            (tmp_path.parent / f"{tmp_path.name}-outside").write_bytes(b"y")
            os.rename(tmp_path.parent / f"{tmp_path.name}-outside", tmp_path / "moved")
            await eventually(lambda: len(received) >= 2)
        finally:
            loop.remove_reader(watcher.fileno())
        assert watcher.read_events() == []
    assert watcher.closed
    assert [(event.name, event.mask) for event in received] == [
        ("written", inotify.IN_CLOSE_WRITE),
        ("moved", inotify.IN_MOVED_TO),
    ]
    with pytest.raises(OSError), inotify.Inotify() as other:
        other.add_watch(tmp_path / "missing", inotify.IN_CLOSE_WRITE)
