"""Test support: a network namespace joined to this one by a veth pair, for clients that are not on loopback.

    with network_namespace() as ns:      # root and iproute2 needed; see ``netns_unavailable``
        ns.host_address                   # 10.213.X.1, on this side of the pair: smtpsvc listens here
        ns.run(["swaks", ...])            # runs inside the namespace, where the client is 10.213.X.2

Only the addresses of that /30 are used, and only on that pair. The namespace (and with it the pair) is
deleted afterwards; every ``ip`` command is bounded in time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

IP = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
SUBNET_PREFIX = "10.213"  # 10.213.X.0/30 per namespace, X from the process id


def netns_unavailable() -> str | None:
    """Why network-namespace tests cannot run here (a skip reason), or None."""
    if IP is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"smtpsvc-probe-{os.getpid()}"
    try:
        added = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"ip netns is unavailable: {error}"
    if added.returncode != 0:
        return f"ip netns is unavailable: {added.stderr.strip()}"
    subprocess.run([IP, "netns", "delete", probe], capture_output=True, timeout=10)
    return None


def _ip(*args: str, namespace: str | None = None) -> None:
    assert IP is not None
    command = [IP, "-n", namespace, *args] if namespace else [IP, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass(frozen=True)
class Namespace:
    name: str
    host_link: str
    host_address: str  # this side of the pair
    client_address: str  # the namespace's side

    def run(self, command: Sequence[str], *, timeout: float = 60, input_text: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        assert IP is not None
        return subprocess.run([IP, "netns", "exec", self.name, *command], capture_output=True, text=True,
                              timeout=timeout, input=input_text, env=env)


@contextmanager
def network_namespace() -> Iterator[Namespace]:
    pid = os.getpid()
    third = pid % 250 + 1
    name = f"smtpsvc-t{pid}"
    host_link, ns_link = f"smtpsvc{pid % 100000}h", f"smtpsvc{pid % 100000}n"
    namespace = Namespace(name, host_link, f"{SUBNET_PREFIX}.{third}.1", f"{SUBNET_PREFIX}.{third}.2")
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_link, "type", "veth", "peer", "name", ns_link)
        _ip("link", "set", ns_link, "netns", name)
        _ip("addr", "add", f"{namespace.host_address}/30", "dev", host_link)
        _ip("link", "set", host_link, "up")
        _ip("addr", "add", f"{namespace.client_address}/30", "dev", ns_link, namespace=name)
        _ip("link", "set", ns_link, "up", namespace=name)
        _ip("link", "set", "lo", "up", namespace=name)
        yield namespace
    finally:
        subprocess.run([IP, "netns", "delete", name], capture_output=True, timeout=10)
        subprocess.run([IP, "link", "delete", host_link], capture_output=True, timeout=10)  # gone with the netns
        for _ in range(50):  # the kernel removes the pair a moment later
            if subprocess.run([IP, "link", "show", host_link], capture_output=True, timeout=10).returncode != 0:
                break
            time.sleep(0.05)
