"""The admin server's client: the op table over HTTPS with an operator's password, and certificate trust.

Trust, in order: ``cafile`` when given (the certificate must chain to it and name the host); else the system's
store; else — a self-signed certificate — its SHA-256 fingerprint pinned in the ``known_servers`` file (one
``HOST:PORT sha256-hex`` line per server, as ssh's known_hosts). A certificate seen for the first time is
pinned only after ``confirm(host_port, fingerprint)`` says yes; a pinned server presenting another certificate,
or an expired one, is refused with a message saying so. Plain ``http://`` only to a loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import platformdirs

from engine.admin import http_auth  # noqa: F401 - its error types must be known to error_from_reply
from engine.admin.control_ops import error_from_reply
from engine.conf.hostport import join_hostport
from engine.errors import EngineError
from engine.store.mailroot import write_private

Confirm = Callable[[str, str], bool]  # (HOST:PORT, SHA-256 fingerprint) → pin it?
if TYPE_CHECKING:  # aiohttp and cryptography (about 40 MB) are imported when a client is made, not with the module
    import aiohttp

    Check = ssl.SSLContext | aiohttp.Fingerprint | bool  # aiohttp's ssl= of every request
TIMEOUT_S = 60.0
CLOSE_GRACE_S = 0.25


class TrustError(EngineError):
    """The server's certificate is not trusted: unknown and not confirmed, changed, expired, or plain HTTP."""


class CertificateChanged(TrustError):
    """A pinned server presents another certificate: ``presented`` (its SHA-256), ``pinned`` (the hex of the one
    ``known`` names for ``host_port``; "" when none is pinned any more). Trusting it is ``pin(known, host_port,
    presented)`` after the user compared the fingerprint, as for a first certificate."""

    def __init__(self, message: str, host_port: str, presented: bytes, pinned: str, known: Path) -> None:
        super().__init__(message)
        self.host_port = host_port
        self.presented = presented
        self.pinned = pinned
        self.known = known


def known_servers_path() -> Path:
    return platformdirs.user_config_path("smtpsvc") / "known_servers"


def fingerprint_text(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def read_known(path: Path) -> dict[str, str]:
    """HOST:PORT → SHA-256 hex, from the known_servers file (missing = none)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    known = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and not line.startswith("#"):
            known[fields[0]] = fields[1].lower()
    return known


def pin(path: Path, host_port: str, digest: bytes) -> None:
    known = read_known(path)
    known[host_port] = digest.hex()
    lines = ["# smtpsvc known_servers: HOST:PORT and the SHA-256 of its certificate (remove a line to forget it)"]
    lines += [f"{name} {value}" for name, value in sorted(known.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, ("\n".join(lines) + "\n").encode("utf-8"))


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int

    @property
    def host_port(self) -> str:
        return join_hostport(self.host, self.port)

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host_port}"


def parse_url(url: str) -> Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise EngineError(f"{url!r} is not an address like https://HOST:PORT: {error}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname or (parts.path not in ("", "/")):
        raise EngineError(f"{url!r} is not an address like https://HOST:PORT")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def _peer_certificate(target: Target) -> bytes:
    """The server's certificate (DER), fetched without checking it: only its fingerprint is used."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port, ssl=context), TIMEOUT_S)
    except (OSError, TimeoutError, ssl.SSLError) as error:
        raise EngineError(f"cannot connect to {target.base}: {error}") from None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        raise TrustError(f"{target.base} sent no certificate")
    return bytes(der)


async def _verifies(target: Target, context: ssl.SSLContext) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port, ssl=context), TIMEOUT_S)
    except ssl.SSLCertVerificationError:
        return False
    except (OSError, TimeoutError, ssl.SSLError) as error:
        raise EngineError(f"cannot connect to {target.base}: {error}") from None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True


def changed_certificate(host_port: str, digest: bytes, known: Path) -> CertificateChanged:
    """The refusal of a pinned server that now presents another certificate (``digest``: its SHA-256)."""
    return CertificateChanged(
        f"the certificate of {host_port} has CHANGED: it is now SHA-256 {fingerprint_text(digest)}, "
        f"but {known} pins another one. Someone may be intercepting the connection; if the server's "
        f"certificate was replaced on purpose, check the new fingerprint there (smtpsvc cert show) and "
        f"remove the line for {host_port} from {known}", host_port, digest, read_known(known).get(host_port, ""),
        known)


