"""Inbound benchmark: durable message acceptance of ``smtpsvc serve`` against a private Postfix, and the
memory smtpsvc needs for large messages.

    python bench/inbound.py            # the full run (about 10-20 minutes on 2 cores)
    python bench/inbound.py --quick    # a smoke run of a minute or two
    python bench/inbound.py --logging-cost [--reps N]   # the protocol log on vs off, in the same run

Both servers run on this machine on loopback and are driven by Postfix's smtp-source with 20 parallel
sessions, 4 KB and 100 KB messages, one message per connection and many messages per connection. Runs
alternate between the two servers (the order flips every repetition) after a warm-up of each; the figure
kept is the median of msgs/s. Between runs both servers finish delivering what they accepted (smtpsvc into
its Drop directory, whose files are then moved aside, to be deleted at the end; Postfix into its discard
transport), and the page cache is written back (sync), so no run pays for the one before it. Both work in
one work directory placed in a block group of its own (``bench_workdir``): on this kind of disk a file made
where many were deleted in the last minute costs up to 40 times more (``--plain-tmp``: as before).

Then a fresh smtpsvc takes 10 concurrent 20 MB messages while its resident memory is sampled from
/proc/PID/status: peak (VmHWM) minus the resident size before the load.

Needs root (for Postfix), Postfix (smtp-source, postfix) and the project importable by the interpreter
that runs this script (``pip install -e .``, or run from the repo root). Writes logs and a JSON record
of the figures under bench/out/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    BENCH_DOMAIN,
    SMTP_SOURCE,
    Child,
    SourceRun,
    bench_workdir,
    children_of,
    clear_dir,
    count_files,
    cpu_seconds_tree,
    files_in,
    free_port,
    median,
    proc_status_kb,
    smtp_source,
    spawn_serve,
    tool_version,
    wait_for_banner,
    wait_for_cheap_creates,
    wait_until,
)
from bench.postfix_instance import PostfixInstance  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
SESSIONS = 20
LARGE_SIZE = 20 * 1024 * 1024
LARGE_COUNT = 10

TARGET_RATIO = {4096: 1.5, 102400: 1.2}  # issue #9: 1.5x at 4 KB, 1.2x at 100 KB
TARGET_RSS_GROWTH_MB = 60.0

SERVE_CONFIG = """\
# smtpsvc configuration for bench/inbound.py
[server]
fqdn = "mx.{domain}"
max_message_size_kb = 40960
max_session_size_kb = 409600
"""


@dataclass(frozen=True)
class Plan:
    reps: int
    warmup_messages: dict[int, int]
    messages: dict[int, int]  # by message size
    large_rounds: int
    settle_timeout: float = 300.0
    source_timeout: float = 900.0


FULL = Plan(reps=5, warmup_messages={4096: 1000, 102400: 500}, messages={4096: 4000, 102400: 2000},
            large_rounds=3)
QUICK = Plan(reps=1, warmup_messages={4096: 200, 102400: 100}, messages={4096: 1000, 102400: 400},
             large_rounds=1)


@dataclass
class Scenario:
    size: int
    per_connection: bool
    rates: dict[str, list[float]] = field(default_factory=lambda: {"smtpsvc": [], "postfix": []})
    cpu_ms: dict[str, list[float]] = field(default_factory=lambda: {"smtpsvc": [], "postfix": []})

    @property
    def label(self) -> str:
        mode = "1 msg/connection" if self.per_connection else "many msgs/connection"
        return f"{self.size // 1024} KB, {mode}"

    def ratio(self) -> float:
        """median(smtpsvc) / median(Postfix): the figure compared with the target."""
        return median(self.rates["smtpsvc"]) / median(self.rates["postfix"])

    def pair_ratio(self) -> float:
        """Median of the ratios within each repetition (runs back to back): less moved by drifting load."""
        return median([a / b for a, b in zip(self.rates["smtpsvc"], self.rates["postfix"], strict=True)])


# --- smtpsvc serve ------------------------------------------------------------------------------------

class Smtpsvc(Child):
    """``smtpsvc serve`` as a child process with its own Mailroot; stopped with SIGTERM by PID."""

    def __init__(self, workdir: Path, port: int, python: str, log: Path, extra_config: str = "",
                 plain_tmp: bool = False) -> None:
        self.plain_tmp = plain_tmp  # as before: delivered files deleted between runs, not retired
        self.extra_config = extra_config  # more [server] lines (the logging-cost comparison turns the log off)
        self.mailroot = workdir / "mailroot"
        self.config = workdir / "smtpsvc.toml"
        self.port = port
        self.python = python
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.banner = ""

    @property
    def drop(self) -> Path:
        return self.mailroot / "Drop"

    @property
    def retired(self) -> Path:
        """Where delivered files go between runs (deleted with the work directory at the end)."""
        return self.mailroot.parent / "retired"

    def queued(self) -> int:
        return count_files(self.mailroot / "Queue")

    def dropped(self) -> int:
        return files_in(self.drop)

    def start(self, timeout: float = 60.0) -> Smtpsvc:
        self.mailroot.mkdir(parents=True, exist_ok=True)
        self.config.write_text(SERVE_CONFIG.format(domain=BENCH_DOMAIN) + self.extra_config)
        self.proc = spawn_serve(self.python, self.mailroot, self.port, BENCH_DOMAIN, self.config, self.log)
        try:
            self.banner = wait_for_banner("127.0.0.1", self.port, timeout, alive=self.alive)
        except BaseException:
            self.stop()
            raise RuntimeError(f"smtpsvc serve did not start; see {self.log}") from None
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  smtpsvc (pid {self.proc.pid}) ignored SIGTERM for {timeout:.0f} s: killing it",
                      file=sys.stderr)
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> Smtpsvc:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# --- settling between runs ----------------------------------------------------------------------------

def settle_smtpsvc(svc: Smtpsvc, expected_drop: int, queue_baseline: int, timeout: float,
                   min_size: int = 0) -> None:
    """Wait until smtpsvc delivered all it accepted into Drop and its queue is back to idle; empty Drop.

    With ``min_size``, every Drop file must be at least that large (the whole message arrived).
    """
    done = wait_until(lambda: svc.dropped() >= expected_drop and svc.queued() <= queue_baseline, timeout)
    if not done:
        print(f"  warning: smtpsvc did not settle within {timeout:.0f} s "
              f"(Drop {svc.dropped()}/{expected_drop}, Queue {svc.queued()} files, idle {queue_baseline})",
              file=sys.stderr)
    elif svc.dropped() != expected_drop:
        print(f"  warning: Drop holds {svc.dropped()} files, {expected_drop} expected", file=sys.stderr)
    if min_size:
        short = [e.name for e in os.scandir(svc.drop) if e.is_file() and e.stat().st_size < min_size]
        if short:
            raise RuntimeError(f"{len(short)} Drop files are shorter than {min_size} bytes: {short[:3]}")
    clear_dir(svc.drop, retire_to=None if svc.plain_tmp else svc.retired)


def settle_postfix(pf: PostfixInstance, timeout: float) -> None:
    if not wait_until(lambda: pf.queued() == 0, timeout):
        print(f"  warning: Postfix queue still holds {pf.queued()} messages after {timeout:.0f} s",
              file=sys.stderr)


# --- the throughput part ------------------------------------------------------------------------------

def run_one(name: str, port: int, size: int, per_connection: bool, messages: int, plan: Plan) -> SourceRun:
    run = smtp_source(port, messages=messages, size=size, sessions=SESSIONS, per_connection=per_connection,
                      timeout=plan.source_timeout)
    print(f"    {name:8s} {run.messages:5d} msgs in {run.seconds:7.2f} s = {run.rate:8.1f} msgs/s", flush=True)
    return run


def throughput(plan: Plan, svc: Smtpsvc, pf: PostfixInstance) -> list[Scenario]:
    scenarios = [Scenario(size, per_connection) for size in (4096, 102400) for per_connection in (True, False)]
    queue_baseline = svc.queued()
    ports = {"smtpsvc": svc.port, "postfix": pf.port}

    def server_cpu(name: str) -> float:
        root = svc.pid if name == "smtpsvc" else pf.master_pid()
        if root is None:
            raise RuntimeError("the private Postfix is not running")
        return cpu_seconds_tree(root)

    def one(name: str, sc: Scenario, messages: int) -> tuple[SourceRun, float]:
        """One run and the CPU milliseconds per message the server spent on it (delivery included)."""
        if not svc.alive():
            raise RuntimeError(f"smtpsvc exited (code {svc.proc.returncode if svc.proc else '?'}); see {svc.log}")
        cpu_before = server_cpu(name)
        run = run_one(name, ports[name], sc.size, sc.per_connection, messages, plan)
        settle_smtpsvc(svc, run.messages if name == "smtpsvc" else 0, queue_baseline, plan.settle_timeout)
        settle_postfix(pf, plan.settle_timeout)
        cpu_ms = (server_cpu(name) - cpu_before) * 1000 / run.messages
        print(f"             server CPU {cpu_ms:.2f} ms/msg", flush=True)
        os.sync()
        time.sleep(0.5)
        return run, cpu_ms

    for sc in scenarios:
        print(f"\n  {sc.label}: warm-up", flush=True)
        for name in ("smtpsvc", "postfix"):
            one(name, sc, plan.warmup_messages[sc.size])
        for rep in range(plan.reps):
            order = ("smtpsvc", "postfix") if rep % 2 == 0 else ("postfix", "smtpsvc")
            print(f"  {sc.label}: repetition {rep + 1} of {plan.reps}", flush=True)
            for name in order:
                run, cpu_ms = one(name, sc, plan.messages[sc.size])
                sc.rates[name].append(run.rate)
                sc.cpu_ms[name].append(cpu_ms)
    return scenarios


# --- the memory part ----------------------------------------------------------------------------------

@dataclass
class MemoryResult:
    baseline_rss_mb: float
    peak_hwm_mb: float
    peak_sampled_rss_mb: float
    after_rss_mb: float
    rounds: int
    seconds: list[float]
    children_rss_mb: float = 0.0  # smtpsvc's child processes (the cleanup process) after the load, not in the above

    @property
    def growth_mb(self) -> float:
        return max(self.peak_hwm_mb, self.peak_sampled_rss_mb) - self.baseline_rss_mb


class RssSampler(threading.Thread):
    """Samples VmRSS of a process every ``interval`` seconds until stopped; keeps the largest."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak_kb = max(self.peak_kb, proc_status_kb(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def memory(plan: Plan, workdir: Path, port: int, python: str, log: Path) -> MemoryResult:
    svc = Smtpsvc(workdir, port, python, log)
    with svc:
        # One small message first, so that code loaded on first use is part of the baseline.
        smtp_source(port, messages=1, size=4096, sessions=1, per_connection=True, timeout=60)
        settle_smtpsvc(svc, 1, 0, plan.settle_timeout)
        queue_baseline = svc.queued()
        os.sync()
        time.sleep(1.0)
        baseline_kb = proc_status_kb(svc.pid, "VmRSS")
        # Reset the high-water mark to the current RSS (Linux: "5" to clear_refs), so VmHWM is this load's.
        try:
            Path(f"/proc/{svc.pid}/clear_refs").write_text("5")
        except OSError as exc:
            print(f"  note: could not reset VmHWM ({exc}); the peak includes start-up", file=sys.stderr)
        sampler = RssSampler(svc.pid)
        sampler.start()
        seconds = []
        try:
            for rnd in range(plan.large_rounds):
                run = smtp_source(port, messages=LARGE_COUNT, size=LARGE_SIZE, sessions=LARGE_COUNT,
                                  per_connection=True, timeout=plan.source_timeout)
                seconds.append(run.seconds)
                mb_s = LARGE_COUNT * LARGE_SIZE / 1024 / 1024 / run.seconds
                print(f"    round {rnd + 1}: {LARGE_COUNT} x 20 MB in {run.seconds:.2f} s ({mb_s:.0f} MB/s); "
                      f"VmHWM {proc_status_kb(svc.pid, 'VmHWM') / 1024:.1f} MB", flush=True)
                settle_smtpsvc(svc, LARGE_COUNT, queue_baseline, plan.settle_timeout, min_size=LARGE_SIZE)
                os.sync()
        finally:
            sampler.stop()
        hwm_kb = proc_status_kb(svc.pid, "VmHWM")
        after_kb = proc_status_kb(svc.pid, "VmRSS")
        children_kb = sum(proc_status_kb(child, "VmRSS") for child in children_of(svc.pid))
    return MemoryResult(baseline_kb / 1024, hwm_kb / 1024, sampler.peak_kb / 1024, after_kb / 1024,
                        plan.large_rounds, seconds, children_kb / 1024)


