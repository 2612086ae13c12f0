"""The newest entries of the protocol log file written now, read back as field → value (the window's Protocol Log)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from engine.log.formats import LogFormat, LogLineError, parse_iis, parse_ncsa

TAIL_BYTES = 1 << 20  # read from the end of the file at most: a day's log can be large, the view shows its end
HEAD_BYTES = 64 * 1024  # where a W3C file's first #Fields directive is looked for when the tail has none
FIELDS = "#Fields: "


@dataclass(frozen=True)
class LogTail:
    """What the Protocol Log node shows: the file, whether logging is on, the newest entries (oldest first) and
    how many lines could not be read."""

    path: str
    enabled: bool
    fmt: LogFormat
    entries: tuple[dict[str, str], ...]
    unreadable: int = 0


def parse_lines(fmt: LogFormat, lines: list[str], fields: list[str] | None = None
                ) -> tuple[list[dict[str, str]], int]:
    """The entries of ``lines`` and the count of lines that are none (a W3C file follows its #Fields directives,
    starting with ``fields``)."""
    entries: list[dict[str, str]] = []
    unreadable = 0
    for line in lines:
        if not line:
            continue
        if fmt == "w3c":
            if line.startswith(FIELDS):
                fields = line[len(FIELDS):].split(" ")
            elif line.startswith("#"):
                continue
            elif fields is not None and len(values := line.split(" ")) == len(fields):
                entries.append(dict(zip(fields, values, strict=True)))
            else:
                unreadable += 1
            continue
        try:
            entries.append(parse_ncsa(line) if fmt == "ncsa" else parse_iis(line))
        except LogLineError:
            unreadable += 1
    return entries, unreadable


def read_tail(path: Path, fmt: LogFormat, limit: int) -> tuple[list[dict[str, str]], int]:
    """The newest ``limit`` entries of ``path`` (none when it does not exist yet) and the unreadable lines' count."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return [], 0
    with file:
        size = file.seek(0, 2)
        start = max(0, size - TAIL_BYTES)
        file.seek(start)
        data = file.read()
        head = b""
        if start > 0 and fmt == "w3c":
            file.seek(0)
            head = file.read(min(HEAD_BYTES, start))
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    lines.pop()  # after the last newline: empty, or a line still being written
    if start > 0 and lines:
        lines.pop(0)  # cut by where the read began
    # the lines before the tail's first #Fields (if any) follow the directive of the file's start
    directives = [line for line in head.decode("utf-8", "replace").split("\n") if line.startswith(FIELDS)]
    fields = directives[-1].rstrip("\r")[len(FIELDS):].split(" ") if directives else None
    entries, unreadable = parse_lines(fmt, [line.rstrip("\r") for line in lines], fields)
    return list(deque(entries, maxlen=max(limit, 0))), unreadable


@dataclass(frozen=True)
class LogLines:
    """The last lines of the file written now as they are in it (`smtpsvc log tail`, also over --connect);
    ``offset`` is where the next read goes on: the end of the last whole line answered."""

    path: str
    enabled: bool
    exists: bool
    lines: tuple[str, ...]
    offset: int


def read_lines(path: Path, count: int, offset: int | None = None) -> tuple[list[str], int, bool]:
    """The last ``count`` whole lines of ``path`` (within its last TAIL_BYTES) or, from ``offset``, the whole
    lines written since (at most TAIL_BYTES of them: call again from the offset answered); then the offset after
    them and whether the file exists. An offset past the end means the file was started again: from its start."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return [], 0, False
    with file:
        size = file.seek(0, 2)
        start = max(0, size - TAIL_BYTES) if offset is None else (offset if offset <= size else 0)
        file.seek(start)
        data = file.read(TAIL_BYTES)
    end = data.rfind(b"\n") + 1
    if end == 0 and len(data) == TAIL_BYTES:  # one line longer than a read: skipped, or a follower would stall
        return [], start + len(data), True
    lines = data[:end].decode("utf-8", "replace").split("\n")[:-1]
    if offset is None:
        if start > 0 and lines:
            lines.pop(0)  # cut by where the read began
        lines = lines[-count:] if count > 0 else []
    return lines, start + end, True
