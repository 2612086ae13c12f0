"""Postfix's smtp-sink as a real remote MTA for delivery tests: started on a loopback address, stopped by PID.

Each transaction it accepts is dumped to a file (``-d``) that starts with ``X-Mail-Args:`` / ``X-Rcpt-Args:``
lines, so tests can check the envelope and its DSN parameters as well as the message.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SMTP_SINK = shutil.which("smtp-sink", path="/usr/sbin:/usr/bin:/sbin:/bin")


@dataclass
class Dump:
    mail_args: str
    rcpt_args: list[str]
    message: bytes  # what smtp-sink got after its own Received header


class Sink:
    def __init__(self, directory: Path, host: str, port: int, options: list[str]) -> None:
        self.directory = directory
        self.host, self.port = host, port
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sink:
        assert SMTP_SINK is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o777)  # smtp-sink drops privileges before it writes its dumps
        user = pwd.getpwuid(os.getuid()).pw_name
        self.process = subprocess.Popen(
            [SMTP_SINK, "-u", user, "-d", f"{self.directory}/dump.%H%M%S.", *self.options,
             f"{self.host}:{self.port}", "64"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1) as sock:
                if sock.recv(3) == b"220":
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("smtp-sink did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def dumps(self) -> list[Dump]:
        result = []
        for path in sorted(self.directory.glob("dump.*")):
            data = path.read_bytes()
            lines = data.split(b"\n")
            mail = ""
            rcpts: list[str] = []
            index = 0
            for index, line in enumerate(lines):  # noqa: B007 - index is used after the loop
                text = line.decode("utf-8", "replace").rstrip("\r")
                if text.startswith("X-Mail-Args: "):
                    mail = text[len("X-Mail-Args: "):]
                elif text.startswith("X-Rcpt-Args: "):
                    rcpts.append(text[len("X-Rcpt-Args: "):])
                elif text.startswith("Received: "):
                    break
            # Skip smtp-sink's own Received header (three lines: from, by, date).
            rest = b"\n".join(lines[index + 3:])
            rest = rest[:-1] if rest.endswith(b"\n\n") else rest  # smtp-sink ends each dump with a blank line
            result.append(Dump(mail, rcpts, rest))
        return result


@contextlib.contextmanager
def running_sink(directory: Path, host: str, port: int, *options: str) -> Iterator[Sink]:
    sink = Sink(directory, host, port, list(options)).start()
    try:
        yield sink
    finally:
        sink.stop()
