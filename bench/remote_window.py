"""Remote window benchmark: the manager window administering a `smtpsvc serve` over HTTPS (File → Connect to
Computer…: the remote computer beside this one in the scope tree), and what that costs — the window's loop
lateness, and the engine's throughput with and without
the remote window watching.

    python bench/remote_window.py            # 3 alternating repetitions (a few minutes)
    python bench/remote_window.py --quick    # one repetition, fewer messages

One `smtpsvc serve` (admin server on loopback, a self-signed certificate, one operator) takes Postfix's
smtp-source: 20 sessions, 4 KB messages, one message per connection (every session is an event the window
follows over the event stream and a row in Current Sessions, the node the window shows). Repetitions
alternate "serve alone" and "serve + remote window" (a child process, offscreen, connected before the run);
the ratio is median(with window) / median(alone). Inside the window process a 10 ms timer records how late
each tick comes during the runs: p50 / p99 / max. Targets: ratio ≥ 0.8, p99 < 100 ms.
Writes a JSON record to bench/out/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.common import free_port, lag_probe, median, smtp_source, stop_window, wait_until  # noqa: E402
from bench.embedded import TARGET_P99_MS, TARGET_RATIO, TICK_S, percentile, settle  # noqa: E402
from bench.inbound import Smtpsvc  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
SESSIONS = 20
SIZE = 4096
OPERATOR, PASSWORD = "bench", "bench-password"


def prepare(workdir: Path, admin_port: int) -> str:
    """A certificate and an operators file, and the [server] lines that name them (with admin_listen)."""
    scratch = workdir / "scratch.toml"
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def cli(*args: str, stdin: str = "") -> None:
        subprocess.run([sys.executable, "-m", "app.cli", *args, "--config", str(scratch)], input=stdin.encode(),
                       check=True, capture_output=True, cwd=REPO, env=env, timeout=120)

    cli("cert", "new", "--fqdn", "localhost", "--days", "30")
    cli("operator", "add", OPERATOR, "--password-stdin", stdin=PASSWORD + "\n")
    return (f'admin_listen = "127.0.0.1:{admin_port}"\ntls_certificate = "{workdir / "smtpsvc-cert.pem"}"\n'
            f'tls_key = "{workdir / "smtpsvc-key.pem"}"\noperators_file = "{workdir / "smtpsvc-operators"}"\n')


class RemoteWindow:
    """The window process, connected to ``url``; stopped by a stop file, its lateness ticks read back."""

    def __init__(self, workdir: Path, url: str, log: Path) -> None:
        self.workdir, self.url, self.log = workdir, url, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("stop", "lag.json", "ready"):
            (self.workdir / name).unlink(missing_ok=True)
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(self.workdir / "xdg"),
                   PYTHONPATH=str(REPO))
        argv = [sys.executable, str(Path(__file__).resolve()), "--window-child", str(self.workdir), self.url]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=REPO, env=env)
        if not wait_until(lambda: (self.workdir / "ready").exists() or self.proc.poll() is not None, timeout) \
                or self.proc.poll() is not None:
            raise RuntimeError(f"the remote window did not connect; see {self.log}")

    def stop(self, timeout: float = 60.0) -> list[tuple[float, float]]:
        ticks = stop_window(self.proc, self.workdir, timeout)
        self.proc = None
        return ticks


def window_child(workdir: Path, url: str) -> int:
    """The manager (its own embedded engine idle) with the remote computer added beside it in the scope tree,
    showing that computer's Current Sessions."""
    import asyncio

    import qasync
    from PySide6.QtCore import QSettings

    from app.manager import Manager, application
    from ui.scope import Node

    app = application()
    args = argparse.Namespace(config=workdir / "local.toml", mailroot=workdir / "LocalMailroot",
                              listen=["127.0.0.1:0"], domain="example.test")
    manager = Manager(args, QSettings(str(workdir / "ui.ini"), QSettings.Format.IniFormat))
    manager.messages.show_box = lambda title, text, unexpected: print(f"{title}: {text}", flush=True)
    manager.computers.confirm_certificate = lambda host_port, fingerprint: True  # type: ignore[method-assign]
    if manager.start_engine() is not None:
        return 1
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    computer = loop.run_until_complete(manager.computers.connect(url, OPERATOR, PASSWORD))
    if computer is None:
        return 1
    window = manager.window
    window.resize(1100, 700)
    window.show()
    computer.select_node(Node.SESSIONS)
    probe, ticks = lag_probe(TICK_S)
    (workdir / "ready").write_text("ready")

    async def run() -> None:
        while not (workdir / "stop").exists():
            await asyncio.sleep(0.1)
        await manager.computers.drain()

    try:
        loop.run_until_complete(run())
    finally:
        probe.stop()
        window.close()
        manager.shutdown()
        (workdir / "lag.json").write_text(json.dumps(ticks))
        loop.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, fewer messages")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--window-child", nargs=2, metavar=("DIR", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.window_child:
        return window_child(Path(args.window_child[0]), args.window_child[1])
    reps = args.reps or (1 if args.quick else 3)
    messages = 1000 if args.quick else 3000
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = OUT_DIR / f"remote_window-{stamp}.log"
    rates: dict[str, list[float]] = {"alone": [], "window": []}
    during: list[float] = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="remote-window-") as tmp:
        workdir = Path(tmp)
        admin_port = free_port()
        serve = Smtpsvc(workdir / "serve", free_port(), sys.executable, log, extra_config=prepare(workdir, admin_port))
        (workdir / "serve").mkdir()
        serve.start()
        if not wait_until(lambda: _listening(admin_port), 30):
            raise RuntimeError(f"the admin server did not start; see {log}")
        window = RemoteWindow(workdir / "window", f"https://127.0.0.1:{admin_port}", log)
        try:
            smtp_source(serve.port, messages=200, size=SIZE, sessions=SESSIONS, per_connection=True, timeout=600)
            settle(serve, 200)
            for rep in range(reps):
                for name in (["window", "alone"] if rep % 2 == 0 else ["alone", "window"]):
                    if name == "window":
                        window.start()
                    began = time.time()
                    run = smtp_source(serve.port, messages=messages, size=SIZE, sessions=SESSIONS,
                                      per_connection=True, timeout=900)
                    ended = time.time()
                    settle(serve, messages)
                    if name == "window":
                        during += [late for at, late in window.stop() if began <= at <= ended]
                    rates[name].append(run.rate)
                    print(f"  rep {rep + 1} {name:<6} {run.rate:7.0f} msgs/s", flush=True)
        finally:
            window.stop()
            serve.stop()
    ratio = median(rates["window"]) / median(rates["alone"])
    p50, p99, worst = (percentile(during, 50) * 1000, percentile(during, 99) * 1000,
                       max(during, default=0.0) * 1000)
    lines = [f"Load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}; {reps} repetition(s) of "
             f"{messages} messages of {SIZE // 1024} KB, {SESSIONS} sessions, one message per connection.", "",
             f"serve alone {median(rates['alone']):.0f} msgs/s; with a remote window watching "
             f"{median(rates['window']):.0f} msgs/s: {ratio:.2f}x (target ≥ {TARGET_RATIO}x: "
             f"{'met' if ratio >= TARGET_RATIO else 'not met'}).",
             f"Remote window loop lateness during the runs ({len(during):,} ticks of a 10 ms timer): p50 {p50:.1f} ms, "
             f"p99 {p99:.1f} ms (target < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'not met'}), "
             f"max {worst:.0f} ms."]
    record = {"reps": reps, "messages": messages, "load_start": load, "rates": rates, "ratio": ratio,
              "lag_ms": {"p50": p50, "p99": p99, "max": worst, "ticks": len(during)},
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    (OUT_DIR / f"remote_window-{stamp}.json").write_text(json.dumps(record, indent=2))
    print()
    print("\n".join(lines))
    return 0


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
