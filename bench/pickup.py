"""Pickup benchmark: files dropped into smtpsvc's Pickup against the same files given to Postfix's ``sendmail``.

    python bench/pickup.py                    # 10,000 files per run, local and remote
    python bench/pickup.py --messages 2000    # a modest run on a shared machine

The files are RFC 5322 messages of about 2 KB whose envelope is in their headers (From:, To:): smtpsvc's
Pickup takes it from there, and so does Postfix's ``sendmail -t``. They are written beforehand (not timed)
into a directory beside Pickup, on the same filesystem.

- **local**: recipients in the server's own domain. smtpsvc delivers each file into Drop (an ``.eml``,
  fsynced); Postfix's virtual(8) delivers it into a Maildir (fsynced), its own local store.
- **remote**: recipients in 10 remote domains, relayed to smtp-sink processes exactly as bench/relay.py does
  (domain *i* to sink *i* mod N; dnsmasq MX records for smtpsvc, ``transport_maps`` for Postfix).

smtpsvc: the files are renamed into Pickup one after another (what a program does: write elsewhere, rename
in). Postfix: one ``sendmail -t -i`` per file (postdrop → maildrop → pickup → cleanup → queue), ``--jobs`` at
a time. The time runs from the first file moved / the first ``sendmail`` started until the last message is
delivered (in Drop or the Maildir; counted by the sinks with the queue empty), polled every 0.1 s. Each run
alternates which server goes first; the ratio is Postfix's time over smtpsvc's.

Needs root (the private Postfix), Postfix's programs (sendmail, smtp-sink) and dnsmasq. A JSON record goes to
bench/out/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    BENCH_DOMAIN,
    SENDER,
    clear_dir,
    count_files,
    cpu_seconds_tree,
    median,
    report_head,
    tool_version,
)
from bench.inbound import machine_facts  # noqa: E402
from bench.relay import (  # noqa: E402
    MX_NAME,
    OUT_DIR,
    Dnsmasq,
    DnsRecords,
    Plan,
    Postfix,
    Smtpsvc,
    domains,
    running_sinks,
    sink_hosts,
    sinks_port,
)

SENDMAIL = shutil.which("sendmail", path="/usr/sbin:/usr/lib:/usr/bin") or "/usr/sbin/sendmail"
POSTCONF_BIN = shutil.which("postconf", path="/usr/sbin:/usr/bin") or "/usr/sbin/postconf"
POLL = 0.1
KINDS = ("local", "remote")
SERVERS = ("smtpsvc", "postfix")


@dataclass
class Run:
    server: str
    kind: str
    messages: int
    seconds: float  # first file in until the last delivered
    inject_seconds: float  # how long moving the files in / the sendmail processes took
    cpu_s: float  # the server's process tree during the run (Postfix: its master's tree; sendmail not counted)
    sink_sessions: int = 0  # remote: SMTP sessions the sinks saw (messages / sessions = messages per connection)


def write_files(folder: Path, count: int, kind: str, plan: Plan) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    names = domains(plan)
    paths = []
    filler = ("z" * 74 + "\r\n") * 24  # about 1.8 KB of body
    for number in range(count):
        rcpt = f"user{number % 50}@{BENCH_DOMAIN}" if kind == "local" else f"rcpt{number}@{names[number % len(names)]}"
        text = (f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: pickup {kind} {number}\r\n"
                f"Message-ID: <p{number}.{kind}@{BENCH_DOMAIN}>\r\n\r\nmessage {number}\r\n{filler}")
        path = folder / f"m{number:06d}.eml"
        path.write_bytes(text.encode("ascii"))
        paths.append(path)
    return paths


def wait(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(POLL)


# --- smtpsvc ----------------------------------------------------------------------------------------------

def run_smtpsvc(svc: Smtpsvc, kind: str, plan: Plan, sink_port: int, workdir: Path, timeout: float) -> Run:
    staging = svc.mailroot / "bench-staging"  # same filesystem as Pickup
    shutil.rmtree(staging, ignore_errors=True)
    files = write_files(staging, plan.messages, kind, plan)
    drop = svc.mailroot / "Drop"
    clear_dir(drop)
    pickup = svc.mailroot / "Pickup"
    os.sync()
    with running_sinks(plan, sink_port, workdir) as sinks:
        cpu = cpu_seconds_tree(svc.pid)
        started = time.perf_counter()
        for path in files:
            os.rename(path, pickup / path.name)
        injected = time.perf_counter() - started
        if kind == "local":
            wait(lambda: count_files(drop) >= plan.messages, timeout, "smtpsvc local")
        else:
            wait(lambda: sinks.counters().get("mesg", 0) >= plan.messages and svc.queue_files() == 0, timeout,
                 "smtpsvc remote")
        seconds = time.perf_counter() - started
        cpu = cpu_seconds_tree(svc.pid) - cpu
        time.sleep(0.5)  # the last sessions end (a sink counts a session at its end)
        counters = sinks.counters()
    delivered = count_files(drop) if kind == "local" else counters.get("mesg", 0)
    if delivered != plan.messages or count_files(svc.mailroot / "Badmail"):
        raise RuntimeError(f"smtpsvc {kind}: {delivered} of {plan.messages} delivered; see {svc.mailroot}")
    shutil.rmtree(staging, ignore_errors=True)
    return Run("smtpsvc", kind, plan.messages, seconds, injected, cpu, counters.get("sess", 0))


# --- Postfix ----------------------------------------------------------------------------------------------

class PostfixStore:
    """The private Postfix with virtual(8) delivering the bench domain into one Maildir."""

    def __init__(self, pf: Postfix, workdir: Path) -> None:
        self.pf = pf
        self.mail = workdir / "postfix-mail"
        self.maildir = self.mail / "drop"

    def configure(self, sink_port: int, plan: Plan) -> None:
        owner = pwd.getpwnam("postfix")
        self.mail.mkdir(exist_ok=True)
        os.chown(self.mail, owner.pw_uid, owner.pw_gid)
        config = str(self.pf.instance.config_dir)
        subprocess.run([POSTCONF_BIN, "-c", config, "-M", "virtual/unix=virtual unix - n n - - virtual"],
                       check=True, capture_output=True, timeout=60)
        self.pf.configure(sink_port, plan, {
            "mydestination": "", "virtual_mailbox_domains": BENCH_DOMAIN, "virtual_transport": "virtual",
            "virtual_mailbox_base": str(self.mail), "virtual_mailbox_maps": "static:drop/",
            "virtual_uid_maps": f"static:{owner.pw_uid}", "virtual_gid_maps": f"static:{owner.pw_gid}",
            "virtual_minimum_uid": "1", "virtual_mailbox_limit": "0"})

    def delivered_local(self) -> int:
        return count_files(self.maildir / "new")

    def clear(self) -> None:
        shutil.rmtree(self.maildir, ignore_errors=True)


def run_postfix(store: PostfixStore, kind: str, plan: Plan, sink_port: int, workdir: Path, jobs: int,
                timeout: float) -> Run:
    files = write_files(workdir / "postfix-files", plan.messages, kind, plan)
    store.clear()
    config = str(store.pf.instance.config_dir)

    def submit(path: Path) -> None:
        with path.open("rb") as message:
            proc = subprocess.run([SENDMAIL, "-C", config, "-t", "-i", "-f", SENDER], stdin=message,
                                  capture_output=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"sendmail exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")

    os.sync()
    with running_sinks(plan, sink_port, workdir) as sinks:
        cpu = cpu_seconds_tree(store.pf.pid)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            list(pool.map(submit, files))
        injected = time.perf_counter() - started
        if kind == "local":
            wait(lambda: store.delivered_local() >= plan.messages, timeout, "Postfix local")
        else:
            wait(lambda: sinks.counters().get("mesg", 0) >= plan.messages and store.pf.queued() == 0, timeout,
                 "Postfix remote")
        seconds = time.perf_counter() - started
        cpu = cpu_seconds_tree(store.pf.pid) - cpu
        time.sleep(0.5)
        counters = sinks.counters()
    delivered = store.delivered_local() if kind == "local" else counters.get("mesg", 0)
    if delivered != plan.messages:
        raise RuntimeError(f"Postfix {kind}: {delivered} of {plan.messages} delivered")
    return Run("postfix", kind, plan.messages, seconds, injected, cpu, counters.get("sess", 0))


# --- report -----------------------------------------------------------------------------------------------

def _per_connection(runs: list[Run]) -> str:
    """Remote runs only (the sinks also count the benchmark's own look at their greeting: one per sink)."""
    sessions = median([r.sink_sessions for r in runs])
    return f"{runs[0].messages / sessions:.1f}" if sessions and runs[0].kind == "remote" else "—"


def report(facts: dict[str, str], runs: list[Run], plan: Plan, jobs: int) -> str:
    title = (f"Pickup benchmark: {plan.messages} files of about 2 KB per run, {plan.reps} run(s) per kind; "
             f"remote: {plan.domains} domains, {plan.sinks} smtp-sink processes; Postfix: sendmail -t, "
             f"{jobs} at a time")
    lines = report_head(title, facts, [
        "kind", "smtpsvc s", "Postfix s", "smtpsvc msgs/s", "Postfix msgs/s", "smtpsvc / Postfix", "target",
        "files in (smtpsvc renames / Postfix sendmails) s", "CPU ms/msg smtpsvc", "CPU ms/msg Postfix",
        "msgs/connection smtpsvc / Postfix"], "lrrrrrllrrl")
    for kind in KINDS:
        mine = [r for r in runs if r.kind == kind and r.server == "smtpsvc"]
        theirs = [r for r in runs if r.kind == kind and r.server == "postfix"]
        if not mine or not theirs:
            continue
        svc_s, pf_s = median([r.seconds for r in mine]), median([r.seconds for r in theirs])
        ratio = pf_s / svc_s
        lines.append(
            f"| {kind} | {svc_s:.2f} | {pf_s:.2f} | {plan.messages / svc_s:.0f} | {plan.messages / pf_s:.0f} "
            f"| {ratio:.2f}x | >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'} "
            f"| {median([r.inject_seconds for r in mine]):.2f} / {median([r.inject_seconds for r in theirs]):.2f} "
            f"| {median([r.cpu_s for r in mine]) * 1000 / plan.messages:.2f} "
            f"| {median([r.cpu_s for r in theirs]) * 1000 / plan.messages:.2f} "
            f"| {_per_connection(mine)} / {_per_connection(theirs)} |")
    lines += ["", "(Postfix's CPU is its master's process tree; the sendmail/postdrop processes are not in it.)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="files per run (default 10,000)")
    parser.add_argument("--reps", type=int, default=1, help="runs per kind and server (default 1)")
    parser.add_argument("--sinks", type=int, default=4, help="smtp-sink processes (default 4)")
    parser.add_argument("--jobs", type=int, default=4, help="sendmail processes at a time for Postfix (default 4)")
    parser.add_argument("--kind", action="append", choices=KINDS, help="only this kind (repeatable)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs smtpsvc serve")
    args = parser.parse_args(argv)
    if not (1 <= args.messages <= 100_000 and 1 <= args.reps <= 10 and 1 <= args.sinks <= 64
            and 1 <= args.jobs <= 64):
        parser.error("messages 1..100,000, reps 1..10, sinks 1..64, jobs 1..64")
    if os.geteuid() != 0:
        print("bench/pickup.py needs root (the private Postfix's master runs as root)", file=sys.stderr)
        return 2
    plan = Plan(messages=args.messages, reps=args.reps, sinks=args.sinks)
    timeout = 120 + plan.messages * 0.2
    kinds = args.kind or list(KINDS)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log = OUT_DIR / f"pickup-{stamp}-smtpsvc.log"
    workdir = Path(tempfile.mkdtemp(prefix="smtpsvc-pickup-"))
    os.chmod(workdir, 0o755)
    records = DnsRecords(mx=[(domain, MX_NAME.format(i % plan.sinks), 10) for i, domain in enumerate(domains(plan))],
                         hosts=[(MX_NAME.format(i), host) for i, host in enumerate(sink_hosts(plan))], ttl=3600)
    runs: list[Run] = []
    started = time.monotonic()
    try:
        facts = machine_facts(args.python, workdir)
        facts["sendmail"] = SENDMAIL
        facts["dnsmasq"] = tool_version(["dnsmasq", "--version"])
        sink_port = sinks_port(plan)
        dns = Dnsmasq(workdir / "dns", records).start()
        pf = Postfix(workdir)
        (workdir / "smtpsvc").mkdir()
        svc = Smtpsvc(workdir / "smtpsvc", args.python, log)
        try:
            pf.start()
            store = PostfixStore(pf, workdir)
            store.configure(sink_port, plan)
            svc.start(dns.server, sink_port, {})
            for rep in range(plan.reps):
                for kind in kinds:
                    order = SERVERS if rep % 2 == 0 else SERVERS[::-1]
                    for name in order:
                        if name == "smtpsvc":
                            run = run_smtpsvc(svc, kind, plan, sink_port, workdir, timeout)
                        else:
                            run = run_postfix(store, kind, plan, sink_port, workdir, args.jobs, timeout)
                        runs.append(run)
                        print(f"  {name:8s} {kind:6s} {run.messages} in {run.seconds:7.2f} s "
                              f"({run.messages / run.seconds:6.0f} msgs/s; files in {run.inject_seconds:.2f} s; "
                              f"CPU {run.cpu_s * 1000 / run.messages:.2f} ms/msg)", flush=True)
        finally:
            svc.stop()
            pf.stop()
            dns.stop()
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    text = report(facts, runs, plan, args.jobs)
    text += "\n\nload average at the end (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    print("\n" + text + f"\n\n(benchmark took {(time.monotonic() - started) / 60:.1f} min; smtpsvc log: {log})")
    (OUT_DIR / f"pickup-{stamp}.json").write_text(json.dumps(
        {"facts": facts, "plan": asdict(plan), "jobs": args.jobs, "runs": [asdict(r) for r in runs]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
