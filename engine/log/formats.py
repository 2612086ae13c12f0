"""The three IIS protocol-log formats as pure functions: W3C Extended, NCSA Common and Microsoft IIS.

W3C Extended follows the W3C working draft (WD-logfile-960323): ``#Software``, ``#Version: 1.0``,
``#Date`` and ``#Fields`` directives, then one space-separated line per command, ``-`` for an empty
value. Times in W3C lines are always UTC, as the draft says; NCSA and IIS lines use the file's clock
(local time when ``log_local_time`` is on). Invariant: no logged value contains a space, a comma
(IIS format), a control character, or a secret (``loggable_argument``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from engine.log.record import ProtocolRecord

LogFormat = Literal["w3c", "ncsa", "iis"]
FORMATS: tuple[LogFormat, ...] = ("w3c", "ncsa", "iis")
SITE_NAME = "SMTPSVC1"  # the first (and only) virtual server's service instance, as IIS names it
MAX_ARGUMENT = 512  # characters of an argument kept in the log; a line is a record, not a transcript
OUTBOUND_USER = "OutboundConnectionCommand"  # the cs-username of IIS's outbound lines

# Verbs whose argument is a secret after the first word: AUTH's initial response is a password.
_SECRET_AFTER_FIRST_WORD = frozenset({"AUTH"})
_QUEUE_ID = re.compile(r"<[^<>\s]+>")
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Stamp:
    """Where and when a line is written: the record's time and this server's names."""

    at: float  # seconds since the epoch
    computer: str
    local_time: bool = False  # NCSA / IIS lines: local time instead of UTC


def loggable_argument(verb: str, argument: str, reply: str) -> str:
    """The argument as it may be logged: never an AUTH payload; DATA/BDAT get the queue ID of their reply."""
    verb = verb.upper()
    if verb in _SECRET_AFTER_FIRST_WORD:
        return argument.split(None, 1)[0] if argument.strip() else ""
    if verb in ("DATA", "BDAT") and reply.startswith("2"):
        found = _QUEUE_ID.search(reply)
        return found.group(0) if found else argument
    return argument[:MAX_ARGUMENT]


def escape(value: str) -> str:
    """One log token: ``-`` for empty, runs of white space and control characters as ``+`` (as IIS does)."""
    if not value:
        return "-"
    if " " not in value and value.isprintable():  # the usual case, without the regular expression
        return value
    return _UNSAFE.sub("+", value)


def status_of(reply: str) -> str:
    code = reply[:3]
    return code if code.isdigit() else "0"


def _file_clock(stamp: Stamp) -> datetime:
    return datetime.fromtimestamp(stamp.at).astimezone() if stamp.local_time else datetime.fromtimestamp(stamp.at, UTC)


_last_second: list[object] = [None, "", ""]  # (second, date, time): one strftime a second, not two a line


def _utc_date_time(at: float) -> tuple[str, str]:
    second = int(at)
    if _last_second[0] != second:
        t = time.gmtime(second)
        _last_second[:] = [second, f"{t.tm_year:04}-{t.tm_mon:02}-{t.tm_mday:02}",
                           f"{t.tm_hour:02}:{t.tm_min:02}:{t.tm_sec:02}"]
    return str(_last_second[1]), str(_last_second[2])


def w3c_values(record: ProtocolRecord, stamp: Stamp) -> dict[str, str]:
    """Every IIS W3C Extended field of a record, already escaped, in the order the IIS dialog offers them.

    Only what a client chose (its HELO name, a command's argument) needs escaping; the rest is ours.
    """
    date, clock = _utc_date_time(stamp.at)
    return {
        "date": date,
        "time": clock,
        "c-ip": record.client_ip or "-",
        "cs-username": escape(record.username),
        "s-sitename": SITE_NAME,
        "s-computername": escape(stamp.computer),
        "s-ip": record.server_ip or "-",
        "s-port": str(record.server_port),
        "cs-method": escape(record.verb.upper()),
        "cs-uri-stem": "-",
        "cs-uri-query": escape(loggable_argument(record.verb, record.argument, record.reply)),
        "sc-status": status_of(record.reply),
        "sc-win32-status": "0",
        "sc-bytes": str(record.sc_bytes),
        "cs-bytes": str(record.cs_bytes),
        "time-taken": str(record.time_taken_ms),
        "cs-version": "SMTP",
        "cs-host": "-",
        "cs(User-Agent)": "-",
        "cs(Cookie)": "-",
        "cs(Referer)": "-",
    }


def w3c_line(record: ProtocolRecord, stamp: Stamp, fields: Sequence[str]) -> str:
    values = w3c_values(record, stamp)
    return " ".join([values[name] for name in fields])


def w3c_header(software: str, at: float, fields: Sequence[str]) -> list[str]:
    """The directives that start a W3C Extended file (``#Date``: when the entries begin, UTC)."""
    date = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return [f"#Software: {software}", "#Version: 1.0", f"#Date: {date}", w3c_fields_directive(fields)]


def w3c_fields_directive(fields: Sequence[str]) -> str:
    return "#Fields: " + " ".join(fields)


def ncsa_line(record: ProtocolRecord, stamp: Stamp) -> str:
    """NCSA Common: ``host rfc931 authuser [date] "request" status bytes``; the request is "VERB query SMTP"."""
    when = _file_clock(stamp).strftime("%d/%b/%Y:%H:%M:%S %z")
    query = escape(loggable_argument(record.verb, record.argument, record.reply))
    request = f"{record.verb.upper()} {query} SMTP"
    return (f"{escape(record.client_ip)} - {escape(record.username)} [{when}] \"{request}\" "
            f"{status_of(record.reply)} {record.sc_bytes}")


IIS_COLUMNS = ("c-ip", "cs-username", "date", "time", "s-sitename", "s-computername", "s-ip", "time-taken",
               "cs-bytes", "sc-bytes", "sc-status", "sc-win32-status", "cs-method", "cs-uri-stem",
               "cs-uri-query")


def iis_line(record: ProtocolRecord, stamp: Stamp) -> str:
    """Microsoft IIS format: fixed columns, each followed by ", " (the last by ","), date M/D/YYYY."""
    when = _file_clock(stamp)
    values = w3c_values(record, stamp)
    values["date"] = f"{when.month}/{when.day}/{when.year}"
    values["time"] = f"{when.hour}:{when.minute:02}:{when.second:02}"
    tokens = [values[name].replace(",", "%2C") for name in IIS_COLUMNS]
    return ", ".join(tokens) + ","


def format_line(fmt: LogFormat, record: ProtocolRecord, stamp: Stamp, fields: Sequence[str]) -> str:
    if fmt == "w3c":
        return w3c_line(record, stamp, fields)
    if fmt == "ncsa":
        return ncsa_line(record, stamp)
    return iis_line(record, stamp)


# -- reading back (tests, `smtpsvc log tail`, tracking) ------------------------------------------------

_NCSA = re.compile(r'(\S+) (\S+) (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d+) (\d+)')


class LogLineError(ValueError):
    """A line that does not follow its file's format."""


def parse_w3c(lines: Sequence[str]) -> list[dict[str, str]]:
    """The entries of a W3C Extended file as field → value, following every ``#Fields`` directive."""
    fields: list[str] | None = None
    entries: list[dict[str, str]] = []
    for number, line in enumerate(lines, 1):
        if line.startswith("#"):
            if line.startswith("#Fields: "):
                fields = line[len("#Fields: "):].split(" ")
            continue
        if fields is None:
            raise LogLineError(f"line {number}: an entry before any #Fields directive")
        values = line.split(" ")
        if len(values) != len(fields):
            raise LogLineError(f"line {number}: {len(values)} values for {len(fields)} fields: {line!r}")
        entries.append(dict(zip(fields, values, strict=True)))
    return entries


def parse_ncsa(line: str) -> dict[str, str]:
    found = _NCSA.fullmatch(line)
    if found is None:
        raise LogLineError(f"not an NCSA Common line: {line!r}")
    keys = ("c-ip", "rfc931", "cs-username", "date", "cs-method", "cs-uri-query", "cs-version", "sc-status",
            "sc-bytes")
    return dict(zip(keys, found.groups(), strict=True))


def parse_iis(line: str) -> dict[str, str]:
    if not line.endswith(","):
        raise LogLineError(f"an IIS line ends with a comma: {line!r}")
    values = line[:-1].split(", ")
    if len(values) != len(IIS_COLUMNS) or any(" " in v or not v for v in values):
        raise LogLineError(f"not an IIS log line of {len(IIS_COLUMNS)} columns: {line!r}")
    return dict(zip(IIS_COLUMNS, values, strict=True))
