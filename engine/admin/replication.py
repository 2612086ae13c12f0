"""Content replication: what a peer's configuration would change to, given another server's settings (pure).

Only the settings that are not machine-specific travel (``control_ops.replicable``: options not marked
``local`` or secret, and the domains without their Drop directory); the peer applies them with the
``config.replicate`` op, which keeps its own local paths, addresses, certificates, keys and secrets.
"""

from __future__ import annotations

from typing import Any

from engine.admin.control_ops import replicable
from engine.conf.config_file import format_value
from engine.conf.options import OPTIONS_BY_NAME


def _shown(key: str, value: Any) -> str:
    option = OPTIONS_BY_NAME.get(key)
    if option is None:
        return repr(value)
    return format_value(option, tuple(value) if isinstance(value, list) else value) or '""'


def _domain_text(domain: dict[str, Any]) -> str:
    details = [f"{k}={v}" for k, v in sorted(domain.items()) if k not in ("name", "type") and v not in ("", False)]
    return f"{domain.get('type')}" + (f" ({', '.join(details)})" if details else "")


def differences(source: dict[str, Any], peer: dict[str, Any]) -> list[str]:
    """One line per setting or domain the peer would change, for people: ``key: old → new``."""
    wanted, current = replicable(source), replicable(peer)
    lines = [f"{key}: {_shown(key, current['server'].get(key))} → {_shown(key, value)}"
             for key, value in wanted["server"].items() if current["server"].get(key) != value]
    theirs = {str(d.get("name", "")).lower(): d for d in current["domain"]}
    ours = {str(d.get("name", "")).lower(): d for d in wanted["domain"]}
    for name, domain in ours.items():
        if name not in theirs:
            lines.append(f"domain {domain.get('name')}: added, {_domain_text(domain)}")
        elif theirs[name] != domain:
            lines.append(f"domain {domain.get('name')}: {_domain_text(theirs[name])} → {_domain_text(domain)}")
    lines += [f"domain {domain.get('name')}: removed" for name, domain in theirs.items() if name not in ours]
    return lines
