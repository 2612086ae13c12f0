"""Protocol-log file names and rollover, as IIS names them (pure: the clock and the sizes are arguments).

exYYMMDD.log (W3C daily), exYYMMDDHH.log (hourly), exYYMMWW.log (weekly: WW = week of the month,
weeks starting on Sunday), exYYMM.log (monthly), extend1.log, extend2.log… (by size, and the single file
of "unlimited"); NCSA files start with "nc" (ncsa1.log by size), IIS-format files with "in" (inetsv1.log).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from engine.log.formats import LogFormat

LogPeriod = Literal["hourly", "daily", "weekly", "monthly", "size", "unlimited"]
PERIODS: tuple[LogPeriod, ...] = ("hourly", "daily", "weekly", "monthly", "size", "unlimited")
SITE_DIR = "SMTPSVC1"  # the virtual server's folder under the log directory

_DATED_PREFIX: dict[LogFormat, str] = {"w3c": "ex", "ncsa": "nc", "iis": "in"}
_NUMBERED_PREFIX: dict[LogFormat, str] = {"w3c": "extend", "ncsa": "ncsa", "iis": "inetsv"}


def clock_time(at: float, local_time: bool) -> datetime:
    """The time the file name follows: UTC, or this computer's local time."""
    return datetime.fromtimestamp(at).astimezone() if local_time else datetime.fromtimestamp(at, UTC)


def week_of_month(when: datetime) -> int:
    """1 for the days up to the first Saturday, then one more each Sunday (IIS weekly files)."""
    first_weekday = (when.replace(day=1).weekday() + 1) % 7  # Sunday = 0
    return (when.day - 1 + first_weekday) // 7 + 1


def dated_name(fmt: LogFormat, period: LogPeriod, when: datetime) -> str:
    """The file name of a time-based period for the entries written at ``when``."""
    prefix = _DATED_PREFIX[fmt]
    stem = {
        "hourly": when.strftime("%y%m%d%H"),
        "daily": when.strftime("%y%m%d"),
        "weekly": when.strftime("%y%m") + f"{week_of_month(when):02}",
        "monthly": when.strftime("%y%m"),
    }[period]
    return f"{prefix}{stem}.log"


def numbered_name(fmt: LogFormat, number: int) -> str:
    return f"{_NUMBERED_PREFIX[fmt]}{number}.log"


def numbered_index(fmt: LogFormat, name: str) -> int | None:
    found = re.fullmatch(re.escape(_NUMBERED_PREFIX[fmt]) + r"(\d+)\.log", name)
    return int(found.group(1)) if found else None


def is_numbered(period: LogPeriod) -> bool:
    return period in ("size", "unlimited")


def needs_new_number(period: LogPeriod, current_size: int, adding: int, max_bytes: int) -> bool:
    """Size rollover: a non-empty file that this write would take past the limit ends here."""
    return period == "size" and current_size > 0 and current_size + adding > max_bytes


def file_name(fmt: LogFormat, period: LogPeriod, at: float, local_time: bool, number: int = 1) -> str:
    """The file the entries written at ``at`` go to (``number``: the current one of a numbered series)."""
    if is_numbered(period):
        return numbered_name(fmt, number)
    return dated_name(fmt, period, clock_time(at, local_time))


def latest_number(fmt: LogFormat, names: list[str]) -> int:
    """The highest number of a numbered series among ``names`` (1 when there is none yet)."""
    numbers = [n for n in (numbered_index(fmt, name) for name in names) if n is not None]
    return max(numbers, default=1)
