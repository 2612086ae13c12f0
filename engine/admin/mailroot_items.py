"""Drop, Badmail and Pickup as the manager sees them: listing, reading, resending and submitting files.

ui/ has no file formats: everything that reads or writes a Mailroot file for the window happens here.
Files put into Pickup are written under a hidden name and renamed, so Pickup never sees half a file.
"""

from __future__ import annotations

import email
import email.policy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.bounce.badmail import BadmailItem, read_badmail
from engine.errors import NotFoundError
from engine.pickup.pickup import PickupError, parse_pickup
from engine.store.envelope import EnvelopeError, split_envelope
from engine.store.mailroot import Mailroot, join_drop_ref, new_id, write_durable

HEADER_LIMIT = 64 * 1024  # enough of a file to read its envelope and headers for a listing


@dataclass(frozen=True)
class DropItem:
    name: str  # file name in the Drop directory
    sender: str
    recipients: tuple[str, ...]
    subject: str
    size: int
    at: float
    domain: str = ""  # the local domain whose Drop holds it (the first, when domains share one Drop)

    @property
    def ref(self) -> str:
        """How the window and ``read_drop``/``delete_drop`` name it: ``domain/file`` (``file``: the default Drop)."""
        return join_drop_ref(self.domain, self.name)


@dataclass(frozen=True)
class PickupPreview:
    """What a file would become in Pickup: its envelope, or why it would go to Badmail."""

    sender: str
    recipients: tuple[str, ...]
    problem: str  # empty when the file is a message Pickup will queue
    size: int


@dataclass(frozen=True)
class PickupFile:
    """A file sitting in the Pickup directory now (waiting: the server is stopped, or it was just put there)."""

    name: str
    size: int
    at: float


def list_pickup(folder: Path) -> list[PickupFile]:
    """The Pickup directory's files, oldest first (names starting with "." are files being written)."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # picked up meanwhile
                    continue
                found.append(PickupFile(entry.name, stat.st_size, stat.st_mtime))
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda f: (f.at, f.name))


def _subject(data: bytes, offset: int) -> str:
    end = data.find(b"\r\n\r\n", offset)
    head = data[offset : end if end >= 0 else len(data)]
    message = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.default)
    try:
        return str(message.get("Subject", "") or "")
    except Exception:  # a broken encoded word: show it raw rather than nothing
        raw = message.get_all("Subject", failobj=[""])
        return str(raw[0]) if raw else ""


def read_drop_item(path: Path, domain: str = "") -> DropItem:
    stat = path.stat()
    with path.open("rb") as handle:
        head = handle.read(HEADER_LIMIT)
    try:
        sender, recipients, offset = split_envelope(head)
    except EnvelopeError:
        sender, recipients, offset = "", (), 0
    return DropItem(path.name, sender, recipients, _subject(head, offset), stat.st_size, stat.st_mtime, domain)


def list_drop(folder: Path, domain: str = "") -> list[DropItem]:
    items = []
    for path in sorted(folder.glob("*.eml")):
        try:
            items.append(read_drop_item(path, domain))
        except OSError:
            continue  # removed while we listed it
    return items


def drop_items(folder: Path, names: Sequence[str], domain: str = "") -> list[DropItem]:
    """The items of ``names`` still in ``folder`` (those gone meanwhile are left out)."""
    found = []
    for name in names:
        try:
            found.append(read_drop_item(_inside(folder, name), domain))
        except (OSError, NotFoundError):
            continue
    return found


def _inside(folder: Path, name: str) -> Path:
    """A file named by the window, refused unless it is directly inside ``folder`` (no path tricks)."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise NotFoundError(f"no such file: {name!r}")
    path = folder / name
    if not path.is_file():
        raise NotFoundError(f"no such file: {name}")
    return path


def read_drop(folder: Path, name: str) -> bytes:
    """The message of a Drop file without its envelope lines."""
    data = _inside(folder, name).read_bytes()
    try:
        return data[split_envelope(data)[2] :]
    except EnvelopeError:
        return data


def delete_drop(folder: Path, name: str) -> None:
    _inside(folder, name).unlink()


def badmail_item(folder: Path, name: str) -> BadmailItem:
    _inside(folder, f"{name}.BAD")
    return read_badmail(folder, name)


def badmail_items(folder: Path, names: Sequence[str]) -> list[BadmailItem]:
    """These Badmail items; those gone (or not Badmail names) are left out."""
    found = []
    for name in names:
        try:
            found.append(badmail_item(folder, name))
        except (NotFoundError, OSError):
            continue
    return found


def queue_subjects(folder: Path, queue_ids: Sequence[str]) -> dict[str, str]:
    """The Subject of these queued messages (those no longer queued are left out): a Queue file's head is
    envelope lines then the message, as in a Drop file."""
    subjects = {}
    for queue_id in queue_ids:
        if not queue_id or "/" in queue_id or "\\" in queue_id or queue_id.startswith("."):
            continue
        try:
            subjects[queue_id] = read_drop_item(folder / f"{queue_id}.eml").subject
        except OSError:
            continue  # delivered or deleted meanwhile
    return subjects


def read_badmail_message(folder: Path, name: str) -> bytes:
    return _inside(folder, f"{name}.BAD").read_bytes()


def delete_badmail(folder: Path, name: str) -> None:
    _inside(folder, f"{name}.BAD")
    for suffix in (".BAD", ".BDR", ".BDP"):
        (folder / f"{name}{suffix}").unlink(missing_ok=True)


def preview_pickup(data: bytes, default_domain: str) -> PickupPreview:
    try:
        message = parse_pickup(data, default_domain)
    except PickupError as error:
        return PickupPreview("", (), str(error), len(data))
    return PickupPreview(message.sender, message.recipients, "", len(data))


def put_in_pickup(mailroot: Mailroot, data: bytes, name_hint: str = "") -> str:
    """Write ``data`` into Pickup atomically (a hidden temporary name, which Pickup skips, then a rename);
    returns the file name used there."""
    stem = "".join(c for c in Path(name_hint).stem if c.isalnum() or c in "-_")[:40] or "message"
    name = f"{stem}-{new_id()}.eml"
    write_durable(mailroot.pickup / name, data)
    return name


def resend_drop(mailroot: Mailroot, folder: Path, name: str) -> str:
    """Resend a Drop file: a copy, envelope lines (x-sender/x-receiver) included, goes into Pickup, so it is
    delivered again to the same recipients; the Drop file stays (it was delivered)."""
    return put_in_pickup(mailroot, _inside(folder, name).read_bytes(), name)


def resend_badmail(mailroot: Mailroot, name: str) -> str:
    """Resend: the .BAD goes back into Pickup (as IIS's "copy it to Pickup"), then the item is removed."""
    folder = mailroot.badmail
    data = read_badmail_message(folder, name)
    placed = put_in_pickup(mailroot, data, name)
    delete_badmail(folder, name)
    return placed
