"""A private, throw-away Postfix instance on a loopback port: the real MTA that smtpsvc is measured against.

Everything lives in one temporary directory (configuration, queue, data, log); it is started with
``postfix -c DIR start`` and stopped with ``postfix -c DIR stop``, which touch only this instance. The
system's /etc/postfix is only read (Postfix's own file list), never written, and no system Postfix starts.
Every transport is ``discard``: mail is accepted durably (cleanup fsyncs the queue file before smtpd
answers 250), queued, "delivered" and removed, like a real MTA, but leaves the machine nowhere.

Needs root (Postfix's master runs as root and drops to ``mail_owner``), the ``postfix`` user and the
``postdrop`` group that Debian's postfix package creates.

Run it alone for a smoke test:  python bench/postfix_instance.py
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BENCH_DOMAIN, RECIPIENT, SENDER, count_files, free_port, wait_for_banner

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
QUEUE_STATES = ("maildrop", "incoming", "active", "deferred", "hold")

# service type private unpriv chroot wakeup maxproc command: chroot is off everywhere (no copied files).
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# Private benchmark instance: written by bench/postfix_instance.py, removed when it stops.
compatibility_level = 3.6
config_directory = {dir}/etc
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
syslog_name = postfix-bench

myhostname = mx.{domain}
mydomain = {domain}
myorigin = $mydomain
mydestination = {domain}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

# Accept any recipient of the bench domain, and nothing else; deliver nowhere.
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
local_transport = discard:bench
default_transport = discard:bench
relay_transport = discard:bench
virtual_transport = discard:bench

default_process_limit = 150
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
message_size_limit = {message_size_limit}
biff = no
append_dot_mydomain = no
smtputf8_enable = no
"""


class PostfixInstance:
    """``with PostfixInstance() as pf: ... pf.port ...`` — a private Postfix on 127.0.0.1:``pf.port``."""

    def __init__(self, port: int | None = None, *, base_dir: str | None = None,
                 message_size_limit: int = 50 * 1024 * 1024, start_timeout: float = 60.0) -> None:
        self.port = port or free_port()
        self.base_dir = base_dir
        self.message_size_limit = message_size_limit
        self.start_timeout = start_timeout
        self.dir: Path | None = None
        self.banner = ""

    # --- paths ----------------------------------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "etc"

    @property
    def queue_dir(self) -> Path:
        assert self.dir is not None
        return self.dir / "queue"

    @property
    def maillog(self) -> Path:
        assert self.dir is not None
        return self.dir / "maillog"

    def _postfix(self, *args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([POSTFIX, "-c", str(self.config_dir), *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} exited {proc.returncode}: "
                               f"{(proc.stderr + proc.stdout).strip()[-1500:]}")
        return proc

    def master_pid(self) -> int | None:
        """PID of this instance's master process while it runs."""
        try:
            text = (self.queue_dir / "pid" / "master.pid").read_text().strip()
            pid = int(text)
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def queued(self) -> int:
        """Messages still in the queue (any state)."""
        return sum(count_files(self.queue_dir / state) for state in QUEUE_STATES)

    # --- life cycle -----------------------------------------------------------------------------------
    def start(self) -> PostfixInstance:
        if os.geteuid() != 0:
            raise PermissionError("a private Postfix instance needs root (its master runs as root)")
        if not os.path.exists(POSTFIX):
            raise FileNotFoundError("postfix is not installed (apt-get install postfix)")
        self.dir = Path(tempfile.mkdtemp(prefix="postfix-bench-", dir=self.base_dir))
        os.chmod(self.dir, 0o755)  # the postfix user must reach its queue and data directories
        try:
            for sub in ("etc", "queue", "data"):
                (self.dir / sub).mkdir()
            owner = pwd.getpwnam("postfix")
            os.chown(self.dir / "data", owner.pw_uid, owner.pw_gid)  # as Postfix wants data_directory
            os.chmod(self.dir / "data", 0o700)
            (self.config_dir / "main.cf").write_text(MAIN_CF.format(
                dir=self.dir, domain=BENCH_DOMAIN, message_size_limit=self.message_size_limit))
            (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
            # "check" creates the missing queue tree with Postfix's owners and modes (post-install
            # create-missing); unlike "set-permissions" it leaves the system's installed files alone.
            self._postfix("check")
            self._postfix("start")
            self.banner = wait_for_banner("127.0.0.1", self.port, self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop this instance (never any other) and remove its directory; safe to call twice."""
        if self.dir is None:
            return
        try:
            pid = self.master_pid()
            if pid is not None:
                self._postfix("stop", check=False)
                deadline = time.monotonic() + 20
                while self.master_pid() is not None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.master_pid() is not None:
                    self._postfix("abort", check=False)
                    time.sleep(1)
                    if self.master_pid() == pid:
                        os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PostfixInstance:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _smoke() -> int:
    with PostfixInstance() as pf:
        print(f"private Postfix on 127.0.0.1:{pf.port} in {pf.dir}: {pf.banner}")
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=10) as client:
            client.sendmail(SENDER, [RECIPIENT], b"Subject: smoke\r\n\r\nhello\r\n")
        print("message accepted; waiting for the queue to drain ...")
        deadline = time.monotonic() + 30
        while pf.queued() and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"queued now: {pf.queued()}")
        time.sleep(0.5)
        print(pf.maillog.read_text() if pf.maillog.exists() else "(no maillog)")
    print("stopped and removed")
    return 0


if __name__ == "__main__":
    sys.exit(_smoke())
