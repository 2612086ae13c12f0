"""Embedded engine benchmark: the manager window with its engine (``smtpsvc``) against ``smtpsvc serve``, and
how late the window's own loop runs while the engine works.

    python bench/embedded.py            # 3 alternating repetitions per scenario (a few minutes)
    python bench/embedded.py --quick    # one repetition, fewer messages

Both servers are child processes of this script with the same configuration (the bench.test domain is
local: every message goes to Drop, durably): ``smtpsvc serve``, and the manager window opened offscreen
(``QT_QPA_PLATFORM=offscreen``) on the Current Sessions node — its engine on its own thread and loop, the
window refreshing the session list every second and following session events. Postfix's smtp-source sends
with 20 sessions, 4 KB messages, one message per connection and many per connection; after a warm-up of
each server, repetitions alternate (the order flips every repetition). msgs/s is messages / wall time of
the smtp-source run; the ratio is median(window) / median(serve).

Loop lag: inside the window process a 10 ms timer records how late each tick comes; the lateness of the
ticks during the smtp-source runs gives p50 / p99 / max. Targets: ratio ≥ 0.8, p99 < 100 ms.
Writes a JSON record to bench/out/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    BENCH_DOMAIN,
    Child,
    clear_dir,
    files_in,
    free_port,
    lag_probe,
    median,
    smtp_source,
    stop_window,
    wait_for_banner,
    wait_until,
)
from bench.inbound import SERVE_CONFIG, Smtpsvc  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
SESSIONS = 20
SIZE = 4096
TICK_S = 0.010
TARGET_RATIO = 0.8
TARGET_P99_MS = 100.0


class Window(Child):
    """The manager window (engine embedded) as a child process; stopped by a stop file, lag read back."""

    def __init__(self, workdir: Path, port: int, log: Path, node: str = "sessions") -> None:
        self.node = node  # the scope node the window shows during the runs
        self.workdir = workdir
        self.mailroot = workdir / "mailroot"
        self.config = workdir / "smtpsvc.toml"
        self.port = port
        self.log = log
        self.stop_file = workdir / "stop"
        self.lag_file = workdir / "lag.json"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def drop(self) -> Path:
        return self.mailroot / "Drop"

    def dropped(self) -> int:
        return files_in(self.drop)

    def start(self, timeout: float = 60.0) -> Window:
        self.mailroot.mkdir(parents=True, exist_ok=True)
        self.config.write_text(SERVE_CONFIG.format(domain=BENCH_DOMAIN))
        self.stop_file.unlink(missing_ok=True)
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        argv = [sys.executable, str(Path(__file__).resolve()), "--window-child", str(self.workdir), str(self.port),
                "--node", self.node]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=REPO, env=env)
        try:
            wait_for_banner("127.0.0.1", self.port, timeout, alive=self.alive)
        except BaseException:
            self.stop()
            raise RuntimeError(f"the window did not start; see {self.log}") from None
        return self

    def stop(self, timeout: float = 60.0) -> list[tuple[float, float]]:
        """Close the window (its engine stops); returns the ticks as (wall time, lateness in seconds)."""
        ticks = stop_window(self.proc, self.workdir, timeout)
        self.proc = None
        return ticks


def window_child(workdir: Path, port: int, node: str = "sessions") -> int:
    """The child: the manager as `smtpsvc` runs it, plus the 10 ms lateness probe."""
    import asyncio

    import qasync
    from PySide6.QtCore import QSettings

    from app.manager import Manager, application
    from ui.scope import Node

    if os.environ.get("EMBEDDED_SWITCH_INTERVAL"):  # experiments: the GIL switch interval of the window process
        sys.setswitchinterval(float(os.environ["EMBEDDED_SWITCH_INTERVAL"]))
    app = application()
    args = argparse.Namespace(config=workdir / "smtpsvc.toml", mailroot=workdir / "mailroot",
                              listen=[f"127.0.0.1:{port}"], domain=BENCH_DOMAIN)
    manager = Manager(args, QSettings(str(workdir / "ui.ini"), QSettings.Format.IniFormat))
    error = manager.start_engine()
    if error is not None:
        print(f"engine did not start: {error}", flush=True)
        return 1
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = manager.window
    window.resize(1100, 700)
    window.show()
    window.select_node(Node(node))
    probe, ticks = lag_probe(TICK_S)
    stop_file = workdir / "stop"

    async def run() -> None:
        while not stop_file.exists():
            await asyncio.sleep(0.1)

    try:
        loop.run_until_complete(run())
    finally:
        probe.stop()
        window.close()
        manager.shutdown()
        (workdir / "lag.json").write_text(json.dumps(ticks))
        loop.close()  # (its executor's threads are QThreads: stop them before the interpreter goes)
    return 0


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def settle(server: Smtpsvc | Window, expected: int, timeout: float = 300.0) -> None:
    """Wait until ``expected`` messages reached Drop, then empty it for the next run."""
    if not wait_until(lambda: server.dropped() >= expected, timeout):
        raise RuntimeError(f"only {server.dropped()} of {expected} messages reached Drop")
    clear_dir(server.drop)
    subprocess.run(["sync"], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, fewer messages")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per scenario (default 3)")
    parser.add_argument("--window-child", nargs=2, metavar=("DIR", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--node", default="sessions", help=argparse.SUPPRESS)
    parser.add_argument("--also-node", metavar="NODE", default=None,
                        help="a second window showing this scope node (e.g. performance) in the same run: the "
                             "cost of that node is its rate against the first window's")
    args = parser.parse_args(argv)
    if args.window_child:
        return window_child(Path(args.window_child[0]), int(args.window_child[1]), args.node)
    reps = args.reps or (1 if args.quick else 3)
    messages = 1000 if args.quick else 4000
    warmup = 200 if args.quick else 500
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = OUT_DIR / f"embedded-{stamp}.log"
    scenarios = {True: "4 KB, 1 msg/connection", False: "4 KB, many msgs/connection"}
    names = ["window", "serve", *([f"window-{args.also_node}"] if args.also_node else [])]
    rates: dict[bool, dict[str, list[float]]] = {mode: {name: [] for name in names} for mode in scenarios}
    windows: list[tuple[float, float]] = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="embedded-") as tmp:
        serve_dir, window_dir = Path(tmp) / "serve", Path(tmp) / "window"
        serve_dir.mkdir()
        window_dir.mkdir()
        serve = Smtpsvc(serve_dir, free_port(), sys.executable, log).start()
        window = Window(window_dir, free_port(), log).start()
        servers: dict[str, Smtpsvc | Window] = {"serve": serve, "window": window}
        if args.also_node:
            other_dir = Path(tmp) / "window-other"
            other_dir.mkdir()
            servers[f"window-{args.also_node}"] = Window(other_dir, free_port(), log, args.also_node).start()
        ticks: list[tuple[float, float]] = []
        try:
            for name, server in servers.items():
                for mode in scenarios:
                    smtp_source(server.port, messages=warmup, size=SIZE, sessions=SESSIONS, per_connection=mode,
                                timeout=600)
                    settle(server, warmup)
                print(f"warmed up {name}", flush=True)
            for rep in range(reps):
                order = names if rep % 2 == 0 else names[::-1]
                for mode, label in scenarios.items():
                    for name in order:
                        server = servers[name]
                        began = time.time()
                        run = smtp_source(server.port, messages=messages, size=SIZE, sessions=SESSIONS,
                                          per_connection=mode, timeout=900)
                        if name == "window":
                            windows.append((began, time.time()))
                        rates[mode][name].append(run.rate)
                        print(f"  rep {rep + 1} {label:<28} {name:<6} {run.rate:7.0f} msgs/s", flush=True)
                        settle(server, messages)
        finally:
            ticks = window.stop()
            serve.stop()
            for name, other in servers.items():
                if name.startswith("window-") and isinstance(other, Window):
                    other.stop()
    during = [late for at, late in ticks if any(start <= at <= end for start, end in windows)]
    lines = [f"Load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}; {reps} repetition(s), "
             f"{messages} messages of {SIZE // 1024} KB per run, {SESSIONS} sessions.", "",
             "| scenario | window msgs/s | serve msgs/s | window / serve | target |", "|---|---:|---:|---:|---|"]
    record: dict[str, object] = {"reps": reps, "messages": messages, "load_start": load, "scenarios": {}}
    for mode, label in scenarios.items():
        window_rate, serve_rate = median(rates[mode]["window"]), median(rates[mode]["serve"])
        ratio = window_rate / serve_rate
        lines.append(f"| {label} | {window_rate:.0f} | {serve_rate:.0f} | {ratio:.2f}x | ≥ {TARGET_RATIO}x: "
                     f"{'met' if ratio >= TARGET_RATIO else 'not met'} |")
        record["scenarios"][label] = rates[mode]  # type: ignore[index]
    if args.also_node:
        other = f"window-{args.also_node}"
        lines += ["", f"| scenario | window on Current Sessions msgs/s | window on {args.also_node} msgs/s | cost of "
                      f"the {args.also_node} node (per-pair median) |", "|---|---:|---:|---:|"]
        for mode, label in scenarios.items():
            pairs = [b / a for a, b in zip(rates[mode]["window"], rates[mode][other], strict=True)]
            lines.append(f"| {label} | {median(rates[mode]['window']):.0f} | {median(rates[mode][other]):.0f} "
                         f"| {(1 - median(pairs)) * 100:+.1f} % |")
    p50, p99 = percentile(during, 50) * 1000, percentile(during, 99) * 1000
    worst = max(during, default=0.0) * 1000
    lines += ["", f"Window loop lateness during the runs ({len(during):,} ticks of a 10 ms timer): p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'not met'}), "
              f"max {worst:.0f} ms."]
    record["lag_ms"] = {"p50": p50, "p99": p99, "max": worst, "ticks": len(during)}
    record["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    (OUT_DIR / f"embedded-{stamp}.json").write_text(json.dumps(record, indent=2))
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
