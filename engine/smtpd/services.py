"""What an inbound session needs from its virtual server: one narrow record, so sessions stay testable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.cleanup.intake import Intake
from engine.conf.config import Config
from engine.counters import Counters
from engine.events import EventBus
from engine.log.record import ProtocolRecord
from engine.smtpd.security import Security
from engine.smtpd.sessions import SessionRegistry


@dataclass
class InboundServices:
    """What a session needs from its virtual server (kept narrow so sessions stay testable)."""

    config: Callable[[], Config]
    intake: Intake
    sessions: SessionRegistry
    counters: Counters
    bus: EventBus
    paused: Callable[[], bool]
    etrn: Callable[[str], Awaitable[int | None]]  # domain -> messages released, or None when not allowed
    security: Security | None = None  # None: the one shared by every session of this ``sessions`` registry
    # Called once per command, after its final reply; must not block (the protocol log buffers).
    protocol_log: Callable[[ProtocolRecord], None] | None = None
