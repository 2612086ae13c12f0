"""The control socket: a running engine's facade served on Mailroot/control.sock, and its client.

Framing: one request per line, one reply per line, UTF-8 JSON (engine/admin/control_ops.py has the ops);
a connection may carry several requests in turn:

    → {"op": "queue.show", "args": {"id": "18A3..."}}
    ← {"ok": true, "result": {...}}
    ← {"ok": false, "error": {"type": "NotFoundError", "message": "no message 18A3... in the queue"}}

Invariants: a request line longer than ``MAX_REQUEST_BYTES`` is answered with a RequestError and the
connection closed (the framing is lost). The socket is owner-only (0600) from the moment its name
appears: it is bound in a private 0700 directory, chmod'ed, then renamed into place — no process-wide
umask change, which would race the window's other threads. Only our own socket file is ever removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.admin.control_ops import RequestError, encode, error_from_reply, error_reply
from engine.errors import BindError, EngineError

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024  # requests are small; anything longer is a mistake or an attack
MAX_REPLY_BYTES = 256 * 1024 * 1024  # a page of queue items can be large, but not unbounded
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes with its NUL; keep a margin


class ControlUnavailableError(EngineError):
    """No engine answers on the control socket (it is missing, stale, or refuses connections)."""


def socket_path(mailroot: Path) -> Path:
    """Where the engine owning ``mailroot`` serves its control socket."""
    return mailroot / SOCKET_NAME


# -- the server -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _addressable(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in sun_path: long paths go through /proc/self/fd of their directory."""
    if len(os.fsencode(path)) < _UNIX_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, _addressable(path) as name:
        probe.settimeout(2.0)
        try:
            probe.connect(name)
        except OSError:
            return False
    return True


def _same_user(writer: asyncio.StreamWriter) -> bool:
    """The peer runs as the engine's user (or root): the 0600 mode already says so, unless someone
    widened it; the kernel's word on who connected costs one getsockopt."""
    sock = writer.get_extra_info("socket")
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid in (os.getuid(), 0)


@dataclass
class _Connection:
    writer: asyncio.StreamWriter
    busy: bool = False  # answering a request: let it finish when stopping


class ControlServer:
    """Serves ``answer`` (request line → reply line) on a Unix socket at ``path``; start and stop it on the
    engine's loop. It knows nothing of its target: the engine passes ``control_ops.answer`` bound to itself."""

    def __init__(self, answer: Callable[[bytes], Awaitable[bytes]], path: Path) -> None:
        self._answer = answer
        self.path = path
        self._listener: asyncio.Server | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of our socket file
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._closing = False

    async def start(self) -> None:
        """Bind the socket; a stale socket left by a crash is replaced, anything else at ``path`` refused."""
        self._clear_stale()
        sock = self._bind()
        self._closing = False
        try:
            self._listener = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST_BYTES)
        except BaseException:
            sock.close()
            self._unlink_own()
            raise
        log.info("control socket %s", self.path)

    def _clear_stale(self) -> None:
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise BindError(f"cannot create the control socket {self.path}: something that is not a socket is there")
        if _is_live(self.path):
            raise BindError(f"cannot create the control socket {self.path}: another process answers on it")
        try:
            self.path.unlink()  # left by an engine that did not stop cleanly
        except OSError as error:
            raise BindError(f"cannot remove the stale control socket {self.path}: {error.strerror}") from error

    def _bind(self) -> socket.socket:
        try:
            private = Path(tempfile.mkdtemp(prefix=".control-", dir=self.path.parent))  # mode 0700
        except OSError as error:
            raise BindError(f"cannot create the control socket {self.path}: {error.strerror or error}") from error
        temp = private / SOCKET_NAME
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _addressable(temp) as name:
                sock.bind(name)
            os.chmod(temp, 0o600)
            os.rename(temp, self.path)  # the name appears already owner-only
            info = self.path.lstat()
            self._identity = (info.st_dev, info.st_ino)
        except OSError as error:
            sock.close()
            raise BindError(f"cannot create the control socket {self.path}: {error.strerror or error}") from error
        finally:
            temp.unlink(missing_ok=True)
            private.rmdir()
        return sock

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening; a request being answered may finish (up to ``grace`` s), idle connections close."""
        if self._listener is not None:
            self._listener.close()
            self._closing = True
            # Closing the transport ends a connection's readline with EOF. Cancelling the task instead would
            # make Python 3.11's StreamReaderProtocol log a CancelledError from its done-callback.
            for connection in list(self._connections.values()):
                if not connection.busy:  # waiting for a request: nothing is lost
                    connection.writer.close()
            if self._connections:
                _, late = await asyncio.wait(list(self._connections), timeout=grace)
                for task in late:  # an op that does not finish: last resort
                    self._connections[task].writer.close()
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
            await self._listener.wait_closed()
            self._listener = None
        self._unlink_own()

    def _unlink_own(self) -> None:
        """Remove the socket file, unless it is no longer ours (a newer engine's must survive)."""
        if self._identity is None:
            return
        with contextlib.suppress(OSError):
            info = self.path.lstat()
            if (info.st_dev, info.st_ino) == self._identity:
                self.path.unlink()
        self._identity = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = self._connections[task] = _Connection(writer)
        try:
            if not _same_user(writer):
                writer.write(encode(error_reply(RequestError("permission denied: not the engine's user"))))
                await writer.drain()
                return
            while not self._closing:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than the limit: the framing is lost, so answer and hang up
                    writer.write(encode(error_reply(RequestError(
                        f"request longer than {MAX_REQUEST_BYTES} bytes"))))
                    await writer.drain()
                    return
                if not line.endswith(b"\n"):
                    return  # end of stream (a last line without newline is not a whole request)
                if not line.strip():
                    continue
                connection.busy = True
                writer.write(await self._answer(line.rstrip(b"\r\n")))
                await writer.drain()
                connection.busy = False
        except ConnectionError:
            pass
        finally:
            del self._connections[task]
            writer.close()


# -- the client -------------------------------------------------------------------------------------


async def request(path: Path, op: str, *, timeout: float = 60.0, **args: Any) -> Any:
    """Ask the engine serving ``path`` to run ``op``; returns the result or raises the reply's EngineError.

    ControlUnavailableError when nothing answers there (no engine, or a stale socket).
    """
    try:
        with _addressable(path) as name:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(name, limit=MAX_REPLY_BYTES), timeout)
    except PermissionError as error:  # someone else's engine: going offline would not be allowed either
        raise EngineError(f"cannot use the control socket {path}: {error.strerror}") from None
    except OSError as error:  # missing, stale (refused), or not answering in time
        raise ControlUnavailableError(
            f"no engine answers on {path}: {error.strerror or type(error).__name__}") from None
    try:
        writer.write(json.dumps({"op": op, "args": args}, separators=(",", ":")).encode("utf-8") + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        raise EngineError(f"the engine did not answer {op} within {timeout:g} s") from None
    except (OSError, ValueError) as error:
        raise EngineError(f"the control connection failed: {error}") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not line.endswith(b"\n"):
        raise EngineError("the engine closed the control connection without answering")
    try:
        reply = json.loads(line)
    except ValueError as error:
        raise EngineError(f"unreadable reply from the engine: {error}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise EngineError("malformed reply from the engine")
    if not reply["ok"]:
        raise error_from_reply(reply.get("error"))
    return reply.get("result")


def request_sync(path: Path, op: str, *, timeout: float = 60.0, **args: Any) -> Any:
    """``request`` for code without an event loop (scripts, tests); not from inside a running loop."""
    return asyncio.run(request(path, op, timeout=timeout, **args))

