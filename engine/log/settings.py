"""Where and how the protocol log is written, derived from the configuration (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from engine.conf.config import Config
from engine.log.formats import LogFormat
from engine.log.naming import SITE_DIR, LogPeriod, file_name, is_numbered, latest_number
from engine.store.mailroot import mailroot_root

LOGS_DIR = "Logs"


@dataclass(frozen=True)
class LogSettings:
    enabled: bool
    fmt: LogFormat
    directory: Path  # the virtual server's folder: <log_dir>/SMTPSVC1
    period: LogPeriod
    max_bytes: int
    fields: tuple[str, ...]
    local_time: bool
    computer: str


def log_root(config: Config, config_path: Path | None) -> Path:
    """``log_dir``; empty = a ``Logs`` folder beside the configuration file (beside the Mailroot when the
    server was started without one, as tests and benchmarks are). A relative ``log_dir`` is relative to
    the configuration file's folder."""
    base = config_path.parent if config_path is not None else mailroot_root(config.mailroot).parent
    setting = config.server.log_dir
    return base / Path(setting).expanduser() if setting else base / LOGS_DIR


def log_settings(config: Config, config_path: Path | None) -> LogSettings:
    server = config.server
    return LogSettings(
        enabled=server.log_enabled,
        fmt=cast(LogFormat, server.log_format),
        directory=log_root(config, config_path) / SITE_DIR,
        period=cast(LogPeriod, server.log_period),
        max_bytes=server.log_max_size_mb * 1024 * 1024,
        fields=server.log_fields,
        local_time=server.log_local_time,
        computer=config.fqdn,
    )


def current_log_file(settings: LogSettings, now: float) -> Path:
    """The file entries written at ``now`` go to (a numbered series: its highest existing number)."""
    number = 1
    if is_numbered(settings.period) and settings.directory.is_dir():
        number = latest_number(settings.fmt, [p.name for p in settings.directory.iterdir()])
    return settings.directory / file_name(settings.fmt, settings.period, now, settings.local_time, number)
