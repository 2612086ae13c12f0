"""Test support: a real dnsmasq on a loopback port serving the MX, A and AAAA records a test asks for.

    records = DnsRecords(mx=[("multi.test", "mx1.multi.test", 10)], hosts=[("mx1.multi.test", "127.0.0.1")])
    with running_dnsmasq(tmp_path, records) as dns:
        Resolver([dns.server])          # dns.server == "127.0.0.1:<port>"

dnsmasq reads no system file (/etc/resolv.conf, /etc/hosts, /etc/dnsmasq.conf) and never forwards a
query off the machine: every name it was not given is NXDOMAIN (``--local=/#/``). Failure domains:
- ``timeout``: forwarded to a UDP socket this process holds open and never reads, so nothing answers;
- ``servfail``: forwarded to a second dnsmasq with DNSSEC validation required for the domain; its unsigned
  answers are BOGUS, and dnsmasq answers SERVFAIL — a real SERVFAIL, not a fake one.
Both processes are stopped by their PID.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query

DNSMASQ = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin") or "/usr/sbin/dnsmasq"
# A DS digest that matches no key: with it as trust anchor, every answer for the domain is BOGUS.
_NO_SUCH_KEY = "0" * 64


@dataclass(frozen=True)
class DnsRecords:
    """What the server answers. Names anywhere else are NXDOMAIN."""

    mx: Sequence[tuple[str, str, int]] = ()  # (domain, target host, preference)
    hosts: Sequence[tuple[str, str]] = ()  # (name, IPv4 or IPv6 address); repeat a name for more addresses
    null_mx: Sequence[str] = ()  # "MX 0 ." (RFC 7505)
    nxdomain: Sequence[str] = ()  # NXDOMAIN for the name and everything under it
    timeout: Sequence[str] = ()  # queries go unanswered
    servfail: Sequence[str] = ()  # queries answered SERVFAIL
    ttl: int = 0  # TTL of the answers (dnsmasq's default 0 means "do not cache")
    extra: Sequence[str] = field(default=())  # more dnsmasq options, as they are


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now (dnsmasq serves both on one port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port on 127.0.0.1")


def record_options(records: DnsRecords) -> list[str]:
    """The dnsmasq options for ``records`` (the failure domains need their upstreams: see ``Dnsmasq``)."""
    options = [f"--local-ttl={records.ttl}"]
    options += [f"--mx-host={domain},{host},{preference}" for domain, host, preference in records.mx]
    options += [f"--host-record={name},{address}" for name, address in records.hosts]
    # dnsmasq's --mx-host cannot name the root; MX RDATA "preference 0, name ." is 00 00 00.
    options += [f"--dns-rr={domain},15,000000" for domain in records.null_mx]
    options += [f"--address=/{domain}/" for domain in records.nxdomain]
    return [*options, *records.extra]


class Dnsmasq:
    """A running dnsmasq (and its helpers); ``server`` is what the engine's ``dns_servers`` takes."""

    host = "127.0.0.1"

    def __init__(self, directory: Path, records: DnsRecords) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.records = records
        self._processes: list[subprocess.Popen[bytes]] = []
        self._black_hole: socket.socket | None = None
        self.port = 0
        self.log_path = directory / "dnsmasq.log"

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self._processes[-1].pid

    def start(self) -> Dnsmasq:
        try:
            options = record_options(self.records)
            if self.records.timeout:
                self._black_hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._black_hole.bind((self.host, 0))
                hole = self._black_hole.getsockname()[1]
                options += [f"--server=/{domain}/{self.host}#{hole}" for domain in self.records.timeout]
            if self.records.servfail:
                upstream = self._spawn("upstream", [])  # knows nothing: NXDOMAIN without DNSSEC proofs
                options += ["--dnssec", f"--trust-anchor=.,1,8,2,{_NO_SUCH_KEY}"]
                for domain in self.records.servfail:
                    options += [f"--server=/{domain}/{self.host}#{upstream}",
                                f"--trust-anchor={domain},1,8,2,{_NO_SUCH_KEY}"]
            self.port = self._spawn("dnsmasq", options)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, options: list[str]) -> int:
        """Start one dnsmasq on a free port and wait until it answers; returns the port."""
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        log = self.directory / f"{name}.log"
        for _attempt in range(5):  # the free port may be taken between the probe and dnsmasq's bind
            port = free_port()
            command = [
                DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                f"--port={port}", f"--listen-address={self.host}", "--bind-interfaces",
                f"--pid-file={self.directory / (name + '.pid')}", f"--log-facility={log}", "--log-queries",
                # Stay this user: as root dnsmasq would switch to "nobody", which a container may lack.
                f"--user={user}", f"--group={group}",
                "--local=/#/",  # answer only from these options; never forward to the system's servers
                *options,
            ]
            stderr = self.directory / f"{name}.stderr"
            with open(stderr, "wb") as err:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            self._processes.append(process)
            if _wait_ready(process, self.host, port):
                return port
            self._processes.remove(process)
            _terminate(process)
            output = stderr.read_text(errors="replace")
            if "in use" not in output:
                raise RuntimeError(f"dnsmasq did not start: {output.strip()} (command: {' '.join(command)})")
        raise RuntimeError("dnsmasq found no free port")

    def stop(self) -> None:
        for process in reversed(self._processes):
            _terminate(process)
        self._processes.clear()
        if self._black_hole is not None:
            self._black_hole.close()
            self._black_hole = None

    def log(self) -> str:
        """dnsmasq's query log (``--log-queries``) so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _wait_ready(process: subprocess.Popen[bytes], host: str, port: int, deadline: float = 10.0) -> bool:
    """Whether dnsmasq answers a query before ``deadline`` seconds; False when it exited."""
    query = dns.message.make_query("ready.invalid.", "A")
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            return False
        with contextlib.suppress(dns.exception.Timeout, OSError):
            dns.query.udp(query, host, port=port, timeout=0.2)
            return True
        time.sleep(0.05)
    return False


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to this dnsmasq (by its PID), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def running_dnsmasq(directory: Path, records: DnsRecords) -> Iterator[Dnsmasq]:
    """dnsmasq serving ``records`` for the ``with`` block; its files (log, pid) go to ``directory``."""
    server = Dnsmasq(directory, records).start()
    try:
        yield server
    finally:
        server.stop()
