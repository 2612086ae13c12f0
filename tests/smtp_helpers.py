"""A raw-socket SMTP talker for tests that need to see exactly what goes over the wire."""

from __future__ import annotations

import re
import socket

ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ")


class RawSMTP:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        try:
            self.banner = self.read_reply()
        except BaseException:
            self.sock.close()
            raise

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by server; pending {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def read_reply(self) -> list[str]:
        lines = [self.read_line()]
        while lines[-1][3:4] == "-":
            lines.append(self.read_line())
        return lines

    def cmd(self, line: str | bytes) -> str:
        data = line if isinstance(line, bytes) else line.encode()
        self.send(data + b"\r\n")
        return self.read_reply()[-1]

    def closed(self) -> bool:
        """True when the server closed the connection (EOF with nothing pending)."""
        try:
            self.sock.settimeout(5)
            data = self.sock.recv(1)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return data == b""

    def close(self) -> None:
        self.sock.close()
