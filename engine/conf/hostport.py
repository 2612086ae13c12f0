"""``HOST:PORT`` strings as used by listeners, smart hosts and DNS servers (``[v6]:PORT`` for IPv6)."""

from __future__ import annotations


def split_hostport(text: str, default_port: int | None = None, *, allow_zero: bool = True) -> tuple[str, int]:
    """Split ``host:port`` / ``[v6]:port`` / ``host``; raises ValueError with a reason.

    Port 0 (allowed unless ``allow_zero`` is false) asks the system for a free port: tests use it.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host:
            raise ValueError(f"{text!r}: missing ']'")
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise ValueError(f"{text!r}: expected ':' after ']'")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        raise ValueError(f"{text!r}: write IPv6 addresses as [address]:port")
    else:
        host, port_text = text, None
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r}: port missing")
        return host, default_port
    lowest = 0 if allow_zero else 1
    if not port_text.isdigit() or not lowest <= int(port_text) < 65536:
        raise ValueError(f"{text!r}: port must be {lowest}-65535")
    return host, int(port_text)


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
