"""Connection ceilings: the configured limits, or, where they are off (0), ones derived from the open-file limit.

IIS's "limit number of connections: off" cannot mean "more than the process can open": past the open-file
limit, accept() fails and every client waits, the well-behaved ones too. So an unlimited setting becomes
three quarters of the soft RLIMIT_NOFILE (the rest is for queue files, spools and outbound connections),
and then one client address may take at most half of it (unless a per-address limit is set), so a single
flooding or slow-loris peer cannot starve the others. A configured total limit is taken as it is.
"""

from __future__ import annotations

import functools

from engine.conf.config import ServerConfig
from engine.events import ConnectionLimitReached
from engine.smtpd.sessions import SessionRegistry

FALLBACK_FILES = 4096  # where the open-file limit cannot be read (no ``resource`` module)
RESERVED_FILES = 64


@functools.lru_cache(maxsize=1)
def open_file_limit() -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return FALLBACK_FILES
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return FALLBACK_FILES if soft == resource.RLIM_INFINITY or soft <= 0 else int(soft)


def automatic_ceiling(files: int) -> int:
    """Inbound connections the process can hold with ``files`` descriptors and room for its own files."""
    return max(8, files * 3 // 4 - RESERVED_FILES)


def connection_limits(server: ServerConfig, files: int | None = None) -> tuple[int, int]:
    """(total, per client address) inbound connections allowed; never 0 (unlimited)."""
    if server.max_connections:
        return server.max_connections, server.max_connections_per_peer or server.max_connections
    total = automatic_ceiling(open_file_limit() if files is None else files)
    return total, server.max_connections_per_peer or max(1, total // 2)


def admission(server: ServerConfig, sessions: SessionRegistry, paused: bool,
              peer: str | None) -> tuple[str, ConnectionLimitReached | None] | None:
    """Why a new connection (already counted in ``sessions``) is refused: (reply key, event to publish), or None."""
    if paused:
        return "paused", None
    total, per_peer = connection_limits(server)
    if len(sessions) > total:
        return "too_many_connections", ConnectionLimitReached(peer or "?", total)  # the event log's 4001
    if peer is not None and sessions.from_peer(peer) > per_peer:
        return "too_many_from_peer", ConnectionLimitReached(peer, per_peer, per_peer=True)
    return None
