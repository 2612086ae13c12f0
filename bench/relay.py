"""Relay benchmark: how fast ``smtpsvc serve`` drains a queue of remote mail into smtp-sinks, against Postfix.

    python bench/relay.py            # 10,000 messages per run, 3 repetitions per scenario, 4 sinks
    python bench/relay.py --quick    # 1,000 messages, 1 repetition: a smoke run

Both servers relay the same messages (4 KB, to recipients in 10 remote domains) to the same smtp-sink
processes, one per loopback address (``--sinks``, default 4: one sink process is a single event loop, and
was the limit of both servers), domain *i* going to sink *i* mod N. Each run first fills the server's queue
with delivery held back, then releases it and times the drain: from the release command until the queue is
empty.

- smtpsvc finds the domains' MX through a dnsmasq on loopback (domain *i*'s MX host is ``mx<i mod N>``, whose
  address is sink *i* mod N; ``outbound_port`` is the sinks' port). It is loaded while the sinks are down:
  every attempt is refused and every message waits, deferred, for its retry in 15 minutes. Then the sinks
  start and the benchmark sends
  ``queue.flush`` (Retry Now for the whole queue) over the engine's control socket — what
  ``smtpsvc queue flush`` sends, without starting an interpreter for it.
- Postfix (a private instance, bench/postfix_instance.py, reconfigured with ``postconf``) relays domain *i*
  to sink *i* mod N through ``transport_maps`` (an ``inline:`` table: ``smtp:[address]:port``; its own
  resolver cannot be pointed at dnsmasq), so each domain is a destination of its own, as for smtpsvc.
  Every message it accepts goes on hold (``check_client_access
  static:HOLD``); the release is ``postsuper -H ALL`` then ``postqueue -f``.

The end of a drain is an empty queue (smtpsvc: no ``*.eml`` left in Mailroot/Queue; Postfix: no file in
its incoming, active, deferred, hold or maildrop queues), polled every 0.1 s; the sink must then have
counted exactly the messages of the run. Scenarios: both servers with their default concurrency, and the
same concurrency for both. Repetitions alternate which server runs first; figures are medians.

Needs root (for Postfix), Postfix's programs (postfix, postconf, postsuper, postqueue, smtp-source,
smtp-sink) and dnsmasq. Writes the smtpsvc log and a JSON record of every run under bench/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    BENCH_DOMAIN,
    SENDER,
    SMTP_SOURCE,
    Child,
    count_files,
    cpu_seconds_tree,
    files_in,
    free_port,
    median,
    report_head,
    spawn_serve,
    stop_process,
    tests_on_path,
    tool_version,
    wait_for_banner,
    wait_until,
)

tests_on_path()
from dns_support import Dnsmasq, DnsRecords  # noqa: E402  # the tests' dnsmasq fixture

from bench.inbound import machine_facts  # noqa: E402
from bench.postfix_instance import POSTFIX, PostfixInstance  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
SMTP_SINK = shutil.which("smtp-sink", path="/usr/sbin:/usr/bin:/sbin:/bin") or "/usr/sbin/smtp-sink"
POSTSUPER = shutil.which("postsuper", path="/usr/sbin:/usr/bin") or "/usr/sbin/postsuper"
POSTQUEUE = shutil.which("postqueue", path="/usr/sbin:/usr/bin") or "/usr/sbin/postqueue"
POSTCONF = shutil.which("postconf", path="/usr/sbin:/usr/bin") or "/usr/sbin/postconf"
PY_SPY = shutil.which("py-spy")

SINK_BASE = 27  # sinks on 127.0.0.27, .28, ...: not 127.0.0.1, where Postfix listens (relaying to itself loops)
MX_NAME = "mx{}.sink.test"
POLL = 0.1  # seconds between looks at a draining queue
TARGET = 1.5  # smtpsvc drains at least this much faster than Postfix (issue #15)
INJECT_SESSIONS = 20
SERVERS = ("smtpsvc", "postfix")


@dataclass(frozen=True)
class Plan:
    messages: int = 10_000
    warmup: int = 1_000
    reps: int = 3
    domains: int = 10
    sinks: int = 4
    size: int = 4096
    drain_timeout: float = 900.0  # one drain; a run that does not finish by then is a failure
    load_timeout: float = 900.0  # loading the queue (smtp-source) and waiting until every message is held
    trace: bool = False  # print each drain's timeline: (seconds, messages still queued, messages the sinks have)


FULL = Plan()
QUICK = Plan(messages=1_000, warmup=200, reps=1)


@dataclass(frozen=True)
class Scenario:
    label: str
    smtpsvc: dict[str, int]  # [server] options of smtpsvc
    postfix: dict[str, str]  # main.cf parameters of Postfix
    note: str


SCENARIOS = (
    Scenario("defaults", {}, {},
             "smtpsvc: at most 100 connections per domain and 1000 in all, 20 messages per connection; "
             "Postfix: default_destination_concurrency_limit 20 (per destination: each domain)"),
    Scenario("20 connections each", {"max_outbound_connections": 20}, {},
             "smtpsvc: max_outbound_connections 20; Postfix as by default (20 per domain)"),
)


@dataclass
class Run:
    server: str
    messages: int
    seconds: float  # release command until the queue is empty
    release_seconds: float  # how long the release command itself took
    cpu_s: float  # CPU of the server's process tree during the drain
    sink_cpu_s: float
    sink_sessions: int  # SMTP sessions the sink saw: messages / sessions = messages per connection

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Result:
    scenario: Scenario
    runs: dict[str, list[Run]] = field(default_factory=lambda: {name: [] for name in SERVERS})
    engine: dict[str, float] | None = None  # the in-process diagnostic (--diagnose)

    def med(self, server: str, value: Callable[[Run], float]) -> float:
        return median([value(run) for run in self.runs[server]])

    def ratio(self) -> float:
        """Speed of smtpsvc over Postfix's: median drain time of Postfix / median drain time of smtpsvc."""
        return self.med("postfix", lambda r: r.seconds) / self.med("smtpsvc", lambda r: r.seconds)

    def pair_ratio(self) -> float:
        """Median of the ratios within each repetition (two runs back to back)."""
        pairs = zip(self.runs["smtpsvc"], self.runs["postfix"], strict=True)
        return median([pf.seconds / svc.seconds for svc, pf in pairs])


