"""A private Postfix instance as a real remote MTA for tests: virtual Maildir delivery on a loopback address.

Everything lives in one temporary directory outside the test's tmp_path (the ``postfix`` user and the
Maildir owner must be able to reach it, and pytest's directories are 0700): configuration, queue, data,
log and the mailboxes. It is started with ``postfix -c DIR start`` and stopped with ``postfix -c DIR stop``,
which touch only this instance; the system's /etc/postfix is only read.

Delivery: the domain is a *virtual mailbox domain* (``virtual_mailbox_domains``); its users are listed in a
``texthash:`` map (no postmap run needed), so an unknown user is refused at RCPT with ``550 5.1.1`` (Postfix's
``smtpd_reject_unlisted_recipient``), and a known one is delivered by the ``virtual`` agent into a Maildir
under ``virtual_mailbox_base``, written as an unprivileged uid (``nobody``: virtual refuses uids below 100).
Postfix stores lines without their CRLF and writes LF-terminated files, and the virtual agent puts
``Delivered-To:`` and ``Return-Path:`` above the message; everything else is the message as received.

Needs root (Postfix's master runs as root), and the ``postfix`` user and ``postdrop`` group that Debian's
postfix package creates; ``unavailable()`` says why an instance cannot run here.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin:/sbin:/bin")
QUEUE_STATES = ("maildrop", "incoming", "active", "deferred", "hold")
MAILBOX_USER = "nobody"

# service type private unpriv chroot wakeup maxproc command: chroot off everywhere (no files to copy).
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
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# Private test instance: written by tests/postfix_support.py, removed when it stops.
compatibility_level = 3.6
config_directory = {dir}/etc
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
syslog_name = postfix-test

myhostname = {hostname}
mydomain = {domain}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

# The one domain it takes mail for: virtual mailboxes, only the listed users (others: 550 5.1.1 at RCPT).
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {dir}/mail
virtual_mailbox_maps = texthash:{dir}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_transport = virtual
local_recipient_maps =
alias_maps =
alias_database =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
# Nothing may leave: whatever is not for the virtual domain fails here.
default_transport = error:no remote delivery in the test instance
relay_transport = error:no remote delivery in the test instance

# A remote MX: no header rewriting, no headers added to what arrives.
local_header_rewrite_clients =
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
message_size_limit = {message_size_limit}
biff = no
append_dot_mydomain = no
"""


def unavailable() -> str | None:
    """Why a private Postfix cannot run on this machine (for ``pytest.skip``), or None when it can."""
    if POSTFIX is None:
        return "postfix is not installed (apt-get install postfix; tests/run does it)"
    if os.geteuid() != 0:
        return "a private Postfix needs root (its master runs as root)"
    for user in ("postfix", MAILBOX_USER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"there is no user {user!r} (the postfix package creates 'postfix')"
    return None


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PostfixMailbox:
    """``with PostfixMailbox("dest.test", ["alice"], "127.0.0.26") as pf:`` — Postfix on ``pf.host:pf.port``."""

    def __init__(self, domain: str, users: Sequence[str], host: str = "127.0.0.1", port: int | None = None,
                 *, message_size_limit: int = 20 * 1024 * 1024, start_timeout: float = 60.0) -> None:
        self.domain = domain
        self.users = list(users)
        self.host = host
        self.port = port or free_port(host)
        self.message_size_limit = message_size_limit
        self.start_timeout = start_timeout
        self.dir: Path | None = None

    # --- paths ----------------------------------------------------------------------------------------
    def _path(self, *parts: str) -> Path:
        assert self.dir is not None, "the instance is not running"
        return self.dir.joinpath(*parts)

    @property
    def config_dir(self) -> Path:
        return self._path("etc")

    @property
    def queue_dir(self) -> Path:
        return self._path("queue")

    @property
    def maillog(self) -> Path:
        return self._path("maillog")

    def maildir(self, user: str) -> Path:
        return self._path("mail", self.domain, user)

    def log(self) -> str:
        """Postfix's log of this instance so far."""
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def delivered(self, user: str) -> list[bytes]:
        """The files the virtual agent wrote into ``user``'s Maildir (new/ and cur/), oldest first."""
        maildir = self.maildir(user)
        paths = [p for sub in ("new", "cur") if (maildir / sub).is_dir() for p in (maildir / sub).iterdir()]
        return [p.read_bytes() for p in sorted(paths, key=lambda p: (p.stat().st_mtime, p.name))]

    def queued(self) -> int:
        """Messages still in this instance's queue (any state)."""
        total = 0
        for state in QUEUE_STATES:
            for _dirpath, _dirnames, filenames in os.walk(self.queue_dir / state):
                total += len(filenames)
        return total

    def master_pid(self) -> int | None:
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert POSTFIX is not None
        proc = subprocess.run([POSTFIX, "-c", str(self.config_dir), *args], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} exited {proc.returncode}: "
                               f"{(proc.stderr + proc.stdout).strip()[-1500:]}")
        return proc

    # --- life cycle -----------------------------------------------------------------------------------
    def start(self) -> PostfixMailbox:
        why = unavailable()
        if why is not None:
            raise RuntimeError(why)
        self.dir = Path(tempfile.mkdtemp(prefix="postfix-test-"))
        os.chmod(self.dir, 0o755)  # the postfix user and the mailbox owner must reach their directories
        try:
            for sub in ("etc", "queue", "data", "mail"):
                (self.dir / sub).mkdir()
            postfix = pwd.getpwnam("postfix")
            os.chown(self.dir / "data", postfix.pw_uid, postfix.pw_gid)
            os.chmod(self.dir / "data", 0o700)
            owner = pwd.getpwnam(MAILBOX_USER)
            os.chown(self.dir / "mail", owner.pw_uid, owner.pw_gid)  # virtual creates the Maildirs as owner
            os.chmod(self.dir / "mail", 0o700)
            (self.config_dir / "vmailbox").write_text(
                "".join(f"{user}@{self.domain} {self.domain}/{user}/\n" for user in self.users))
            (self.config_dir / "main.cf").write_text(MAIN_CF.format(
                dir=self.dir, domain=self.domain, hostname=f"mx.{self.domain}", uid=owner.pw_uid,
                gid=owner.pw_gid, message_size_limit=self.message_size_limit))
            (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=f"{self.host}:{self.port}"))
            self._postfix("check")  # creates the queue tree with Postfix's owners and modes
            self._postfix("start")
            self._wait_for_banner()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_banner(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as sock:
                    if sock.recv(3) == b"220":
                        sock.sendall(b"QUIT\r\n")
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Postfix did not greet on {self.host}:{self.port}:\n{self.log()[-2000:]}")

    def stop(self) -> None:
        """Stop this instance (never another one) and remove its directory; safe to call twice."""
        if self.dir is None:
            return
        try:
            pid = self.master_pid()
            if pid is not None:
                self._postfix("stop", check=False)
                deadline = time.monotonic() + 20
                while self.master_pid() is not None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.master_pid() == pid:
                    os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PostfixMailbox:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of a message with CRLF or LF line ends; the blank line belongs to neither."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        at = data.find(separator)
        if at >= 0:
            return data[: at + len(separator) // 2], data[at + len(separator):]
    return data, b""
