"""Helpers shared by the benchmarks: free ports, banner waits, smtp-source runs, /proc memory, statistics."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
BENCH_DOMAIN = "bench.test"
SENDER = f"sender@{BENCH_DOMAIN}"
RECIPIENT = f"rcpt@{BENCH_DOMAIN}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def read_banner(host: str, port: int, timeout: float = 2.0) -> str:
    """Connect, read the greeting line, say QUIT; returns the greeting ("" when nothing answered)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\n" not in data and len(data) < 4096:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                data += chunk
            try:
                sock.sendall(b"QUIT\r\n")
                sock.recv(1024)
            except OSError:
                pass
            return data.decode("ascii", "replace").strip()
    except OSError:
        return ""


def wait_for_banner(host: str, port: int, timeout: float, alive: object = None) -> str:
    """Poll until ``host:port`` greets with 220; ``alive()`` (if given) returning False aborts early."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise RuntimeError(f"server on {host}:{port} exited before it answered")
        last = read_banner(host, port, timeout=2.0)
        if last.startswith("220"):
            return last
        time.sleep(0.1)
    raise TimeoutError(f"no 220 greeting from {host}:{port} within {timeout:.0f} s (last: {last!r})")


@dataclass(frozen=True)
class SourceRun:
    """One smtp-source run: what was sent and how long it took."""

    messages: int
    size: int
    sessions: int
    per_connection: bool  # True: one message per connection; False: many (-d)
    seconds: float
    client_cpu: float = 0.0  # smtp-source's own user + system seconds

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_cpu_ms(self) -> float:
        """smtp-source's CPU per message: the share of the cores the client itself takes."""
        return self.client_cpu * 1000 / self.messages if self.messages else 0.0


def smtp_source(port: int, *, messages: int, size: int, sessions: int, per_connection: bool,
                timeout: float, host: str = "127.0.0.1") -> SourceRun:
    """Drive ``host:port`` with Postfix's smtp-source; raises if it failed or timed out.

    smtp-source aborts at the first unexpected reply, so a zero exit means every message got its 250.
    """
    argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", SENDER, "-t", RECIPIENT, "-M", "client.bench.test"]
    if not per_connection:
        argv.append("-d")
    argv.append(f"{host}:{port}")
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"smtp-source exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return SourceRun(messages, size, sessions, per_connection, seconds, client_cpu)


def spawn_serve(python: str, mailroot: Path, port: int, domain: str, config: Path,
                log: Path) -> subprocess.Popen[bytes]:
    """Start ``smtpsvc serve`` from this checkout on 127.0.0.1:``port``; its output is appended to ``log``."""
    repo = Path(__file__).resolve().parent.parent
    argv = [python, "-m", "app.cli", "serve", "--mailroot", str(mailroot),
            "--listen", f"127.0.0.1:{port}", "--domain", domain, "--config", str(config)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p)
    with open(log, "ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n{config.read_text()}".encode())
        out.flush()
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=repo, env=env)


def proc_status_kb(pid: int, field: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM, ...) of /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def count_files(root: Path) -> int:
    """Regular files below ``root`` (0 when it does not exist)."""
    total = 0
    for _dirpath, _dirnames, filenames in os.walk(root):
        total += len(filenames)
    return total


def wait_until(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds passed; returns the last value."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def clear_dir(path: Path, retire_to: Path | None = None) -> None:
    """Remove every entry inside ``path``, keeping the directory itself.

    With ``retire_to`` (a directory on the same filesystem) the entries are moved there instead, to be
    deleted when the benchmark ends: a file deleted now would make every file created near it in the
    next minute pay for it on an ext4 without a journal (see ``bench_workdir``), so the next run would pay
    for this one.
    """
    if not path.is_dir():
        return
    if retire_to is not None:
        batch = retire_to / f"{time.monotonic_ns()}"
        batch.mkdir(parents=True)
        for entry in os.scandir(path):
            os.rename(entry.path, batch / entry.name)
        return
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


BENCH_AREA = "smtpsvc-bench-area"


def bench_workdir(prefix: str, plain_tmp: bool = False) -> tuple[Path, str]:
    """A new work directory for one benchmark run, and how its files' inodes are placed.

    A directory made straight in a busy /tmp sits in the block group of /tmp, where test suites create and
    delete files all day. On an ext4 without a journal the inode allocator skips every inode deleted in the
    last minutes, one check each, and in that group a file create cost 0.7-1.2 ms of system time here
    instead of 0.03 ms (measured with 1,000 creates, 2026-12-07). That cost lands on whichever server
    happens to create files there, so the run would measure the disk's history. The work directory is
    therefore made under a parent marked as an Orlov top directory (``chattr +T``): ext4 places each new
    directory under it in a block group with free inodes, like a directory under /. Both servers of a run
    share that work directory. ``plain_tmp`` makes it straight in /tmp, as before, to compare.
    """
    tmp = Path(tempfile.gettempdir())
    if plain_tmp:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=tmp)), "straight in the temporary directory"
    area = tmp / BENCH_AREA
    area.mkdir(mode=0o755, exist_ok=True)
    marked = subprocess.run(["chattr", "+T", str(area)], capture_output=True).returncode == 0
    placement = ("under an Orlov top directory (chattr +T): a block group with free inodes" if marked
                 else "chattr +T not possible here: placed as the filesystem chooses")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=area)), placement