# --- the sink -----------------------------------------------------------------------------------------

class Sink(Child):
    """Postfix's smtp-sink on ``host:port``: accepts every message and counts it (``-c``); stopped by PID."""

    def __init__(self, host: str, port: int, workdir: Path) -> None:
        self.host, self.port = host, port
        self.counter_file = workdir / f"sink-{host}-counters.txt"

    def start(self) -> Sink:
        user = pwd.getpwuid(os.getuid()).pw_name  # smtp-sink wants a user to drop to; it writes nothing
        with open(self.counter_file, "wb") as out:
            self.proc = subprocess.Popen([SMTP_SINK, "-c", "-u", user, f"{self.host}:{self.port}", "256"],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        wait_for_banner(self.host, self.port, 10, alive=self.alive)
        return self

    def counters(self) -> dict[str, int]:
        """The sink's last counter line: sess (sessions ended), quit, mesg (messages received)."""
        text = self.counter_file.read_bytes().decode("ascii", "replace")
        last = text.replace("\r", "\n").strip().splitlines()[-1:] or [""]
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", last[0])}

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.proc = None


class Sinks:
    """Several sinks counted as one."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    @property
    def pids(self) -> list[int]:
        return [sink.pid for sink in self.sinks]

    def counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for sink in self.sinks:
            for key, value in sink.counters().items():
                total[key] = total.get(key, 0) + value
        return total

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds_tree(pid) for pid in self.pids)


def sink_hosts(plan: Plan) -> list[str]:
    return [f"127.0.0.{SINK_BASE + i}" for i in range(plan.sinks)]


def sink_of(plan: Plan, index: int) -> str:
    """The sink address of domain number ``index`` (the same for both servers)."""
    return sink_hosts(plan)[index % plan.sinks]


def sinks_port(plan: Plan) -> int:
    """A port free on every sink address."""
    for _ in range(50):
        port = free_port(sink_hosts(plan)[0])
        try:
            for host in sink_hosts(plan)[1:]:
                with socket.socket() as probe:
                    probe.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every sink address")


@contextmanager
def running_sinks(plan: Plan, port: int, workdir: Path) -> Iterator[Sinks]:
    sinks: list[Sink] = []
    try:
        for host in sink_hosts(plan):
            sinks.append(Sink(host, port, workdir).start())
        yield Sinks(sinks)
    finally:
        for sink in sinks:
            sink.stop()


# --- loading a server ---------------------------------------------------------------------------------

def domains(plan: Plan) -> list[str]:
    return [f"d{i}.relay.test" for i in range(plan.domains)]


def inject(port: int, plan: Plan, messages: int, timeout: float) -> float:
    """Send ``messages`` (spread over the domains) with smtp-source; returns the seconds it took."""
    started = time.perf_counter()
    names = domains(plan)
    for index, domain in enumerate(names):
        count = messages // len(names) + (1 if index < messages % len(names) else 0)
        if count == 0:
            continue
        argv = [SMTP_SOURCE, "-s", str(min(INJECT_SESSIONS, count)), "-m", str(count), "-l", str(plan.size),
                "-d", "-f", SENDER, "-t", f"rcpt@{domain}", "-M", "client.bench.test", f"127.0.0.1:{port}"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"smtp-source exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-800:]}")
    return time.perf_counter() - started


# --- smtpsvc ------------------------------------------------------------------------------------------

SERVE_CONFIG = """\
# smtpsvc configuration for bench/relay.py
[server]
fqdn = "mx.{domain}"
dns_servers = ["{dns}"]
outbound_port = {port}
smart_host = ""
relay_allowed = ["127.0.0.0/8"]
{extra}"""


class Smtpsvc(Child):
    """``smtpsvc serve`` relaying through DNS to the sink; its queue is filled while the sink is down."""

    def __init__(self, workdir: Path, python: str, log: Path) -> None:
        self.workdir = workdir
        self.mailroot = workdir / "mailroot"
        self.config = workdir / "smtpsvc.toml"
        self.python = python
        self.log = log
        self.port = 0

    def start(self, dns: str, sink_port: int, options: dict[str, int], timeout: float = 60.0) -> None:
        self.mailroot.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        extra = "".join(f"{key} = {value}\n" for key, value in options.items())
        self.config.write_text(SERVE_CONFIG.format(domain=BENCH_DOMAIN, dns=dns, port=sink_port, extra=extra))
        self.proc = spawn_serve(self.python, self.mailroot, self.port, BENCH_DOMAIN, self.config, self.log)
        try:
            wait_for_banner("127.0.0.1", self.port, timeout, alive=self.alive)
        except BaseException:
            self.stop()
            raise RuntimeError(f"smtpsvc serve did not start; see {self.log}") from None

    def stop(self, timeout: float = 60.0) -> None:
        stop_process(self.proc, timeout, "smtpsvc")
        self.proc = None

    def control(self, op: str, **args: Any) -> Any:
        from engine.admin.control import request, socket_path

        return asyncio.run(request(socket_path(self.mailroot), op, timeout=600.0, **args))

    def queue_files(self) -> int:
        return files_in(self.mailroot / "Queue", ".eml")

    def all_deferred(self, expected: int) -> bool:
        """Every message queued, tried once (refused) and waiting for its retry."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.control("queue.list", offset=len(items), limit=2000)
            items += page["items"]
            if len(page["items"]) < 2000:
                break
        return page["total"] == expected and all(i["state"] == "queued" and i["attempts"] >= 1 for i in items)

    def load(self, plan: Plan, messages: int) -> None:
        if not self.alive():
            raise RuntimeError(f"smtpsvc exited; see {self.log}")
        inject(self.port, plan, messages, plan.load_timeout)
        if not wait_until(lambda: self.all_deferred(messages), plan.load_timeout, interval=1.0):
            raise RuntimeError(f"smtpsvc did not hold {messages} deferred messages within {plan.load_timeout:.0f} s")

    def release(self) -> None:
        count = self.control("queue.flush", ids=None, domain=None)["count"]
        if count == 0:
            raise RuntimeError("queue.flush released nothing")

    def queued(self) -> int:
        return self.queue_files()

    def check_clean(self) -> None:
        """No NDR, delay notice or Badmail came out of the run."""
        for name in ("Drop", "Badmail"):
            left = count_files(self.mailroot / name)
            if left:
                raise RuntimeError(f"smtpsvc's {name} holds {left} files after the run; see {self.mailroot}")


# --- diagnostic: the delivery engine without Retry Now's per-message state writes --------------------

def engine_drain(svc: Smtpsvc, plan: Plan, sink_port: int, workdir: Path,
                 profile: Path | None = None) -> dict[str, float]:
    """Load smtpsvc as for a run, stop it, and drain its Mailroot in a child process that runs the same engine
    (VirtualServer on uvloop) but makes every message due in memory and wakes delivery once. A diagnostic
    (it reaches into the engine's private parts), not a comparison figure. With ``profile``: under py-spy."""
    svc.load(plan, plan.messages)
    svc.stop()
    os.sync()
    time.sleep(0.5)
    argv = [svc.python, str(Path(__file__).resolve()), "--in-process-drain", str(svc.config), str(svc.mailroot),
            str(plan.drain_timeout)]
    if profile is not None:
        assert PY_SPY is not None
        argv = [PY_SPY, "record", "--format", "raw", "--threads", "--rate", "200", "--nonblocking",
                "--output", str(profile), "--", *argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    with running_sinks(plan, sink_port, workdir) as sink:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=plan.drain_timeout + 120, cwd=REPO,
                              env=env, stdin=subprocess.DEVNULL, check=False)
        time.sleep(0.5)
        counters = sink.counters()
    if proc.returncode != 0:
        raise RuntimeError(f"in-process drain exited {proc.returncode}: {proc.stderr[-2000:]}")
    # The child's one JSON line (py-spy, when it runs the child, prints its own lines too).
    figures: dict[str, float] = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    if counters.get("mesg") != plan.messages:
        raise RuntimeError(f"in-process drain: the sink received {counters.get('mesg')} of {plan.messages}")
    figures["msgs_per_connection"] = plan.messages / max(counters.get("sess", 0), 1)
    print(f"    engine   {plan.messages:6d} msgs drained in {figures['seconds']:7.2f} s = "
          f"{plan.messages / figures['seconds']:7.0f} msgs/s (made due in memory; CPU "
          f"{figures['cpu_s'] * 1000 / plan.messages:.2f} ms/msg; {figures['msgs_per_connection']:.1f} "
          "msgs/connection)", flush=True)
    return figures


async def _drain_in_process(config_path: Path, mailroot: Path, timeout: float) -> dict[str, float]:
    from app.serve import effective_config
    from engine.server import VirtualServer

    location = argparse.Namespace(config=config_path, mailroot=mailroot, listen=["127.0.0.1:0"],
                                  domain=BENCH_DOMAIN)
    server = VirtualServer(effective_config(location)[0])
    await server.start()
    try:
        store, delivery = server._queue, server._delivery  # private: this is a diagnostic of the engine
        assert store is not None and delivery is not None
        queue_dir = server.mailroot.queue

        def left() -> int:
            return sum(1 for entry in os.scandir(queue_dir) if entry.name.endswith(".eml"))

        cpu, started = time.process_time(), time.perf_counter()
        for entry in store.entries.values():
            entry.record.next_attempt = 0.0
            delivery.wake_at(entry.queue_id, 0.0)
        delivery.kick()
        while True:
            if not store.entries and await asyncio.to_thread(left) == 0:
                break
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{len(store.entries)} messages still queued after {timeout:.0f} s")
            await asyncio.sleep(POLL)
        return {"seconds": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}
    finally:
        await server.stop()


def in_process_drain_main(config_path: str, mailroot: str, timeout: str) -> int:
    import uvloop

    figures = uvloop.run(_drain_in_process(Path(config_path), Path(mailroot), float(timeout)))
    print(json.dumps(figures))
    return 0


# --- Postfix ------------------------------------------------------------------------------------------

class Postfix:
    """The private Postfix of bench/postfix_instance.py, relaying to the sink; every message goes on hold."""

    def __init__(self, workdir: Path) -> None:
        self.instance = PostfixInstance(base_dir=str(workdir))

    @property
    def port(self) -> int:
        return self.instance.port

    @property
    def pid(self) -> int:
        pid = self.instance.master_pid()
        if pid is None:
            raise RuntimeError("the private Postfix is not running")
        return pid

    def start(self) -> None:
        self.instance.start()

    def stop(self) -> None:
        self.instance.stop()

    def configure(self, sink_port: int, plan: Plan, parameters: dict[str, str]) -> None:
        """Relay domain i to sink i mod N, hold what arrives; then ``parameters``; reload."""
        routes = ", ".join(f"{domain}=smtp:[{sink_of(plan, i)}]:{sink_port}" for i, domain in enumerate(domains(plan)))
        settings = {
            "relayhost": "",
            "transport_maps": f"inline:{{{routes}}}",
            "default_transport": "smtp",
            "relay_transport": "relay",
            "smtpd_recipient_restrictions": "check_client_access static:HOLD, permit_mynetworks, reject",
            "default_destination_concurrency_limit": "20",
            **parameters,
        }
        self._run([POSTCONF, "-c", str(self.instance.config_dir), "-e",
                   *(f"{key}={value}" for key, value in settings.items())])
        self._run([POSTFIX, "-c", str(self.instance.config_dir), "reload"])
        time.sleep(1.0)  # the master restarts its daemons with the new settings

    def _run(self, argv: list[str]) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {(proc.stderr + proc.stdout).strip()}")
        return proc.stdout

    def held(self) -> int:
        return count_files(self.instance.queue_dir / "hold")

    def queued(self) -> int:
        return self.instance.queued()

    def load(self, plan: Plan, messages: int) -> None:
        inject(self.port, plan, messages, plan.load_timeout)
        if not wait_until(lambda: self.held() == messages and self.queued() == messages, plan.load_timeout,
                          interval=0.2):
            raise RuntimeError(f"Postfix holds {self.held()} of {messages} messages ({self.queued()} queued)")

    def release(self) -> None:
        config = str(self.instance.config_dir)
        self._run([POSTSUPER, "-c", config, "-H", "ALL"])
        self._run([POSTQUEUE, "-c", config, "-f"])

    def check_clean(self) -> None:
        text = self._run([POSTQUEUE, "-c", str(self.instance.config_dir), "-p"])
        if "Mail queue is empty" not in text:
            raise RuntimeError(f"postqueue -p after the drain: {text[:500]}")


Server = Smtpsvc | Postfix


# --- one run ------------------------------------------------------------------------------------------

@contextmanager
def py_spy(pid: int, output: Path | None) -> Iterator[None]:
    """Sample ``pid`` with py-spy (collapsed stacks, one line per stack and thread) while the block runs."""
    if output is None:
        yield
        return
    assert PY_SPY is not None
    spy = subprocess.Popen([PY_SPY, "record", "--pid", str(pid), "--format", "raw", "--threads", "--rate", "200",
                            "--nonblocking", "--output", str(output)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(10)


def profile_summary(path: Path, top: int = 25) -> str:
    """Where the sampled time went: samples per thread, then the functions with the most samples of their
    own (the innermost frame) and in all (anywhere on the stack), as shares of all samples."""
    threads: dict[str, int] = {}
    own: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        threads[frames[0]] = threads.get(frames[0], 0) + count
        functions = [re.sub(r":\d+\)$", ")", frame) for frame in frames[1:]]
        if functions:
            own[functions[-1]] = own.get(functions[-1], 0) + count
        for function in set(functions):
            anywhere[function] = anywhere.get(function, 0) + count
    if not total:
        return f"{path}: no samples"

    def table(title: str, counts: dict[str, int]) -> list[str]:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [title, *(f"  {100 * n / total:5.1f} %  {what}" for what, n in ranked)]

    lines = [f"py-spy: {total} samples (threads with the GIL or on a CPU; idle waits are not sampled)"]
    lines += table("by thread:", threads) + table("own time:", own) + table("on the stack:", anywhere)
    return "\n".join(lines)


def drain(name: str, server: Server, plan: Plan, messages: int, sink_port: int, workdir: Path,
          profile: Path | None = None) -> Run:
    """Load ``server``, release its queue into a fresh sink and time the drain (under py-spy: ``profile``)."""
    server.load(plan, messages)
    os.sync()
    time.sleep(0.5)
    with running_sinks(plan, sink_port, workdir) as sink, py_spy(server.pid, profile):
        cpu_before = cpu_seconds_tree(server.pid)
        sink_cpu_before = sink.cpu_seconds()
        started = time.perf_counter()
        server.release()
        released = time.perf_counter()
        deadline = started + plan.drain_timeout
        timeline: list[tuple[float, int, int]] = []
        while (left := server.queued()) > 0:
            if plan.trace:
                timeline.append((round(time.perf_counter() - started, 2), left, sink.counters().get("mesg", 0)))
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{name}: {server.queued()} messages still queued after {plan.drain_timeout:.0f} s")
            time.sleep(POLL)
        seconds = time.perf_counter() - started
        if plan.trace:
            print(f"    {name} timeline (s, queued, at the sinks): {timeline}", flush=True)
        time.sleep(0.5)  # the last sessions end (the sink counts a message at QUIT or ".")
        cpu = cpu_seconds_tree(server.pid) - cpu_before
        counters = sink.counters()
        sink_cpu = sink.cpu_seconds() - sink_cpu_before
    if counters.get("mesg") != messages:
        raise RuntimeError(f"{name}: the sink received {counters.get('mesg')} messages, {messages} were sent")
    server.check_clean()
    run = Run(name, messages, seconds, released - started, cpu, sink_cpu, counters.get("sess", 0))
    print(f"    {name:8s} {messages:6d} msgs drained in {seconds:7.2f} s = {run.rate:7.0f} msgs/s "
          f"(release {run.release_seconds:.2f} s; CPU {cpu * 1000 / messages:.2f} ms/msg; "
          f"{messages / max(run.sink_sessions, 1):.1f} msgs/connection)", flush=True)
    return run


def run_scenario(scenario: Scenario, plan: Plan, svc: Smtpsvc, pf: Postfix, dns: Dnsmasq, sink_port: int,
                 workdir: Path, profile: Path | None = None, diagnose: bool = False) -> Result:
    print(f"\n  scenario: {scenario.label} — {scenario.note}", flush=True)
    svc.start(dns.server, sink_port, scenario.smtpsvc)
    try:
        pf.configure(sink_port, plan, scenario.postfix)
        servers: dict[str, Server] = {"smtpsvc": svc, "postfix": pf}
        result = Result(scenario)
        print(f"  warm-up ({plan.warmup} messages each)", flush=True)
        for name in SERVERS:
            drain(name, servers[name], plan, plan.warmup, sink_port, workdir)
        for rep in range(plan.reps):
            order = SERVERS if rep % 2 == 0 else SERVERS[::-1]
            print(f"  repetition {rep + 1} of {plan.reps}", flush=True)
            for name in order:
                result.runs[name].append(drain(name, servers[name], plan, plan.messages, sink_port, workdir))
        if profile is not None:
            print("  one more smtpsvc run under py-spy (not in the figures)", flush=True)
            drain("smtpsvc", svc, plan, plan.messages, sink_port, workdir, profile)
            print(profile_summary(profile), flush=True)
        if diagnose:
            print("  diagnostic: the same engine in-process, every message made due in memory", flush=True)
            engine_profile = profile.with_suffix(".engine.pyspy") if profile is not None else None
            result.engine = engine_drain(svc, plan, sink_port, workdir, engine_profile)
            if engine_profile is not None:
                print(profile_summary(engine_profile), flush=True)
    finally:
        svc.stop()
    return result


# --- report -------------------------------------------------------------------------------------------

def report(facts: dict[str, str], results: list[Result], plan: Plan, quick: bool) -> str:
    title = (f"Relay benchmark ({'quick' if quick else 'full'}: {plan.messages} messages of {plan.size} bytes "
             f"to {plan.domains} domains, {plan.sinks} smtp-sink processes, per run, {plan.reps} repetition(s) "
             f"after a warm-up of {plan.warmup})")
    lines = report_head(title, facts, [
        "scenario", "smtpsvc s", "Postfix s", "smtpsvc msgs/s", "Postfix msgs/s", "smtpsvc / Postfix",
        "per-pair ratio", "target", "CPU ms/msg smtpsvc", "CPU ms/msg Postfix", "msgs/connection smtpsvc",
        "msgs/connection Postfix"], "lrrrrrrlrrrr")
    for res in results:
        svc_s, pf_s = res.med("smtpsvc", lambda r: r.seconds), res.med("postfix", lambda r: r.seconds)
        verdict = "met" if res.ratio() >= TARGET else "NOT met"
        lines.append(
            f"| {res.scenario.label} | {svc_s:.2f} | {pf_s:.2f} | {plan.messages / svc_s:.0f} "
            f"| {plan.messages / pf_s:.0f} | {res.ratio():.2f}x | {res.pair_ratio():.2f}x | >= {TARGET}x: {verdict} "
            f"| {res.med('smtpsvc', lambda r: r.cpu_s * 1000 / r.messages):.2f} "
            f"| {res.med('postfix', lambda r: r.cpu_s * 1000 / r.messages):.2f} "
            f"| {res.med('smtpsvc', lambda r: r.messages / max(r.sink_sessions, 1)):.1f} "
            f"| {res.med('postfix', lambda r: r.messages / max(r.sink_sessions, 1)):.1f} |")
    lines += ["", "Scenarios:", ""]
    lines += [f"- {res.scenario.label}: {res.scenario.note}" for res in results]
    diagnosed = [res for res in results if res.engine]
    if diagnosed:
        lines += ["", "Diagnostic (--diagnose, one run, not a comparison figure): the same engine in-process, every "
                  "message made due in memory and delivery woken once, instead of Retry Now:", ""]
        for res in diagnosed:
            assert res.engine is not None
            lines.append(f"- {res.scenario.label}: {res.engine['seconds']:.2f} s = "
                         f"{plan.messages / res.engine['seconds']:.0f} msgs/s, CPU "
                         f"{res.engine['cpu_s'] * 1000 / plan.messages:.2f} ms/msg, "
                         f"{res.engine['msgs_per_connection']:.1f} msgs/connection; Postfix median "
                         f"{res.med('postfix', lambda r: r.seconds):.2f} s")
    lines += ["", "Every repetition, drain seconds smtpsvc / Postfix (release command seconds in brackets):", ""]
    for res in results:
        pairs = ", ".join(f"{a.seconds:.2f} ({a.release_seconds:.2f}) / {b.seconds:.2f} ({b.release_seconds:.2f})"
                          for a, b in zip(res.runs["smtpsvc"], res.runs["postfix"], strict=True))
        lines.append(f"- {res.scenario.label}: {pairs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 messages, 1 repetition")
    parser.add_argument("--messages", type=int, help="messages per run (default 10,000; quick 1,000)")
    parser.add_argument("--reps", type=int, help="repetitions per scenario (default 3; quick 1)")
    parser.add_argument("--domains", type=int, help="remote domains the messages go to (default 10)")
    parser.add_argument("--sinks", type=int, help="smtp-sink processes, one per loopback address (default 4)")
    parser.add_argument("--size", type=int, help="message size in bytes, smtp-source -l (default 4096)")
    parser.add_argument("--scenario", action="append", choices=[s.label for s in SCENARIOS],
                        help="run only this scenario (repeatable)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs smtpsvc serve")
    parser.add_argument("--trace", action="store_true",
                        help="print each drain's timeline (queue left and messages at the sinks, every 0.1 s)")
    parser.add_argument("--profile", action="store_true",
                        help="after each scenario, one more smtpsvc drain sampled by py-spy (pip install py-spy; "
                             "not counted in the figures)")
    parser.add_argument("--diagnose", action="store_true",
                        help="after each scenario, one more drain by the engine in-process, made due in memory "
                             "instead of by Retry Now (not counted in the figures)")
    parser.add_argument("--in-process-drain", nargs=3, metavar=("CONFIG", "MAILROOT", "TIMEOUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process_drain:
        return in_process_drain_main(*args.in_process_drain)
    if args.profile and PY_SPY is None:
        parser.error("--profile needs py-spy on PATH (pip install py-spy)")

    plan = QUICK if args.quick else FULL
    changes = {"messages": args.messages, "reps": args.reps, "domains": args.domains, "size": args.size,
               "sinks": args.sinks, "trace": args.trace or None}
    plan = Plan(**{**asdict(plan), **{k: v for k, v in changes.items() if v is not None}})
    if not (1 <= plan.messages <= 1_000_000 and 1 <= plan.reps <= 20 and 1 <= plan.domains <= 1000
            and 1 <= plan.size <= 10 * 1024 * 1024 and 1 <= plan.sinks <= 64):
        parser.error("messages 1..1,000,000, reps 1..20, domains 1..1000, size 1..10 MB, sinks 1..64")
    if os.geteuid() != 0:
        print("bench/relay.py needs root (the private Postfix's master runs as root)", file=sys.stderr)
        return 2
    for program in (SMTP_SOURCE, SMTP_SINK, POSTSUPER, POSTQUEUE, POSTCONF):
        if not os.path.exists(program):
            print(f"{program} not found: apt-get install postfix", file=sys.stderr)
            return 2
    scenarios = [s for s in SCENARIOS if not args.scenario or s.label in args.scenario]

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = OUT_DIR / f"relay-{stamp}-smtpsvc.log"
    workdir = Path(tempfile.mkdtemp(prefix="smtpsvc-relay-"))
    os.chmod(workdir, 0o755)
    started = time.monotonic()
    results: list[Result] = []
    records = DnsRecords(mx=[(domain, MX_NAME.format(i % plan.sinks), 10) for i, domain in enumerate(domains(plan))],
                         hosts=[(MX_NAME.format(i), host) for i, host in enumerate(sink_hosts(plan))], ttl=3600)
    try:
        facts = machine_facts(args.python, workdir)
        if not (REPO / ".git").exists():
            facts["smtpsvc commit"] = f"unknown: {REPO} is not a git checkout"
        facts["aiosmtplib, dnspython"] = tool_version([args.python, "-c", "import importlib.metadata as m; print("
                                                       "m.version('aiosmtplib'), m.version('dnspython'))"])
        facts["dnsmasq"] = tool_version(["dnsmasq", "--version"])
        sink_port = sinks_port(plan)
        dns = Dnsmasq(workdir / "dns", records).start()
        pf = Postfix(workdir)
        svc = Smtpsvc(workdir / "smtpsvc", args.python, log)
        (workdir / "smtpsvc").mkdir()
        try:
            pf.start()
            print(f"Postfix  {pf.instance.dir} on 127.0.0.1:{pf.port}; sinks {', '.join(sink_hosts(plan))} "
                  f"port {sink_port}; "
                  f"dnsmasq {dns.server}")
            for scenario in scenarios:
                profile = OUT_DIR / f"relay-{stamp}-{scenario.label.replace(' ', '-')}.pyspy" if args.profile else None
                results.append(run_scenario(scenario, plan, svc, pf, dns, sink_port, workdir, profile,
                                            args.diagnose))
        finally:
            svc.stop()
            pf.stop()
            dns.stop()
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)

    text = report(facts, results, plan, args.quick)
    elapsed = time.monotonic() - started
    text += "\n\nload average at the end (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    print("\n" + text + f"\n\n(benchmark took {elapsed / 60:.1f} min; smtpsvc log: {log})")
    record = {"facts": facts, "quick": args.quick, "plan": asdict(plan), "elapsed_s": elapsed,
              "results": [{"scenario": asdict(res.scenario), "ratio": res.ratio(), "pair_ratio": res.pair_ratio(),
                           "runs": {name: [asdict(run) for run in runs] for name, runs in res.runs.items()},
                           "engine_diagnostic": res.engine}
                          for res in results]}
    (OUT_DIR / f"relay-{stamp}.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
