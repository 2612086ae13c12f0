"""Exim as a real SMTP client that sends BDAT (RFC 3030 CHUNKING) to smtpsvc: Debian's binary, unpacked, private.

exim4-daemon-light conflicts with Postfix (both are the system's MTA), so tests/run fetches the package and
unpacks it under ~/.cache/smtpsvc-tests/exim without installing it. Debian's build names its user at compile
time (``Debian-exim``) and looks it up before it reads any configuration; libnss-wrapper answers that lookup
from a private passwd file, so nothing is added to the system. Each run gets its own directory under /tmp
(traversable by the unprivileged user Exim becomes for delivery when the tests run as root) with a copy of the
binary (its setuid bit dropped, so that the loader keeps LD_PRELOAD when Exim runs itself again), the
configuration (``-C``: a manualroute router to 127.0.0.1 and the smtp transport with ``hosts_try_chunking``),
its spool and its logs. ``-odf`` delivers in the foreground: ``send`` returns once Exim has tried.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

EXIM_ROOT = Path(os.environ.get("SMTPSVC_EXIM_ROOT", str(Path.home() / ".cache/smtpsvc-tests/exim/root")))
EXIM_BINARY = EXIM_ROOT / "usr/sbin/exim4"
NSS_WRAPPER = next(iter(sorted(glob.glob("/usr/lib/*/libnss_wrapper.so") + glob.glob("/usr/lib/libnss_wrapper.so"))),
                   None)
NOBODY = 65534  # the uid and gid that Debian-exim stands for when the tests run as root (Exim refuses uid 0)

CONFIG = """\
exim_path = {directory}/exim4
spool_directory = {directory}/spool
log_file_path = {directory}/log/%slog
primary_hostname = exim.test
qualify_domain = exim.test
keep_environment = LD_PRELOAD : NSS_WRAPPER_PASSWD : NSS_WRAPPER_GROUP

begin routers
smtpsvc:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = smtpsvc

begin transports
smtpsvc:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_try_chunking = *

begin retry
* * F,1h,1h
"""


def missing() -> str:
    """Why Exim cannot run here ("" when it can)."""
    if not EXIM_BINARY.is_file():
        return f"Exim is not unpacked at {EXIM_ROOT} (tests/run fetches exim4-daemon-light with apt-get download)"
    if NSS_WRAPPER is None:
        return "libnss-wrapper is not installed (tests/run installs it)"
    return ""


class Exim:
    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        uid, gid = (NOBODY, NOBODY) if os.getuid() == 0 else (os.getuid(), os.getgid())
        shutil.copyfile(EXIM_BINARY, directory / "exim4")
        os.chmod(directory / "exim4", 0o755)  # no setuid bit: see the module's docstring
        (directory / "exim.conf").write_text(CONFIG.format(directory=directory, port=port))
        os.chmod(directory / "exim.conf", 0o644)
        (directory / "passwd").write_text(f"Debian-exim:x:{uid}:{gid}::/nonexistent:/usr/sbin/nologin\n"
                                          + Path("/etc/passwd").read_text())
        (directory / "group").write_text(f"Debian-exim:x:{gid}:\n" + Path("/etc/group").read_text())
        for name in ("spool", "log"):
            (directory / name).mkdir()
            os.chown(directory / name, uid, gid)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_PRELOAD": str(NSS_WRAPPER),
                    "NSS_WRAPPER_PASSWD": str(directory / "passwd"), "NSS_WRAPPER_GROUP": str(directory / "group")}

    def send(self, sender: str, recipients: list[str], message: bytes) -> subprocess.CompletedProcess[bytes]:
        """Submit ``message`` (LF line ends, as local mail is) and deliver it at once."""
        command = [str(self.directory / "exim4"), "-C", str(self.directory / "exim.conf"), "-odf", "-oi",
                   "-f", sender, "--", *recipients]
        return subprocess.run(command, input=message, env=self.env, capture_output=True, timeout=120,
                              cwd=self.directory, check=False)

    def mainlog(self) -> str:
        path = self.directory / "log" / "mainlog"
        return path.read_text("utf-8", "replace") if path.exists() else ""


@contextlib.contextmanager
def private_exim(port: int) -> Iterator[Exim]:
    directory = Path(tempfile.mkdtemp(prefix="smtpsvc-exim-", dir="/tmp"))
    try:
        os.chmod(directory, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        yield Exim(directory, port)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