# --- the cost of the protocol log --------------------------------------------------------------------

@dataclass
class LogCost:
    label: str
    rates: dict[str, list[float]] = field(default_factory=lambda: {"on": [], "off": []})
    cpu_ms: dict[str, list[float]] = field(default_factory=lambda: {"on": [], "off": []})

    def cost_percent(self) -> float:
        """How much slower with the log, from the median of the per-pair ratios (runs back to back)."""
        return (1 - median([on / off for on, off in zip(self.rates["on"], self.rates["off"], strict=True)])) * 100

    def cpu_percent(self) -> float:
        return (median(self.cpu_ms["on"]) / median(self.cpu_ms["off"]) - 1) * 100


def logging_cost(plan: Plan, workdir: Path, python: str, log: Path) -> list[LogCost]:
    """Durable inbound with the protocol log on and off, two servers in the same run, alternating."""
    results = [LogCost("4 KB, 1 msg/connection"), LogCost("4 KB, many msgs/connection")]
    with Smtpsvc(workdir / "log-on", free_port(), python, log) as on, \
            Smtpsvc(workdir / "log-off", free_port(), python, log, "log_enabled = false\n") as off:
        servers = {"on": on, "off": off}
        baselines = {name: svc.queued() for name, svc in servers.items()}

        def one(name: str, per_connection: bool, messages: int) -> tuple[float, float]:
            svc = servers[name]
            cpu_before = cpu_seconds_tree(svc.pid)
            run = run_one(f"log {name}", svc.port, 4096, per_connection, messages, plan)
            settle_smtpsvc(svc, run.messages, baselines[name], plan.settle_timeout)
            cpu_ms = (cpu_seconds_tree(svc.pid) - cpu_before) * 1000 / run.messages
            os.sync()
            time.sleep(0.5)
            return run.rate, cpu_ms

        for result, per_connection in zip(results, (True, False), strict=True):
            print(f"\n  protocol log cost, {result.label}: warm-up", flush=True)
            for name in ("on", "off"):
                one(name, per_connection, plan.warmup_messages[4096])
            for rep in range(plan.reps):
                for name in (("on", "off") if rep % 2 == 0 else ("off", "on")):
                    rate, cpu_ms = one(name, per_connection, plan.messages[4096])
                    result.rates[name].append(rate)
                    result.cpu_ms[name].append(cpu_ms)
        lines = sum(1 for p in (on.config.parent / "Logs").rglob("*.log") for _ in p.open("rb"))
        print(f"  the log-on server wrote {lines} protocol-log lines", flush=True)
    return results


