"""Badmail: what could be neither delivered nor returned, as IIS's .BAD / .BDR / .BDP triple.

.BAD holds the message bytes exactly as received (copy it into Pickup to re-send), .BDR the reason
in plain text, .BDP the envelope and properties as ``key: value`` lines. The .BDR is written last:
a .BAD without .BDR after a crash is still listed, with an unknown reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.store.mailroot import Mailroot, move_durable, new_id


@dataclass(frozen=True)
class BadmailItem:
    name: str
    reason: str
    sender: str
    recipients: tuple[str, ...]
    source: str
    at: float
    properties: tuple[tuple[str, str], ...] = ()  # the .BDP's other lines: ("pickup-file", "report.txt"), …

    def property(self, key: str) -> str:
        return next((value for name, value in self.properties if name == key), "")


def _bdp_text(sender: str, recipients: Sequence[str], source: str, extra: dict[str, str]) -> str:
    lines = [f"x-sender: {sender}"]
    lines += [f"x-receiver: {rcpt}" for rcpt in recipients]
    lines.append(f"x-source: {source}")
    lines.append(f"x-badmailed-at: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    lines += [f"x-{key}: {value}" for key, value in extra.items()]
    return "\r\n".join(lines) + "\r\n"


def write_badmail(
    mailroot: Mailroot,
    content: bytes | Path,
    reason: str,
    *,
    sender: str = "",
    recipients: Sequence[str] = (),
    source: str = "",
    extra: dict[str, str] | None = None,
) -> str:
    """Store one Badmail item durably; returns its base name (no extension).

    ``content`` is the message's bytes, or a file that becomes the .BAD byte for byte (moved in: renamed, or
    copied across filesystems). The .BAD is complete before the .BDP and the .BDR appear, so a listed item
    never shows a partial message; an OSError from moving the file leaves it where it was."""
    name = new_id()
    folder = mailroot.badmail
    # Everything encoded before anything is written: a text that cannot be encoded leaves no orphan .BAD.
    bdp = _bdp_text(sender, recipients, source, extra or {}).encode("utf-8", "backslashreplace")
    bdr = (reason.rstrip("\n") + "\n").encode("utf-8", "backslashreplace")
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Path):
        move_durable(content, folder / f"{name}.BAD")
    else:
        mailroot.write_atomic(folder / f"{name}.BAD", content)
    mailroot.write_atomic(folder / f"{name}.BDP", bdp)
    mailroot.write_atomic(folder / f"{name}.BDR", bdr)
    return name


def read_badmail(folder: Path, name: str) -> BadmailItem:
    """Read one item's reason and envelope back (missing parts read as empty)."""
    bdr = folder / f"{name}.BDR"
    bdp = folder / f"{name}.BDP"
    reason = bdr.read_text("utf-8", errors="replace").strip() if bdr.exists() else "(reason unknown)"
    sender, recipients, source = "", [], ""
    properties: list[tuple[str, str]] = []
    if bdp.exists():
        for line in bdp.read_text("utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "x-sender":
                sender = value
            elif key == "x-receiver":
                recipients.append(value)
            elif key == "x-source":
                source = value
            elif key.startswith("x-") and value:
                properties.append((key[2:], value))
    bad = folder / f"{name}.BAD"
    at = bad.stat().st_mtime if bad.exists() else 0.0
    return BadmailItem(name, reason, sender, tuple(recipients), source, at, tuple(properties))


def list_badmail(folder: Path) -> list[BadmailItem]:
    if not folder.is_dir():
        return []
    names = sorted(p.stem for p in folder.glob("*.BAD"))
    return [read_badmail(folder, name) for name in names]
