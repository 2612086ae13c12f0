"""Where inbound time goes: ``smtpsvc serve`` under smtp-source, with CPU per thread and a py-spy profile of the loop.

    python bench/profile_inbound.py                      # 4 KB, one message per connection, 20 sessions
    python bench/profile_inbound.py --size 102400 --repo /path/to/other/checkout

Reports msgs/s, CPU per message for the whole process and its child processes, and for each thread group
(the event-loop thread, the commit threads, the cleanup process, the rest), and, when py-spy is installed,
the functions the loop thread spends its samples in (self time and inclusive), from
``py-spy record --format raw``. The numbers move with the
machine's load: compare checkouts in one sitting, and read the ratios rather than the absolutes.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    BENCH_DOMAIN,
    bench_workdir,
    children_of,
    count_files,
    free_port,
    smtp_source,
    wait_for_banner,
)

CONFIG = """\
[server]
fqdn = "mx.{domain}"
max_message_size_kb = 40960
max_session_size_kb = 409600
"""
TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """thread id -> (name, CPU seconds) from /proc, for the process and its child processes' threads (a
    child's threads are named ``child:NAME``)."""
    found: dict[int, tuple[str, float]] = {}
    for owner in [pid, *children_of(pid)]:
        for task in Path(f"/proc/{owner}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(task.name)] = (name if owner == pid else f"child:{name}",
                                     (int(fields[11]) + int(fields[12])) / TICKS)
    return found


def group_of(tid: int, pid: int, name: str) -> str:
    if name.startswith("child:"):
        return "cleanup process (commit threads, answers)"
    if tid == pid:
        return "event loop (main thread)"
    if "commit" in name:
        return "commit threads (fsync, rename)"
    if name.startswith("python"):  # Python 3.11 gives its threads no OS name: the commit threads, tracking, logs
        return "worker threads (commit: write, fsync, rename; tracking index; protocol log)"
    return f"other threads ({name.split('_')[0]})"


def cpu_by_group(pid: int, before: dict[int, tuple[str, float]],
                 after: dict[int, tuple[str, float]]) -> dict[str, float]:
    groups: dict[str, float] = collections.defaultdict(float)
    for tid, (name, seconds) in after.items():
        groups[group_of(tid, pid, name)] += seconds - before.get(tid, (name, 0.0))[1]
    return dict(groups)


def _function(frame: str) -> str:
    """``name (/path/to/file.py:12)`` -> ``name (file.py)``: samples summed over a function's lines."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].rsplit(':', 1)[0].rstrip(')')})" if where else name


def summarize(raw: Path, top: int) -> list[str]:
    """The loop thread's top functions from py-spy's raw (collapsed) output: self and inclusive sample shares."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack.startswith("thread ("):
            continue  # "thread (TID): NAME;frame;frame..."
        count = int(count_text)
        name = stack.split(";", 1)[0].partition("): ")[2]
        threads[name.rstrip("0123456789_-").rstrip(" (")] += count
        if name != "MainThread":
            continue
        frames = [_function(frame) for frame in stack.split(";")[1:]]
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["(no samples of the main thread)"]
    every = sum(threads.values())
    lines = ["busy samples by thread (name without its number):"]
    lines += [f"  {100 * n / every:5.1f} %  {name}" for name, n in threads.most_common(8)]
    lines += ["", f"loop-thread samples: {total}", "", "self time:"]
    lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in inclusive.most_common(top)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose smtpsvc runs")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--many-per-connection", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="CPU per thread only (py-spy slows the loop)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    messages = max(100, min(args.messages, 100_000))

    workdir, _placement = bench_workdir("smtpsvc-profile-")
    config = workdir / "smtpsvc.toml"
    config.write_text(CONFIG.format(domain=BENCH_DOMAIN))
    mailroot = workdir / "mailroot"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(args.repo)}
    log = (workdir / "serve.log").open("wb")
    serve = subprocess.Popen([args.python, "-m", "app.cli", "serve", "--mailroot", str(mailroot), "--listen",
                              f"127.0.0.1:{port}", "--domain", BENCH_DOMAIN, "--config", str(config)],
                             cwd=args.repo, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    spy: subprocess.Popen[bytes] | None = None
    try:
        wait_for_banner("127.0.0.1", port, 60, lambda: serve.poll() is None)
        per_connection = not args.many_per_connection
        smtp_source(port, messages=min(500, messages), size=args.size, sessions=args.sessions,
                    per_connection=per_connection, timeout=600)  # warm-up
        raw = workdir / "profile.raw"
        py_spy = shutil.which("py-spy") or str(Path(args.python).parent / "py-spy")
        if not args.no_profile and Path(py_spy).exists():
            spy = subprocess.Popen([py_spy, "record", "-p", str(serve.pid), "-r", "250", "-f", "raw", "-o", str(raw),
                                    "--threads", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # py-spy attaches
        before = thread_cpu(serve.pid)
        run = smtp_source(port, messages=messages, size=args.size, sessions=args.sessions,
                          per_connection=per_connection, timeout=900)
        after = thread_cpu(serve.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        groups = cpu_by_group(serve.pid, before, after)
        total = sum(groups.values())
        print(f"checkout {args.repo}: {messages} x {args.size} B, {args.sessions} sessions, "
              f"{'1 msg' if per_connection else 'many msgs'}/connection{'' if spy is None else ', under py-spy'}")
        print(f"  {messages / run.seconds:.0f} msgs/s; CPU {1000 * total / messages:.2f} ms/msg "
              f"({total / run.seconds:.2f} cores)")
        for name, seconds in sorted(groups.items(), key=lambda item: -item[1]):
            print(f"    {1000 * seconds / messages:.3f} ms/msg  {seconds / run.seconds:.2f} cores  {name}")
        print(f"    {run.client_cpu_ms:.3f} ms/msg  {run.client_cpu / run.seconds:.2f} cores  smtp-source (the client)")
        print(f"  files in Drop: {count_files(mailroot / 'Drop')}")
        if spy is not None and raw.exists():
            print("\n".join("  " + line for line in summarize(raw, args.top)))
        print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait()
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