def log_cost_report(results: list[LogCost]) -> list[str]:
    lines = ["", "Protocol log on vs off (durable inbound, same run, alternating; target < 5 %):", "",
             "| messages | log on msgs/s | log off msgs/s | throughput cost | CPU ms/msg on | CPU ms/msg off "
             "| CPU cost |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.label} | {median(r.rates['on']):.0f} | {median(r.rates['off']):.0f} "
                     f"| {r.cost_percent():+.1f} % | {median(r.cpu_ms['on']):.2f} | {median(r.cpu_ms['off']):.2f} "
                     f"| {r.cpu_percent():+.1f} % |")
    return lines


# --- facts and report ---------------------------------------------------------------------------------

def machine_facts(python: str, workdir: Path) -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = tool_version(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "-T", str(workdir)])
    versions = tool_version([python, "-c",
                             "import importlib.metadata as m, sys; print(sys.version.split()[0], "
                             "*(n + ' ' + m.version(n) for n in ('uvloop',)))"])
    commit = tool_version(["git", "-C", str(REPO), "log", "-1", "--format=%h %cd", "--date=short"])
    dirty = tool_version(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": tool_version(["sh", "-c", "free -h | awk '/Mem:/{print $2}'"]),
        "kernel": platform.release(),
        "os": tool_version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "filesystem": fs,
        "python, uvloop": versions,
        "postfix": tool_version(["postconf", "-d", "-h", "mail_version"]),
        "smtpsvc commit": commit + (" (with local changes)" if dirty else ""),
        "load average at start (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def report(facts: dict[str, str], scenarios: list[Scenario], mem: MemoryResult | None, plan: Plan,
           quick: bool) -> str:
    lines = [f"Inbound benchmark ({'quick' if quick else 'full'}: {plan.reps} repetition(s), "
             f"{SESSIONS} sessions, smtp-source)", ""]
    for key, value in facts.items():
        lines.append(f"- {key}: {value}")
    lines += ["", "| messages | smtpsvc msgs/s | Postfix msgs/s | smtpsvc / Postfix | per-pair ratio | target "
              "| CPU ms/msg smtpsvc | CPU ms/msg Postfix |",
              "|---|---:|---:|---:|---:|---|---:|---:|"]
    for sc in scenarios:
        svc_m, pf_m = median(sc.rates["smtpsvc"]), median(sc.rates["postfix"])
        target = TARGET_RATIO[sc.size]
        verdict = "met" if sc.ratio() >= target else "NOT met"
        lines.append(f"| {sc.label} | {svc_m:.0f} | {pf_m:.0f} | {sc.ratio():.2f}x | {sc.pair_ratio():.2f}x "
                     f"| >= {target:.1f}x: {verdict} | {median(sc.cpu_ms['smtpsvc']):.2f} "
                     f"| {median(sc.cpu_ms['postfix']):.2f} |")
    lines += ["", "Every repetition, msgs/s (smtpsvc / Postfix):", ""]
    for sc in scenarios:
        pairs = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(sc.rates["smtpsvc"], sc.rates["postfix"], strict=True))
        lines.append(f"- {sc.label}: {pairs}")
    if mem is not None:
        verdict = "met" if mem.growth_mb < TARGET_RSS_GROWTH_MB else "NOT met"
        lines += ["",
                  f"{LARGE_COUNT} concurrent 20 MB messages x {mem.rounds} round(s): RSS before "
                  f"{mem.baseline_rss_mb:.1f} MB, peak {max(mem.peak_hwm_mb, mem.peak_sampled_rss_mb):.1f} MB "
                  f"(VmHWM {mem.peak_hwm_mb:.1f}, sampled {mem.peak_sampled_rss_mb:.1f}), after "
                  f"{mem.after_rss_mb:.1f} MB; child processes (cleanup) {mem.children_rss_mb:.1f} MB beside it",
                  f"peak RSS growth: {mem.growth_mb:.1f} MB (target < {TARGET_RSS_GROWTH_MB:.0f} MB: {verdict}); "
                  f"round times: {', '.join(f'{s:.2f} s' for s in mem.seconds)}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (1 repetition, fewer messages)")
    parser.add_argument("--reps", type=int, help="repetitions per scenario (default: 5, quick: 1)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the 20 MB memory test")
    parser.add_argument("--skip-memory", action="store_true", help="only the throughput comparison")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs smtpsvc serve")
    parser.add_argument("--logging-cost", action="store_true",
                        help="only the protocol log's cost: smtpsvc with the log on vs off in the same run")
    parser.add_argument("--plain-tmp", action="store_true",
                        help="as before: the work directory straight in /tmp and Drop's files deleted "
                             "between runs instead of retired (see bench_workdir, clear_dir)")
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.reps is not None:
        plan = Plan(**{**asdict(plan), "reps": max(1, min(args.reps, 50))})
    if os.geteuid() != 0:
        print("bench/inbound.py needs root (the private Postfix's master runs as root)", file=sys.stderr)
        return 2
    if not os.path.exists(SMTP_SOURCE):
        print("smtp-source not found: apt-get install postfix", file=sys.stderr)
        return 2

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = OUT_DIR / f"inbound-{stamp}-smtpsvc.log"
    # Both servers keep their spools under one temporary directory: the same filesystem for both.
    workdir, placement = bench_workdir("smtpsvc-bench-", args.plain_tmp)
    os.chmod(workdir, 0o755)
    started = time.monotonic()
    scenarios: list[Scenario] = []
    mem: MemoryResult | None = None
    log_costs: list[LogCost] = []
    try:
        facts = machine_facts(args.python, workdir)
        facts["work directory"] = f"{workdir} ({placement})"
        facts["file create cost"] = wait_for_cheap_creates(workdir / "retired" / "probe")
        if args.logging_cost:
            args.skip_throughput = args.skip_memory = True
            log_costs = logging_cost(plan, workdir, args.python, log)
        if not args.skip_throughput:
            with PostfixInstance(base_dir=str(workdir)) as pf, \
                    Smtpsvc(workdir / "throughput", free_port(), args.python, log,
                            plain_tmp=args.plain_tmp) as svc:
                print(f"smtpsvc  pid {svc.pid} on 127.0.0.1:{svc.port}: {svc.banner}")
                print(f"Postfix  {pf.dir} on 127.0.0.1:{pf.port}: {pf.banner}")
                scenarios = throughput(plan, svc, pf)
        if not args.skip_memory:
            print(f"\n  memory: {LARGE_COUNT} concurrent 20 MB messages, fresh smtpsvc", flush=True)
            mem = memory(plan, workdir / "memory", free_port(), args.python, log)
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)

    text = report(facts, scenarios, mem, plan, args.quick)
    if log_costs:
        text += "\n".join(log_cost_report(log_costs))
    elapsed = time.monotonic() - started
    text += "\n\nload average at the end (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    print("\n" + text + f"\n\n(benchmark took {elapsed / 60:.1f} min; smtpsvc log: {log})")
    record = {"facts": facts, "quick": args.quick, "plan": asdict(plan), "elapsed_s": elapsed,
              "scenarios": [{"label": sc.label, "size": sc.size, "per_connection": sc.per_connection,
                             "rates": sc.rates, "cpu_ms_per_msg": sc.cpu_ms, "ratio": sc.ratio(),
                             "pair_ratio": sc.pair_ratio()}
                            for sc in scenarios],
              "memory": None if mem is None else {**asdict(mem), "growth_mb": mem.growth_mb},
              "logging_cost": [{"label": r.label, "rates": r.rates, "cpu_ms_per_msg": r.cpu_ms,
                                "cost_percent": r.cost_percent(), "cpu_percent": r.cpu_percent()}
                               for r in log_costs]}
    (OUT_DIR / f"inbound-{stamp}.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
