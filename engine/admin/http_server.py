"""The admin server: the control op table over HTTPS (aiohttp on the engine's loop), plus an event stream.

    POST /api/v1/<op>     body: the op's arguments as a JSON object   → {"ok": true, "result": ...}
    GET  /api/v1/events   server-sent events of engine events (text/event-stream)
    GET  /api/v1/ops      the op table: name, doc, access ("read"/"change"), arguments

Invariants: there is no second API — every op is ``control_ops.call`` with the arguments the op table
checks, and an op's ``access`` decides whether a viewer may run it. TLS always (``admin_tls_certificate``,
else the SMTP certificate); plain HTTP only on a loopback address with ``admin_allow_plain_loopback``.
Every request is authenticated (HTTP Basic or the HTML manager's session cookie); every change is published
as an ``AdminAction`` event naming the operator. Request bodies are bounded; a cross-site request (an
``Origin`` that is not this server) is refused; pages carry a strict CSP and are never cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from engine.actor import ACTOR
from engine.admin.control_ops import OPS, ControlTarget, RequestError, call, error_reply
from engine.admin.http_auth import AuthError, ForbiddenError, Identity, OperatorAuth, parse_basic
from engine.admin.operators import home, may_run, may_visit
from engine.conf.config import DOMAIN_SECRETS, Config
from engine.conf.hostport import join_hostport, split_hostport
from engine.conf.options import OPTIONS_BY_NAME
from engine.errors import BindError, ConfigError, DomainError, EngineError, NotFoundError, StateError
from engine.events import AdminAction, Event
from engine.smtpd.tls import TlsError, server_context
from engine.store.mailroot import Mailroot

log = logging.getLogger(__name__)

API_MAX_BODY = 256 * 1024  # op arguments are small; a whole configuration for replication fits easily
EVENT_BACKLOG = 2000  # events waiting for one slow stream reader before they are counted as lost
MAX_STREAMS = 32
KEEPALIVE_S = 15.0
WRITE_BATCH = 500  # events per write to an event stream
COOKIE = "smtpsvc_session"
IDENTITY: web.RequestKey[Identity] = web.RequestKey("smtpsvc_identity", Identity)  # who is asking

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


# The settings the admin listener is made from (the SMTP certificate is its fallback certificate).
ADMIN_KEYS = frozenset(f"server.{name}" for name in (
    "admin_listen", "admin_tls_certificate", "admin_tls_key", "admin_allow_plain_loopback", "tls_certificate",
    "tls_key"))


class AdminTarget(ControlTarget, Protocol):
    """What the admin server needs of the facade beyond the op table: the event bus, the Mailroot and whether
    its Pickup service takes files (the Posting Acceptor)."""

    @property
    def mailroot(self) -> Mailroot: ...
    @property
    def pickup_taking(self) -> bool: ...
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]: ...
    def publish(self, event: Event) -> None: ...
    def before_config(self, take: Callable[[Config, Config], Awaitable[None]]) -> Callable[[], None]: ...


Setup = Callable[["AdminServer", web.Application], None]  # adds routes (the HTML manager, the Posting Acceptor)


def _status(error: Exception) -> int:
    if isinstance(error, AuthError):
        return 403 if error.locked else 401
    if isinstance(error, ForbiddenError):
        return 403
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, StateError):
        return 409
    if isinstance(error, RequestError | ConfigError | DomainError):
        return 400
    return 500 if not isinstance(error, EngineError) else 422


def json_error(error: EngineError, status: int | None = None) -> web.Response:
    response = web.json_response(error_reply(error), status=status or _status(error))
    if isinstance(error, AuthError) and not error.locked:
        response.headers["WWW-Authenticate"] = 'Basic realm="smtpsvc", charset="UTF-8"'
    return response


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def admin_tls(config: Config) -> ssl.SSLContext | None:
    """The admin server's TLS context; None (plain HTTP) only where allowed; BindError says what is missing."""
    server = config.server
    certificate = server.admin_tls_certificate or server.tls_certificate
    key = server.admin_tls_key if server.admin_tls_certificate else server.tls_key
    if certificate:
        try:
            return server_context(certificate, key)
        except TlsError as error:
            raise BindError(f"the admin server cannot use its certificate: {error}") from error
    host, _ = split_hostport(server.admin_listen)
    if server.admin_allow_plain_loopback and _is_loopback(host):
        return None
    raise BindError(f"the admin server on {server.admin_listen} needs a certificate (TLS always): make one with "
                    "`smtpsvc cert new` or set admin_tls_certificate; plain HTTP is allowed only on a loopback "
                    "address with admin_allow_plain_loopback")