async def trust(target: Target, *, cafile: Path | None, known: Path, confirm: Confirm) -> Check:
    """How to check this server: a verifying context, a pinned fingerprint, or False (plain HTTP)."""
    if target.scheme == "http":
        if not _loopback(target.host):
            raise TrustError(f"plain HTTP to {target.host} would send the password in clear: use https://")
        return False
    if cafile is not None:
        try:
            context = ssl.create_default_context(cafile=str(cafile))
        except (OSError, ssl.SSLError) as error:
            raise TrustError(f"cannot use --cafile {cafile}: {getattr(error, 'strerror', None) or error}") from None
        if not await _verifies(target, context):
            raise TrustError(f"the certificate of {target.host_port} is not valid for {target.host} or not issued "
                             f"by a certificate authority in {cafile}")
        return context
    system = ssl.create_default_context()
    if await _verifies(target, system):
        return system
    import aiohttp
    from cryptography import x509

    der = await _peer_certificate(target)
    digest = hashlib.sha256(der).digest()
    expires = x509.load_der_x509_certificate(der).not_valid_after_utc
    if expires < datetime.now(UTC):
        raise TrustError(f"the certificate of {target.host_port} expired on {expires:%Y-%m-%d %H:%M} UTC; "
                         "renew it on the server (smtpsvc cert new --force)")
    pinned = read_known(known).get(target.host_port)
    if pinned is not None:
        if pinned != digest.hex():
            raise changed_certificate(target.host_port, digest, known)
        return aiohttp.Fingerprint(digest)
    if not confirm(target.host_port, fingerprint_text(digest)):
        raise TrustError(f"the certificate of {target.host_port} (SHA-256 {fingerprint_text(digest)}) is not "
                         "trusted: not confirmed, and not issued by a known certificate authority (--cafile)")
    pin(known, target.host_port, digest)
    return aiohttp.Fingerprint(digest)


class AdminClient:
    """One admin server, one operator; use as ``async with AdminClient(...) as client``."""

    def __init__(self, url: str, user: str, password: str, *, cafile: Path | None = None,
                 known: Path | None = None, confirm: Confirm = lambda host, fingerprint: False) -> None:
        import aiohttp

        self.target = parse_url(url)
        self._authorization = aiohttp.encode_basic_auth(user, password)
        self._cafile = cafile
        self._known = known or known_servers_path()
        self._confirm = confirm
        self._session: aiohttp.ClientSession | None = None
        self._ssl: Check = False

    async def __aenter__(self) -> AdminClient:
        import aiohttp

        self._ssl = await trust(self.target, cafile=self._cafile, known=self._known, confirm=self._confirm)
        self._session = aiohttp.ClientSession(self.target.base, headers={"Authorization": self._authorization},
                                              timeout=aiohttp.ClientTimeout(total=None, sock_read=TIMEOUT_S))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            # The TLS connections finish closing on the next turns of the loop (aiohttp's advice for a
            # graceful shutdown); a loop stopped right after would leave their sockets open.
            await asyncio.sleep(CLOSE_GRACE_S)

    @contextlib.contextmanager
    def _trusted(self) -> Iterator[None]:
        """A server whose certificate changed since it was trusted (a restart with a new one) is refused as at
        connect time, not reported as a dropped link."""
        import aiohttp

        try:
            yield
        except aiohttp.ServerFingerprintMismatch as error:
            raise changed_certificate(self.target.host_port, error.got, self._known) from None
        except aiohttp.ClientConnectorCertificateError as error:
            raise TrustError(f"the certificate of {self.target.host_port} is no longer trusted: "
                             f"{error.certificate_error}") from None

    def _require(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise EngineError("the admin client is not connected")
        return self._session

    async def call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """Run ``op`` on the server; its result, or the server's error as the engine.errors type it names."""
        import aiohttp

        session = self._require()
        try:
            with self._trusted():
                async with session.post(f"/api/v1/{op}", json=args or {}, ssl=self._ssl) as response:
                    body = await response.read()
                    status = response.status
        except aiohttp.ClientError as error:
            raise EngineError(f"{self.target.base}: {error}") from None
        try:
            reply = json.loads(body)
        except ValueError:
            raise EngineError(f"{self.target.base} answered HTTP {status} without a JSON reply") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise EngineError(f"{self.target.base} answered HTTP {status} with a malformed reply")
        if not reply["ok"]:
            raise error_from_reply(reply.get("error"))
        return reply.get("result")

    async def post_messages(self, files: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """Messages through the Posting Acceptor: each file's answer (accepted with queue_id, or a reason)."""
        import aiohttp

        session = self._require()
        form = aiohttp.FormData()
        for name, data in files:
            form.add_field("file", data, filename=name, content_type="message/rfc822")
        try:
            with self._trusted():
                async with session.post("/post", data=form, ssl=self._ssl) as response:
                    reply = json.loads(await response.read())
        except (aiohttp.ClientError, ValueError) as error:
            raise EngineError(f"{self.target.base}: {error}") from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            raise error_from_reply(reply.get("error") if isinstance(reply, dict) else reply)
        files_result: list[dict[str, Any]] = reply["result"]["files"]
        return files_result

    async def events(self, on_open: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The server's engine events as they happen (type and fields), until the connection ends. ``on_open`` is
        awaited once the server follows the engine for this stream (its first line): what is read then is not
        older than what the stream will tell."""
        import aiohttp

        session = self._require()
        with self._trusted():
            async with session.get("/api/v1/events", ssl=self._ssl,
                                   timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
                if response.status != 200:
                    reply = json.loads(await response.read())
                    raise error_from_reply(reply.get("error"))
                data: list[str] = []
                async for raw in response.content:
                    if on_open is not None:
                        await on_open()
                        on_open = None
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
