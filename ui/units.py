"""The one way the window writes durations, countdowns, moments and sizes (exact values go in tooltips)."""

from __future__ import annotations

import time


def span(seconds: float) -> str:
    """A duration as people read it: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"
    return f"{seconds // 86400} d {seconds // 3600 % 24} h"


def until(seconds: float) -> str:
    """A moment ahead: "in 14 min", "in 38 s", "in 2 h 05 min"; "now" once due."""
    return "now" if seconds <= 0 else f"in {span(seconds)}"


def moment(at: float) -> str:
    """An absolute local time, for tooltips and detail pages."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def size_text(size: int) -> str:
    """Bytes as Explorer shows them: 429 bytes, 1.5 KB, 12.3 MB (exact bytes: size_exact)."""
    if size < 1024:
        return f"{size} byte{'s' * (size != 1)}"
    if size < 1 << 20:
        return f"{size / 1024:.1f} KB"
    if size < 1 << 30:
        return f"{size / (1 << 20):.1f} MB"
    return f"{size / (1 << 30):.1f} GB"


def size_exact(size: int) -> str:
    return f"{size:,} byte{'s' * (size != 1)}"