def create_cost_ms(directory: Path, files: int = 400) -> float:
    """System time per file create (4 KB written) in ``directory``, in ms: this disk's inode allocation now.

    The probe files are kept (the caller deletes ``directory`` at the end): deleting them now would make the
    very cost measured here (see ``bench_workdir``).
    """
    probe = directory / f"probe-{time.monotonic_ns()}"
    probe.mkdir(parents=True)
    block = b"x" * 4096
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    for number in range(files):
        fd = os.open(probe / str(number), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, block)
        finally:
            os.close(fd)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_stime - before) * 1000 / files


def wait_for_cheap_creates(directory: Path, limit_ms: float = 0.15, timeout: float = 420.0) -> str:
    """Wait until a file create in ``directory`` costs at most ``limit_ms`` of system time; say what was seen.

    Other processes' deletions near the work directory (a test suite ending, the last benchmark's clean-up)
    make creates there cost up to 40 times more for one to five minutes on an ext4 without a journal; a run
    started then measures that, not the servers. Checked once a minute, for at most ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        cost = create_cost_ms(directory)
        seen.append(f"{cost:.3f}")
        if cost <= limit_ms or time.monotonic() > deadline:
            break
        print(f"  a file create costs {cost:.2f} ms of system time in the work directory (files deleted nearby "
              f"in the last minutes): waiting a minute", file=sys.stderr, flush=True)
        time.sleep(60)
    verdict = "" if cost <= limit_ms else f" (still above {limit_ms} ms: figures include it)"
    return f"{' -> '.join(seen)} ms per create (4 KB) before the run{verdict}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def tool_version(argv: list[str]) -> str:
    """First line a program prints about its version, or "" when it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else ""


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3, the state, is index 0)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        text = stat.read()
    return text[text.rindex(")") + 2:].split()


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (smtpsvc's cleanup process, for one)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return found


def cpu_seconds_tree(root: int) -> float:
    """CPU time (user + system) of ``root``, its live descendants and the children they have reaped.

    Sampled before and after some work, the difference is the CPU the whole process tree spent on it, also
    for processes that started or exited (and were reaped by a process of the tree) in between.
    """
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            fields = _stat_fields(pid)
        except (OSError, ValueError):
            continue
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total / _CLK_TCK


def tests_on_path() -> None:
    """Put the tests' support modules (tests/dns_support.py: the dnsmasq fixture) on ``sys.path``."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(1, tests)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float, name: str = "") -> int | None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds (said when ``name`` is given); the exit code (None: none)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        wait_or_kill(proc, timeout, name)
    return proc.returncode


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float, name: str = "") -> None:
    """Wait ``timeout`` seconds for ``proc`` to end by itself, then SIGKILL it."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        if name:
            print(f"  {name} (pid {proc.pid}) did not stop within {timeout:.0f} s: killing it", file=sys.stderr)
        proc.kill()
        proc.wait(10)


class Child:
    """A process the benchmark started and stops by its PID."""

    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def files_in(folder: Path, suffix: str = "") -> int:
    """Regular files directly in ``folder`` whose name ends with ``suffix`` (0 when it does not exist): messages
    in Drop, Queue, Pickup."""
    try:
        return sum(1 for entry in os.scandir(folder) if entry.name.endswith(suffix) and entry.is_file())
    except FileNotFoundError:
        return 0


class Timer(Protocol):
    def stop(self) -> None: ...


def lag_probe(tick_s: float) -> tuple[Timer, list[tuple[float, float]]]:
    """A Qt timer that fires every ``tick_s`` and records (wall time, lateness in seconds) in the list returned
    with it (keep the timer referenced while it runs). For the window processes of embedded.py and
    remote_window.py: Qt is imported only by them."""
    from PySide6.QtCore import Qt, QTimer

    ticks: list[tuple[float, float]] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        ticks.append((time.time(), max(0.0, now - last[0] - tick_s)))
        last[0] = now

    probe = QTimer()
    probe.setTimerType(Qt.TimerType.PreciseTimer)
    probe.timeout.connect(tick)
    probe.start(round(tick_s * 1000))
    return probe, ticks


def stop_window(proc: subprocess.Popen[bytes] | None, workdir: Path, timeout: float) -> list[tuple[float, float]]:
    """Stop a window child (embedded.py, remote_window.py) by its stop file; its lag ticks, as lag_probe made them."""
    if proc is None:
        return []
    (workdir / "stop").write_text("stop")
    wait_or_kill(proc, timeout)
    lag = workdir / "lag.json"
    return [(at, late) for at, late in json.loads(lag.read_text())] if lag.exists() else []


def report_head(title: str, facts: dict[str, str], columns: list[str], align: str) -> list[str]:
    """A report's first lines: its title, the machine facts as a list, then a Markdown table's head; ``align``
    has one letter per column, ``r`` (figures, right-aligned) or ``l``."""
    rule = ["---:" if letter == "r" else "---" for letter in align]
    return [title, "", *(f"- {key}: {value}" for key, value in facts.items()), "",
            "| " + " | ".join(columns) + " |", "|" + "|".join(rule) + "|"]