def _admin_settings(config: Config) -> tuple[object, ...]:
    return tuple(getattr(config.server, key.removeprefix("server.")) for key in sorted(ADMIN_KEYS))


def _overlaps(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Whether two listening addresses take the same port: equal, or the same port with a wildcard host."""
    wildcard = ("", "0.0.0.0", "::")
    return a[1] != 0 and a[1] == b[1] and (a[0] == b[0] or a[0] in wildcard or b[0] in wildcard)


def _audit_detail(op: str, args: dict[str, Any]) -> str:
    """What an AdminAction says about the arguments: never a secret value, never a whole configuration."""
    def shown(key: object, value: object) -> str:
        option = OPTIONS_BY_NAME.get(str(key).removeprefix("server."))
        return f"{key} = {'********' if option is not None and option.secret else value}"

    if op == "config.set":
        return shown(args.get("key"), args.get("value"))
    if op == "config.set_many" and isinstance(args.get("values"), dict):
        return "; ".join(shown(key, value) for key, value in args["values"].items())[:300]
    if op == "config.replicate":
        settings = args.get("settings")
        server = settings.get("server", {}) if isinstance(settings, dict) else {}
        return f"{len(server) if isinstance(server, dict) else 0} settings and the domains"
    secret = ("password", *DOMAIN_SECRETS)
    shown_args = {k: "********" if k in secret else v for k, v in args.items()}  # never a password
    return json.dumps(shown_args, separators=(",", ":"), default=str)[:300]


def event_json(event: Event) -> dict[str, Any]:
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


class AdminServer:
    """Serves the admin API (and whatever ``setups`` add) on ``admin_listen``; start and stop it on the engine's
    loop. It outlives the virtual server's start and stop, so a stopped server can be started remotely."""

    def __init__(self, target: AdminTarget, *, operators_default: Path | None = None,
                 setups: tuple[Setup, ...] = ()) -> None:
        self.target = target
        self.auth = OperatorAuth(target.config, operators_default, publish=target.publish)
        self._setups = setups
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Queue[Event | None]] = set()
        self.bound: list[tuple[str, int]] = []
        self.tls = False
        self.page_error: Callable[[web.Request, EngineError, int], web.StreamResponse] | None = None
        self._restarting = asyncio.Lock()
        self._site: web.TCPSite | None = None
        self._spec: tuple[str, int, ssl.SSLContext | None] | None = None  # what _site listens on
        self._unfollow: Callable[[], None] | None = None

    # -- lifetime ---------------------------------------------------------------------------------------

    async def start(self, config: Config | None = None) -> None:
        """Listen on ``admin_listen`` of ``config`` (default: the engine's; nothing when it is empty); BindError
        when it cannot. From then on a changed ``admin_listen`` or admin certificate is applied before the
        engine takes it (``VirtualServer.before_config``): refused, with the old listener kept, when it cannot."""
        if self._unfollow is None:  # first: a corrected address applies even when this one cannot be bound
            self._unfollow = self.target.before_config(self._take)
        await self.listen(config or self.target.config())

    def follow(self) -> Callable[[], None]:
        """Apply changed admin settings live from now on (``start`` does it too); returns the remover."""
        if self._unfollow is None:
            self._unfollow = self.target.before_config(self._take)
        return self._stop_following

    def _stop_following(self) -> None:
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None

    async def _take(self, old: Config, new: Config) -> None:
        if _admin_settings(old) != _admin_settings(new):
            await self.listen(new)

    async def listen(self, config: Config) -> None:
        """Listen as ``config`` says, in place of the current listener: the new address is bound before the old
        one is let go, so a BindError (an address in use, a bad certificate) leaves the old listener serving.
        Connections already open stay open (the request that made the change gets its answer)."""
        async with self._restarting:
            address = config.server.admin_listen
            old = self._site
            if not address:
                if old is not None:
                    await old.stop()
                self._site, self._spec, self.bound = None, None, []
                return
            context = admin_tls(config)
            if self._runner is None:
                runner = web.AppRunner(self.application(), access_log=None, handle_signals=False,
                                       shutdown_timeout=5.0)
                await runner.setup()
                self._runner = runner
            host, port = split_hostport(address)
            # The same port again (a new certificate): it is free only once the old listener is let go.
            same = self._spec is not None and _overlaps((host, port), self._spec[:2])
            if same and old is not None:
                await old.stop()
            site = web.TCPSite(self._runner, host, port, ssl_context=context, reuse_address=True)
            try:
                await site.start()
            except OSError as error:
                await site.stop()
                if same and self._spec is not None:
                    self._site = await self._listen_on(*self._spec)  # as before
                still = f"; it still listens on {self.url}" if self.bound else ""
                raise BindError(f"cannot listen on {address} for the admin server: {error.strerror or error}"
                                f"{still}") from error
            if not same and old is not None:
                await old.stop()
            self._site, self._spec = site, (host, port, context)
            self.tls = context is not None
            self.bound = [(str(a[0]), int(a[1])) for a in self._runner.addresses]
            log.info("admin server on %s", self.url)

    async def _listen_on(self, host: str, port: int, context: ssl.SSLContext | None) -> web.TCPSite:
        assert self._runner is not None
        site = web.TCPSite(self._runner, host, port, ssl_context=context, reuse_address=True)
        await site.start()
        return site

    async def stop(self) -> None:
        self._stop_following()
        for queue in list(self._streams):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)  # ends the event streams, so the runner need not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._site, self._spec = None, None
        self.bound = []

    @property
    def url(self) -> str:
        host, port = self.bound[0]
        return f"{'https' if self.tls else 'http'}://{join_hostport(host, port)}"

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._authenticate], client_max_size=API_MAX_BODY)
        app.router.add_get("/api/v1/ops", self._ops)
        app.router.add_get("/api/v1/events", self._events)
        app.router.add_post("/api/v1/{op}", self._call)
        for setup in self._setups:
            setup(self, app)
        return app

    # -- middleware ---------------------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as error:
            response = error
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer would make form posts say Origin: null
        headers.setdefault("Cache-Control", "no-store")
        if self.tls:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if isinstance(response, web.HTTPException) and response.status >= 400:
            raise response
        return response

    @web.middleware
    async def _authenticate(self, request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return json_error(ForbiddenError(f"cross-site request from {origin} refused"))
        if request.path == "/login" or request.path.startswith("/static/"):
            return await handler(request)
        api = request.path.startswith(("/api/", "/post")) and "text/html" not in request.headers.get("Accept", "")
        try:
            request[IDENTITY] = identity = await self.identify(request)
        except AuthError as error:
            if api or request.headers.get("Authorization"):
                return json_error(error)
            raise web.HTTPSeeOther("/login") from None
        try:
            if not may_visit(identity.role, request.path):
                if request.path == "/" and request.method == "GET" and not api:
                    raise web.HTTPSeeOther(home(identity.role))
                raise ForbiddenError(f"the operator {identity.name} is a {identity.role or 'nobody'}: it may only "
                                     "post messages (POST /post, the upload page /upload)")
            return await handler(request)
        except EngineError as error:  # a page's op failed, or a form was refused: say so on a page
            if api or self.page_error is None:
                return json_error(error)
            return self.page_error(request, error, _status(error))

    async def identify(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization")
        if header is not None:
            credentials = parse_basic(header)
            if credentials is None:
                raise AuthError("only HTTP Basic authentication is supported")
            return await self.auth.login(*credentials, request.remote or "")
        token = request.cookies.get(COOKIE, "")
        identity = self.auth.session(token) if token else None
        if identity is None:
            raise AuthError("log in first: HTTP Basic (smtpsvc --connect), or the login page of the HTML manager")
        return identity

    # -- the API ------------------------------------------------------------------------------------------

    async def run_op(self, identity: Identity, peer: str, op: str, args: dict[str, Any]) -> Any:
        """One op for one operator: the role check, the op table's call, the audit event for a change."""
        spec = OPS.get(op)
        if spec is None:
            raise NotFoundError(f"unknown op {op!r}; known: {', '.join(OPS)}")
        if not may_run(identity.role, op):
            raise ForbiddenError(f"{op} changes the server, and the operator {identity.name} is a "
                                 f"{identity.role or 'nobody'} (read-only)")
        token = ACTOR.set(f"{identity.name} (remote, {peer})")
        try:
            result = await call(self.target, op, args)
        finally:
            ACTOR.reset(token)
        if spec.access == "change":
            detail = _audit_detail(op, args)
            log.info("operator %s from %s: %s %s", identity.name, peer, op, detail)
            self.target.publish(AdminAction(identity.name, peer, op, detail))
        return result

    async def _call(self, request: web.Request) -> web.Response:
        identity: Identity = request[IDENTITY]
        if identity.session and request.headers.get("X-CSRF-Token") != identity.csrf:
            return json_error(ForbiddenError("missing or wrong X-CSRF-Token for a session's request"))
        if request.content_type != "application/json":
            return json_error(RequestError("the body must be JSON (Content-Type: application/json)"), 415)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return json_error(RequestError(f"request body larger than {API_MAX_BODY} bytes"), 413)
        try:
            args = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            return json_error(RequestError(f"not a JSON request body: {error}"))
        if not isinstance(args, dict):
            return json_error(RequestError("the body must be a JSON object of the op's arguments"))
        try:
            result = await self.run_op(identity, request.remote or "", request.match_info["op"], args)
        except EngineError as error:
            return json_error(error)
        except Exception as error:  # a bug or an OS error below the facade: say so, keep serving
            log.exception("admin op %s failed", request.match_info["op"])
            return web.json_response({"ok": False, "error": {"type": "InternalError",
                                                             "message": f"{type(error).__name__}: {error}"}},
                                     status=500)
        return web.json_response({"ok": True, "result": result}, dumps=_dumps)

    async def _ops(self, request: web.Request) -> web.Response:
        table = [{"op": name, "doc": op.doc, "access": op.access,
                  "args": {a: {"kind": spec.kind.__name__, "required": spec.required} for a, spec in op.args.items()}}
                 for name, op in OPS.items()]
        return web.json_response({"ok": True, "result": table})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._streams) >= MAX_STREAMS:
            return json_error(StateError(f"too many event streams (at most {MAX_STREAMS})"), 503)
        queue: asyncio.Queue[Event | None] = asyncio.Queue(EVENT_BACKLOG)
        lost = 0

        def collect(event: Event) -> None:
            nonlocal lost
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                lost += 1

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        self._streams.add(queue)
        unsubscribe = self.target.subscribe(collect)
        try:
            await response.write(b": smtpsvc engine events\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                # Everything waiting goes out in one write: under load that is one TLS record for many
                # events, not one each.
                events = [event]
                while len(events) < WRITE_BATCH and not queue.empty():
                    events.append(queue.get_nowait())
                ended = None in events
                chunk = [sse("lost", {"count": lost})] if lost else []
                lost = 0
                for item in events:
                    if item is not None:
                        data = event_json(item)
                        chunk.append(sse(data["type"], data))
                if chunk:
                    await response.write(b"".join(chunk))
                if ended:
                    break
        except ConnectionError:
            pass
        finally:
            unsubscribe()
            self._streams.discard(queue)
        return response


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def sse(name: str, data: Any) -> bytes:
    """One server-sent event (JSON data on one line: json.dumps never emits a raw newline)."""
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()
