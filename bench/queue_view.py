"""Queue view benchmark: 100,000 queued messages — engine recovery, the Queue pane's first paint, full load,
sort, filter, scrolling, the GUI loop's lag meanwhile, and the window process's memory.

    python bench/queue_view.py                  # 100,000 messages (writing them takes a minute or so)
    python bench/queue_view.py --count 10000    # a quick run
    python bench/queue_view.py --screenshot resources/screenshot-queue.png --count 300

The queue is written straight into a temporary Mailroot (Queue files and state records as the engine writes
them; see ``fill_queue``). Then, each in a fresh process (so that memory figures are the process's own):

1. recovery: a VirtualServer starts on that Mailroot (``start()``: the queue is read back, delivery is set up,
   the listener bound); the time of ``start()`` is the recovery time;
2. the window: the manager (engine embedded, as ``smtpsvc`` runs it) opens offscreen, the Queue node is
   selected, and the child measures: first paint (selection → the list's first paint with rows), full load
   (every message in the model), the longest GUI loop stall meanwhile (a 10 ms timer's lateness), sort by
   Age / Sender / Next Retry, filter by domain, text search, scroll to the end, chart redraw (each: the call
   plus the repaint that follows), and VmRSS / VmHWM of the process.

Every message's next attempt lies in the future, so the engine leaves the queue alone during the run.
Targets: recovery < 5 s, first paint < 1 s, RSS ≤ 250 MB (issue #15). Figures print as a Markdown table; a JSON record
goes to bench/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from engine.store.envelope import RecipientState, StateRecord, envelope_lines  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
TARGETS = {"recovery_s": 5.0, "first_paint_s": 1.0, "rss_mb": 250.0}
HEADLESS_TARGETS = {"smtp_s": 1.0, "recovered_s": 2.0, "rss_mb": 120.0}
UNREACHABLE = "[127.0.0.1]:1"  # nothing is due anyway; if something were, it would only be deferred

BUSY = ("contoso.example", "fabrikam.example", "northwind.example", "adventure-works.example",
        "tailspin.example", "wingtip.example", "litware.example", "proseware.example")
ERRORS = (
    "451 4.7.1 Greylisted, please try again later",
    "421 4.7.0 mx1.contoso.example Service not available, closing transmission channel",
    "450 4.2.1 <{rcpt}>: Recipient address rejected: mailbox busy, try again later",
    "452 4.2.2 <{rcpt}>: Mailbox full",
    "Connection refused by 192.0.2.25:25 ([Errno 111] Connect call failed)",
    "Timed out after 300 s waiting for the greeting of mx.{domain}",
    "451 4.3.0 Temporary lookup failure for {domain}: SERVFAIL",
)
SUBJECTS = ("Quarterly report", "Invoice {n}", "Re: Meeting on Thursday", "Order confirmation #{n}",
            "Your password will expire", "Weekly newsletter", "Fwd: Project plan", "Build {n} failed",
            "Welcome aboard", "Shipping notice {n}")


def domain_for(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return rng.choices(BUSY, weights=(30, 22, 15, 10, 8, 6, 5, 4))[0]
    return f"host{rng.randrange(400)}.example"


def fill_queue(mailroot: Path, count: int, *, now: float | None = None, seed: int = 1, due: int = 0,
               frozen_share: float = 0.08, size: int = 0, wait: float = 60.0) -> list[str]:
    """Write ``count`` queued messages; the first ``due`` of them are due now, the others ``wait`` seconds or
    later (up to 4 h). Returns their ids, oldest first."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    for name in ("Badmail", "Drop", "Pickup", "Queue", "SortTemp"):
        (mailroot / name).mkdir(parents=True, exist_ok=True)
    queue = mailroot / "Queue"
    ages = sorted((rng.expovariate(1 / 14_400) for _ in range(count)), reverse=True)  # mean age 4 h
    ids = []
    for number, age in enumerate(ages):
        queue_id = f"{int((now - age) * 1e9):X}{number:08X}"
        ids.append(queue_id)
        many = rng.random() < 0.06
        domains = [domain_for(rng) for _ in range(rng.randint(2, 4) if many else 1)]
        recipients = [f"{rng.choice(('anna', 'ben', 'chen', 'dana', 'eli', 'fay'))}.{number}@{d}" for d in domains]
        sender = f"{rng.choice(('billing', 'news', 'alerts', 'hr', 'sales', 'ops'))}@example.test"
        subject = rng.choice(SUBJECTS).format(n=number)
        body = (f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
                f"Message-ID: <{queue_id}@example.test>\r\n\r\nHello,\r\n\r\nmessage {number}.\r\n")
        if len(body) < size:  # pad to about ``size`` bytes with 76-character lines
            pad = size - len(body)
            body += ("x" * 74 + "\r\n") * (pad // 76)
        arrived = now - age
        attempts = 0 if age < 900 else min(8, 1 + int(age // 3600))  # the first attempt at once, then hourly
        first = recipients[0]
        error = rng.choice(ERRORS).format(rcpt=first, domain=first.rpartition("@")[2]) if attempts else ""
        record = StateRecord(
            queue_id, sender,
            [RecipientState(r, last_error=error, attempts=attempts, enhanced=error[4:9] if error[:1] == "4" else "")
             for r in recipients],
            arrived, attempts=attempts, last_attempt=now - rng.uniform(30, 900) if attempts else 0.0,
            next_attempt=0.0 if number < due else now + rng.uniform(wait, 4 * 3600),
            frozen=rng.random() < frozen_share, last_error=error)
        path = queue / f"{queue_id}.eml"
        path.write_bytes(envelope_lines(sender, recipients) + body.encode())
        path.with_suffix(".env").write_bytes(record.to_bytes())
        os.utime(path, (arrived, arrived))
    return ids


# --- the run -------------------------------------------------------------------------------------------

def write_config(workdir: Path, mailroot: Path) -> Path:
    from engine.conf.config import Config, DomainConfig, ServerConfig
    from engine.conf.config_file import save_config

    # No delay notice or NDR falls due during a run (some messages are two days old): the queue stays put.
    config = Config(server=ServerConfig(listen=("127.0.0.1:0",), fqdn="mx.example.test", smart_host=UNREACHABLE,
                                        delay_notification_min=7 * 1440, expiration_min=14 * 1440),
                    domains=(DomainConfig("example.test", "default"),), mailroot=str(mailroot))
    path = workdir / "smtpsvc.toml"
    save_config(path, config)
    return path


def child(mode: str, config: Path, *extra: str) -> dict[str, object]:
    """Run this script's ``--child MODE`` in a fresh interpreter; its last stdout line is a JSON record."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode, "--config", str(config),
                           *extra], capture_output=True, text=True, env=env, cwd=REPO, timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def recover_child(config_path: Path) -> dict[str, object]:
    from engine.conf.config_file import load_config
    from engine.server import VirtualServer

    async def run() -> dict[str, object]:
        server = VirtualServer(load_config(config_path))
        started = time.perf_counter()
        await server.start()
        serving = time.perf_counter() - started
        await server.wait_recovered()  # the queue is read back in the background
        seconds = time.perf_counter() - started
        page = await server.list_queue(0, 300, "age", False)
        listing = time.perf_counter()
        await server.list_queue(0, 1 << 31, "age", False)
        whole = time.perf_counter() - listing
        total = page.total
        await server.stop()
        return {"recovery_s": seconds, "serving_s": serving, "queued": total, "list_all_s": whole,
                "engine_rss_mb": rss_mb("VmHWM")}

    return asyncio.run(run())


def headless(workdir: Path, mailroot: Path, timeout: float = 300.0) -> dict[str, object]:
    """``smtpsvc serve`` on the Mailroot, as a process: seconds from its start to the SMTP greeting, to the
    control socket's first answer, to the whole queue recovered (the ``state`` op's ``recovering`` false),
    and its memory then."""
    import signal
    import socket

    from bench.common import cpu_seconds_tree, free_port, proc_status_kb, read_banner, spawn_serve
    from engine.admin.control import request_sync, socket_path
    from engine.errors import EngineError

    config = write_config(workdir, mailroot)
    port = free_port()
    control = socket_path(mailroot)
    started = time.perf_counter()
    proc = spawn_serve(sys.executable, mailroot, port, "example.test", config, workdir / "serve.log")
    result: dict[str, object] = {}
    try:
        deadline = started + timeout
        while time.perf_counter() < deadline and not {"recovered_s", "smtp_s"} <= result.keys():
            if proc.poll() is not None:
                raise RuntimeError(f"smtpsvc serve exited {proc.returncode}; see {workdir / 'serve.log'}")
            now = time.perf_counter() - started
            if "smtp_s" not in result:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.05):
                    if read_banner("127.0.0.1", port, timeout=5.0).startswith("220"):
                        result["smtp_s"] = now
            try:
                state = request_sync(control, "state", timeout=5.0) if control.exists() else None
            except EngineError:
                state = None
            if state is not None:
                result.setdefault("control_s", now)
                if not state.get("recovering", False) and "recovered_s" not in result:
                    result["recovered_s"] = time.perf_counter() - started
                    result["cpu_s"] = cpu_seconds_tree(proc.pid)  # the machine is shared: CPU is steadier
                elif "partial_listing" not in result:  # once: each listing sorts the whole queue
                    result["partial_listing"] = bool(
                        request_sync(control, "queue.list", limit=1).get("recovering", False))
            # 10 ms until it answers; then 50 ms (each look costs the engine a little CPU, counted in cpu_s)
            time.sleep(0.01 if "control_s" not in result else 0.05)
        page = request_sync(control, "queue.list", limit=1, timeout=60.0)
        result["queued"] = page["total"]
        result["engine_rss_mb"] = proc_status_kb(proc.pid, "VmRSS") / 1024
        result["engine_hwm_mb"] = proc_status_kb(proc.pid, "VmHWM") / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return result


def window_child(config_path: Path, screenshot: str) -> dict[str, object]:
    import argparse as _argparse

    import qasync
    from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from app.manager import Manager, application
    from engine.events import QueueRecovery
    from ui.models.queue import COLUMN
    from ui.scope import Node

    app = application()
    settings_dir = Path(tempfile.mkdtemp(prefix="queue-view-ui-"))
    args = _argparse.Namespace(config=config_path, mailroot=None, listen=None, domain=None)
    before = rss_mb()
    started = time.perf_counter()
    manager = Manager(args, QSettings(str(settings_dir / "ui.ini"), QSettings.Format.IniFormat))
    window_made = rss_mb()  # the window's widgets, the engine not started
    error = manager.start_engine()
    if error is not None:
        raise RuntimeError(str(error))
    engine_start = time.perf_counter() - started
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = manager.window
    window.resize(1280, 800)
    window.show()
    pane, model = window.queue_pane, window.queue_model
    result: dict[str, object] = {"engine_start_s": engine_start, "rss_before_mb": before, "rss_window_mb": window_made,
                                 "rss_engine_mb": rss_mb()}
    gaps: list[tuple[float, float]] = []
    last = [time.perf_counter()]
    recovered: list[float] = []

    def follow(batch: list[object]) -> None:
        if not recovered and any(isinstance(event, QueueRecovery) and event.finished for event in batch):
            recovered.append(time.perf_counter())

    manager.bridge.events.connect(follow)

    def beat() -> None:
        now = time.perf_counter()
        gaps.append((now, now - last[0]))
        last[0] = now

    heart = QTimer()
    heart.setTimerType(Qt.TimerType.PreciseTimer)
    heart.timeout.connect(beat)
    heart.start(10)
    painted: list[float] = []

    class PaintWatch(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint and model.rowCount() > 0 and not painted:
                painted.append(time.perf_counter())
            return False

    watch = PaintWatch()
    pane.detail.viewport().installEventFilter(watch)

    async def settle() -> None:
        await asyncio.sleep(0)
        QApplication.processEvents()

    async def timed(name: str, action: object) -> None:
        begin = time.perf_counter()
        action()  # type: ignore[operator]
        pane.detail.viewport().repaint()
        await settle()
        result[name] = time.perf_counter() - begin
        result[f"rss_after_{name.removesuffix('_s')}_mb"] = rss_mb()
        result[f"hwm_after_{name.removesuffix('_s')}_mb"] = rss_mb("VmHWM")

    async def run() -> None:
        total = int(result.get("expected", 0))
        await asyncio.sleep(0.5)  # the window is up and idle
        waited = time.perf_counter() + 120
        while not recovered and time.perf_counter() < waited:  # the engine's queue is read back: what the pane
            await asyncio.sleep(0.01)                            # adds to it is measured apart
        await asyncio.sleep(0.2)  # (the engine lets go of what it read with)
        result["rss_recovered_mb"] = rss_mb()
        result["hwm_recovered_mb"] = rss_mb("VmHWM")
        t0 = time.perf_counter()
        window.select_node(Node.QUEUE)
        while not painted:
            await asyncio.sleep(0.001)
        result["first_paint_s"] = painted[0] - t0
        result["first_paint_rows"] = model.rowCount()
        while model.total < total or window.queue_feed.loading:
            await asyncio.sleep(0.005)
        result["full_load_s"] = time.perf_counter() - t0
        await settle()
        lag = [gap - 0.010 for at, gap in gaps if at >= t0]
        result["load_max_stall_ms"] = max(lag) * 1000 if lag else 0.0
        result["rows"] = model.rowCount()
        result["rss_loaded_mb"] = rss_mb()
        result["hwm_loaded_mb"] = rss_mb("VmHWM")
        if screenshot:  # the default order (oldest first), a deferred message selected, subjects in
            deferred = next(queue_id for queue_id in model.shown_ids() if model.state_of(queue_id) == "deferred")
            window.actions_.show_preview.setChecked(True)  # the preview pane beside the list
            pane.select_key(deferred)
            pane.detail.scrollTo(model.index(model.row_of(deferred), 0))
            pane.refresh_chart(force=True)
            await asyncio.sleep(0.5)  # the rows painted ask for their subjects
            shown = pane.detail.viewport().rect()
            top, bottom = (pane.detail.indexAt(corner).row() for corner in (shown.topLeft(), shown.bottomLeft()))
            while any(model.needs_subject(key) for row in range(max(0, top), (bottom if bottom >= 0 else top) + 1)
                      if (key := model.id_at(row)) is not None):
                await asyncio.sleep(0.05)
            window.grab().save(screenshot)
        await timed("sort_age_s", lambda: pane.detail.sortByColumn(COLUMN["Age"], Qt.SortOrder.AscendingOrder))
        await timed("sort_sender_s", lambda: pane.detail.sortByColumn(COLUMN["Sender"], Qt.SortOrder.AscendingOrder))
        await timed("sort_next_retry_s", lambda: pane.detail.sortByColumn(COLUMN["Next Retry"],
                                                                          Qt.SortOrder.AscendingOrder))
        await timed("filter_domain_s", lambda: pane.filter_domain("contoso.example"))
        result["filter_domain_rows"] = model.rowCount()
        pane.clear_filter()
        await settle()
        def search() -> None:
            pane.search.setText("greylisted")
            pane.apply_filter()
        await timed("filter_text_s", search)
        result["filter_text_rows"] = model.rowCount()
        await timed("clear_filter_s", pane.clear_filter)
        await timed("scroll_end_s", pane.detail.scrollToBottom)
        await timed("chart_s", lambda: pane.refresh_chart(force=True))
        await asyncio.sleep(1.0)  # ticks and subjects go on: idle lag
        idle = [gap - 0.010 for at, gap in gaps if at >= time.perf_counter() - 0.9]
        result["idle_p99_ms"] = percentile(idle, 99) * 1000
        result["rss_end_mb"] = rss_mb()
        result["hwm_mb"] = rss_mb("VmHWM")

    try:
        result["expected"] = int(os.environ.get("QUEUE_VIEW_EXPECTED", "0"))
        loop.run_until_complete(asyncio.wait_for(run(), 900))
    finally:
        heart.stop()
        window.close()
        manager.shutdown()
        loop.close()  # (its executor's threads are QThreads: stop them before the interpreter goes)
        shutil.rmtree(settings_dir, ignore_errors=True)
    return result


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def report(count: int, fill_s: float, recovery: dict[str, object], window: dict[str, object]) -> str:
    def s(key: str, source: dict[str, object] = window) -> str:
        value = source.get(key)
        return f"{value:.2f} s" if isinstance(value, float) else "—"

    rows = [
        ("engine recovery (start with the queue)", s("recovery_s", recovery), "< 5 s",
         "met" if float(recovery["recovery_s"]) < TARGETS["recovery_s"] else "not met"),  # type: ignore[arg-type]
        ("engine start inside the window process", s("engine_start_s"), "", ""),
        ("Queue pane first paint", s("first_paint_s") + f" ({window['first_paint_rows']} rows)", "< 1 s",
         "met" if float(window["first_paint_s"]) < TARGETS["first_paint_s"] else "not met"),  # type: ignore[arg-type]
        ("every message in the model", s("full_load_s"), "", ""),
        ("longest GUI stall while loading", f"{float(window['load_max_stall_ms']):.0f} ms", "", ""),  # type: ignore[arg-type]
        ("sort by Age / Sender / Next Retry", f"{s('sort_age_s')} / {s('sort_sender_s')} / "
         f"{s('sort_next_retry_s')}", "", ""),
        ("filter by domain", f"{s('filter_domain_s')} ({window['filter_domain_rows']:,} rows)", "", ""),
        ("text search", f"{s('filter_text_s')} ({window['filter_text_rows']:,} rows)", "", ""),
        ("clear the filter", s("clear_filter_s"), "", ""),
        ("scroll to the end", s("scroll_end_s"), "", ""),
        ("queue-shape chart", s("chart_s"), "", ""),
        ("GUI loop lag p99 when idle (ticks, subjects)", f"{float(window['idle_p99_ms']):.1f} ms", "", ""),  # type: ignore[arg-type]
        ("RSS of the window process, loaded", f"{float(window['rss_loaded_mb']):.0f} MB (peak "  # type: ignore[arg-type]
         f"{float(window['hwm_mb']):.0f} MB)", f"≤ {TARGETS['rss_mb']:.0f} MB",  # type: ignore[arg-type]
         "met" if float(window["hwm_mb"]) <= TARGETS["rss_mb"] else "not met"),  # type: ignore[arg-type]
        ("… of which: Python + Qt + the window, the engine with its recovered queue, the Queue pane",
         f"{float(window['rss_window_mb']):.0f} + "  # type: ignore[arg-type]
         f"{float(window['rss_recovered_mb']) - float(window['rss_window_mb']):.0f} + "  # type: ignore[arg-type]
         f"{float(window['rss_loaded_mb']) - float(window['rss_recovered_mb']):.0f} MB", "", ""),  # type: ignore[arg-type]
    ]
    lines = [f"{count:,} queued messages (written in {fill_s:.1f} s)", "",
             "| measure | figure | target | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def headless_report(count: int, served: dict[str, object]) -> str:
    def row(name: str, key: str, target: float, unit: str = "s") -> str:
        value = float(served.get(key, float("nan")))  # type: ignore[arg-type]
        return f"| {name} | {value:.2f} {unit} | ≤ {target:g} {unit} | {'met' if value <= target else 'NOT met'} |"

    return "\n".join([
        f"{count:,} queued messages, `smtpsvc serve` (headless)", "",
        "| measure | figure | target | |", "|---|---|---|---|",
        row("SMTP greeting after the process started", "smtp_s", HEADLESS_TARGETS["smtp_s"]),
        row("control socket answers", "control_s", HEADLESS_TARGETS["smtp_s"]),
        row("whole queue recovered", "recovered_s", HEADLESS_TARGETS["recovered_s"]),
        f"| … CPU time of the process until then (user + system) | {float(served.get('cpu_s', 0.0)):.2f} s"  # type: ignore[arg-type]
        " | | |",
        f"| a queue list during recovery says partial | {served.get('partial_listing', '—')} | | |",
        row("engine RSS, queue recovered", "engine_rss_mb", HEADLESS_TARGETS["rss_mb"], "MB"),
        f"| messages listed | {served.get('queued')} | {count} | |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="queued messages (default 100,000)")
    parser.add_argument("--screenshot", default="", help="save the window with the Queue pane to this PNG")
    parser.add_argument("--keep", type=Path, default=None, help="use (and keep) this work directory")
    parser.add_argument("--size", type=int, default=2048, help="bytes per message (default 2048)")
    parser.add_argument("--headless", action="store_true",
                        help="only `smtpsvc serve`: time to SMTP, to the control socket, to the queue recovered; RSS")
    parser.add_argument("--wait", type=float, default=None,
                        help="seconds until the first next attempt of a new queue (default 1800, 60 for the window):"
                             " longer for a --keep queue reused over hours (a due message is delivered meanwhile)")
    parser.add_argument("--indexed-only", action="store_true",
                        help="--headless: two starts with the index, none from the files (a reused --keep queue)")
    parser.add_argument("--child", choices=("recover", "window"), help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "recover":
        print(json.dumps(recover_child(args.config)))
        return 0
    if args.child == "window":
        print(json.dumps(window_child(args.config, args.screenshot)))
        return 0
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="queue-view-"))
    workdir.mkdir(parents=True, exist_ok=True)
    mailroot = workdir / "Mailroot"
    try:
        fill_s = 0.0
        if not (mailroot / "Queue").is_dir() or not any((mailroot / "Queue").glob("*.eml")):
            print(f"writing {args.count:,} queued messages into {mailroot} ...", flush=True)
            started = time.perf_counter()
            wait = args.wait if args.wait is not None else 1800.0 if args.headless else 60.0
            fill_queue(mailroot, args.count, due=0, size=args.size, wait=wait)
            fill_s = time.perf_counter() - started
        count = sum(1 for _ in (mailroot / "Queue").glob("*.eml"))
        if args.headless:
            runs = {}
            starts = ("first start (with the index)", "second start (with the index)") if args.indexed_only else (
                "first start (no index: from the files)", "second start (with the index)")
            for number, name in enumerate(starts):
                if number == 0 and not args.indexed_only:
                    (mailroot / "Queue" / "queue.idx").unlink(missing_ok=True)  # a queue kept from a former run
                print(f"smtpsvc serve, {name} ...", flush=True)
                runs[name] = headless(workdir, mailroot)
                print(f"  {runs[name]}", flush=True)
            for name, served in runs.items():
                print(f"\n{name}:\n")
                print(headless_report(count, served))
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            (OUT_DIR / f"queue_serve-{stamp}.json").write_text(json.dumps(
                {"count": count, "serve": runs, "load": os.getloadavg()}, indent=2))
            print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
            return 0
        config = write_config(workdir, mailroot)
        print("recovery ...", flush=True)
        recovery = child("recover", config)
        print(f"  {recovery}", flush=True)
        print("window ...", flush=True)
        os.environ["QUEUE_VIEW_EXPECTED"] = str(count)
        extra = ["--screenshot", str(Path(args.screenshot).resolve())] if args.screenshot else []
        window = child("window", config, *extra)
        print(f"  {window}", flush=True)
        text = report(count, fill_s, recovery, window)
        print()
        print(text)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        record = {"count": count, "fill_s": fill_s, "recovery": recovery, "window": window,
                  "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "load": os.getloadavg()}}
        (OUT_DIR / f"queue_view-{stamp}.json").write_text(json.dumps(record, indent=2))
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
