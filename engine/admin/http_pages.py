"""The SMTP Service Manager (HTML): server-rendered pages over the op table, for a browser or a phone.

Every page reads through ``AdminServer.run_op`` and every form posts back to it, so a page can do exactly
what the operator's role allows and every change is audited like an API call. Forms carry the session's
CSRF token (the login form a token of its own, bound to a cookie); a form without the right token is refused.
Templates and static files ship in this package (engine/admin/templates, engine/admin/static); the only
JavaScript is engine/admin/static/manager.js (confirmations, live counters and events).
"""

from __future__ import annotations

import hmac
import secrets
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from engine.admin.http_auth import AuthError, ForbiddenError, Identity
from engine.admin.http_server import COOKIE, IDENTITY, AdminServer
from engine.admin.operators import ROLES, home, may_post, may_visit
from engine.conf.config_file import config_from_dict, format_value
from engine.conf.hostport import join_hostport
from engine.conf.options import DOMAIN_TYPE_LABELS, OPTIONS, OPTIONS_BY_NAME, Option
from engine.errors import ConfigError, EngineError
from engine.store.mailroot import join_drop_ref

NAV = (("/", "Server"), ("/properties/General", "Properties"), ("/domains", "Domains"),
       ("/sessions", "Sessions"), ("/queue", "Queue"), ("/badmail", "Badmail"), ("/drop", "Drop"),
       ("/counters", "Counters"), ("/events", "Events"), ("/upload", "Post messages"), ("/operators", "Operators"))
TABS = tuple(dict.fromkeys(option.tab for option in OPTIONS))
PAGE_SIZE = 50
EVENTS_SHOWN = 200  # the newest entries of the last week
SCAN_LIMIT = 100_000  # a filtered queue view reads at most this many messages
LOGIN_COOKIE = "smtpsvc_login"
QUEUE_STATES = ("queued", "active", "deferred", "frozen")

_env = jinja2.Environment(loader=jinja2.PackageLoader("engine.admin", "templates"),
                          autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined)


# Settings whose change can move these pages to another address or scheme.
MOVES_THE_MANAGER = frozenset({"admin_listen", "admin_tls_certificate", "admin_tls_key", "admin_allow_plain_loopback"})
_WILDCARDS = ("", "0.0.0.0", "::")


def moved_url(bound: tuple[str, int], tls: bool, browser_host: str) -> str:
    """Where the browser finds the admin server listening on ``bound``: a wildcard address by the name the
    browser used (the same computer), any other by that address."""
    host, port = bound
    return f"{'https' if tls else 'http'}://{join_hostport(browser_host if host in _WILDCARDS else host, port)}"


def static_dir() -> Path:
    return Path(str(resources.files("engine.admin") / "static"))


def when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "—"


_UNITS = ("_kb", "_mb", "_min", "_ms", "_s")
_ACRONYMS = {"ndr": "NDR", "tls": "TLS", "dns": "DNS", "fqdn": "FQDN", "etrn": "ETRN", "ca": "CA", "helo": "HELO"}


def label(option: Option) -> str:
    """The option's name as words: ``max_message_size_kb`` → "Max message size" (the unit is shown beside)."""
    name = option.name
    for unit in _UNITS:
        if option.unit and name.endswith(unit):
            name = name.removesuffix(unit)
    words = [_ACRONYMS.get(word, word) for word in name.split("_")]
    return " ".join(words)[:1].upper() + " ".join(words)[1:]


def _field(option: Option, value: object, submitted: dict[str, str], problem: str) -> dict[str, Any]:
    kind = "secret" if option.secret else option.type if option.type in ("bool", "int", "choice") else "text"
    text = submitted.get(option.name, format_value(option, value))
    if option.secret:
        text = "yes" if value else ""
    return {"name": option.name, "label": label(option), "kind": kind, "value": text, "choices": option.choices,
            "unit": option.unit, "description": option.description, "iis_name": option.iis_name,
            "problem": problem}


class Pages:
    """The routes of the HTML manager on one admin server."""

    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin
        self._flash: dict[str, tuple[str, str]] = {}

    def setup(self, app: web.Application) -> None:
        app.router.add_static("/static/", static_dir(), show_index=False, follow_symlinks=False)
        routes = app.router
        routes.add_get("/login", self.login_page)
        routes.add_post("/login", self.login)
        routes.add_post("/logout", self.logout)
        routes.add_get("/", self.server_page)
        routes.add_post("/server", self.server_action)
        routes.add_get("/properties", self.properties_first)
        routes.add_get("/properties/{tab}", self.properties_page)
        routes.add_post("/properties/{tab}", self.properties_apply)
        routes.add_get("/domains", self.domains_page)
        routes.add_post("/domains", self.domains_action)
        routes.add_get("/domains/{name}", self.domain_page)
        routes.add_get("/sessions", self.sessions_page)
        routes.add_post("/sessions", self.sessions_action)
        routes.add_get("/queue", self.queue_page)
        routes.add_post("/queue", self.queue_action)
        routes.add_get("/queue/{id}", self.message_page)
        routes.add_get("/badmail", self.badmail_page)
        routes.add_get("/badmail/{name}", self.badmail_item)
        routes.add_post("/badmail", self.badmail_action)
        routes.add_get("/drop", self.drop_page)
        routes.add_get("/drop/{name}", self.drop_item)
        routes.add_post("/drop", self.drop_action)
        routes.add_get("/counters", self.counters_page)
        routes.add_get("/events", self.events_page)
        routes.add_get("/upload", self.upload_page)
        routes.add_get("/operators", self.operators_page)
        routes.add_post("/operators", self.operators_action)

    # -- rendering and forms ------------------------------------------------------------------------------

    def render(self, request: web.Request, template: str, title: str, section: str = "", status: int = 200,
               **context: Any) -> web.Response:
        identity: Identity | None = request.get(IDENTITY)
        flash = self._flash.pop(identity.session, None) if identity and identity.session else None
        nav = [(href, text) for href, text in NAV if identity is not None and may_visit(identity.role, href)]
        html = _env.get_template(template).render(
            identity=identity, csrf=identity.csrf if identity else "", nav=nav, section=section, title=title,
            server_name=self.admin.target.config().name, flash=flash, when=when,
            admin=identity is not None and identity.role == "admin",
            poster=identity is not None and may_post(identity.role), **context)
        return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)

    def error_page(self, request: web.Request, error: EngineError, status: int) -> web.Response:
        back = request.headers.get("Referer", "/")
        return self.render(request, "error.html", "Not done", status=status, message=str(error),
                           back=back if back.startswith(f"{request.scheme}://{request.host}/") else "/")

    def say(self, identity: Identity, kind: str, text: str) -> None:
        if identity.session:
            self._flash[identity.session] = (kind, text)

    async def form(self, request: web.Request) -> tuple[Identity, Any]:
        """The posted form of a logged-in session, its CSRF token checked."""
        identity: Identity = request[IDENTITY]
        data = await request.post()
        token = data.get("csrf")
        if not identity.csrf or not isinstance(token, str) or not hmac.compare_digest(token, identity.csrf):
            raise ForbiddenError("this form did not come from this manager's pages (missing or wrong CSRF token); "
                                 "reload the page and try again")
        return identity, data

    async def op(self, request: web.Request, identity: Identity, op: str, args: dict[str, Any]) -> Any:
        return await self.admin.run_op(identity, request.remote or "", op, args)

    async def act(self, request: web.Request, op: str, args: dict[str, Any], done: str, back: str) -> web.Response:
        """Run a form's op; the outcome is said on the page the browser goes back to."""
        identity, _ = await self.form(request)
        try:
            await self.op(request, identity, op, args)
        except EngineError as error:
            self.say(identity, "error", str(error))
        else:
            self.say(identity, "ok", done)
        raise web.HTTPSeeOther(back)

    # -- login --------------------------------------------------------------------------------------------

    async def login_page(self, request: web.Request, error: str = "", name: str = "", status: int = 200
                         ) -> web.Response:
        # Reuse the browser's token: a second GET (another tab, a redirected favicon) must not void the first form.
        token = request.cookies.get(LOGIN_COOKIE, "")
        if len(token) < 24 or not token.isascii():
            token = secrets.token_urlsafe(24)
        response = self.render(request, "login.html", "Log in", login_token=token, error=error, name=name,
                               status=status)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, secure=self.admin.tls, samesite="Strict",
                            path="/login")
        return response

    async def login(self, request: web.Request) -> web.Response:
        data = await request.post()
        token, cookie = data.get("login_token"), request.cookies.get(LOGIN_COOKIE, "")
        name, password = data.get("name"), data.get("password")
        if not isinstance(token, str) or not cookie or not hmac.compare_digest(token, cookie):
            return await self.login_page(request, "The login form expired or did not come from this page; "
                                                  "try again.", status=403)
        if not isinstance(name, str) or not isinstance(password, str):
            return await self.login_page(request, "Give an operator name and a password.", status=400)
        try:
            identity = await self.admin.auth.login(name, password, request.remote or "")
        except AuthError as error:
            return await self.login_page(request, str(error), name, status=403 if error.locked else 401)
        session = self.admin.auth.open_session(identity)
        response = web.HTTPSeeOther(home(identity.role))
        response.set_cookie(COOKIE, session.session, httponly=True, secure=self.admin.tls, samesite="Strict",
                            path="/")
        response.del_cookie(LOGIN_COOKIE, path="/login")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        identity, _ = await self.form(request)
        self.admin.auth.close_session(identity.session)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    # -- server ---------------------------------------------------------------------------------------------

    async def server_page(self, request: web.Request) -> web.Response:
        state = await self.op(request, request[IDENTITY], "state", {})
        return self.render(request, "server.html", "Default SMTP Virtual Server", "Server", state=state)

    async def server_action(self, request: web.Request) -> web.Response:
        data = await request.post()
        action = data.get("action")
        if action not in ("start", "stop", "pause", "continue"):
            raise ForbiddenError(f"unknown action {action!r}")
        return await self.act(request, f"server.{action}", {}, f"{str(action).capitalize()}: done.", "/")

    # -- properties -------------------------------------------------------------------------------------------

    async def properties_first(self, request: web.Request) -> web.Response:
        raise web.HTTPSeeOther(f"/properties/{TABS[0]}")

    def _tab(self, request: web.Request) -> str:
        tab = request.match_info["tab"]
        if tab not in TABS:
            raise web.HTTPNotFound(text=f"no property page {tab!r}")
        return tab

    async def properties_page(self, request: web.Request, submitted: dict[str, str] | None = None,
                              problems: list[tuple[str, str]] | None = None) -> web.Response:
        tab = self._tab(request)
        config = config_from_dict(await self.op(request, request[IDENTITY], "config.get", {}))
        by_field: dict[str, str] = {}
        for key, why in problems or []:
            by_field.setdefault(key.removeprefix("server."), why)
        fields = [_field(o, getattr(config.server, o.name), submitted or {}, by_field.get(o.name, ""))
                  for o in OPTIONS if o.tab == tab]
        return self.render(request, "properties.html", f"Properties — {tab}", "Properties", tabs=TABS,
                           current=tab, fields=fields, problems=problems or [], status=400 if problems else 200)

    async def properties_apply(self, request: web.Request) -> web.Response:
        tab = self._tab(request)
        identity, data = await self.form(request)
        config = config_from_dict(await self.op(request, identity, "config.get", {}))
        present = set(data.getall("present", []))
        values: dict[str, str] = {}
        for option in (o for o in OPTIONS if o.tab == tab):
            if option.type == "bool":
                if option.name in present:
                    values[option.name] = "yes" if data.get(option.name) == "yes" else "no"
                continue
            text = data.get(option.name)
            if not isinstance(text, str) or (option.secret and not text):
                continue  # a secret left blank stays as it is
            values[option.name] = text
        changed = {k: v for k, v in values.items()
                   if v.strip() != format_value(OPTIONS_BY_NAME[k], getattr(config.server, k))}
        if not changed:
            self.say(identity, "ok", "Nothing changed.")
            raise web.HTTPSeeOther(f"/properties/{tab}")
        try:
            await self.op(request, identity, "config.set_many", {"values": changed})
        except ConfigError as error:
            return await self.properties_page(request, values, list(error.problems))
        except EngineError as error:
            self.say(identity, "error", str(error))
        else:
            self.say(identity, "ok", f"Applied: {', '.join(label(OPTIONS_BY_NAME[k]) for k in changed)}.")
            if MOVES_THE_MANAGER & changed.keys() and self.admin.bound:  # the old address no longer answers
                raise web.HTTPSeeOther(moved_url(self.admin.bound[0], self.admin.tls, request.url.host or "")
                                       + f"/properties/{tab}")
        raise web.HTTPSeeOther(f"/properties/{tab}")

    # -- domains, sessions ------------------------------------------------------------------------------------

    async def domains_page(self, request: web.Request) -> web.Response:
        domains = await self.op(request, request[IDENTITY], "domain.list", {})
        return self.render(request, "domains.html", "Domains", "Domains", domains=domains, labels=DOMAIN_TYPE_LABELS)

    async def domains_action(self, request: web.Request) -> web.Response:
        data = await request.post()
        action, name = data.get("action"), str(data.get("name", "")).strip()
        if action == "add":
            args = {"name": name, "type": str(data.get("type", "remote")), "relay": data.get("relay") == "yes",
                    "smart_host": str(data.get("smart_host", "")).strip()}
            return await self.act(request, "domain.add", args, f"Added the domain {name}.", "/domains")
        if action == "update":
            args = {"name": name, "relay": data.get("relay") == "yes",
                    "smart_host": str(data.get("smart_host", "")).strip(),
                    "tls_required": data.get("tls_required") == "yes", "use_helo": data.get("use_helo") == "yes",
                    "etrn": data.get("etrn") == "yes"}
            return await self.act(request, "domain.update", args, f"Applied the properties of {name}.",
                                  f"/domains/{name}")
        if action in ("delete", "set_default"):
            done = f"Deleted {name}." if action == "delete" else f"{name} is now the default domain."
            return await self.act(request, f"domain.{action}", {"name": name}, done, "/domains")
        raise ForbiddenError(f"unknown action {action!r}")

    async def domain_page(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        domains = await self.op(request, request[IDENTITY], "domain.list", {})
        domain = next((d for d in domains if d["name"].lower() == name.lower()), None)
        if domain is None:
            raise web.HTTPNotFound(text=f"no domain {name!r}")
        return self.render(request, "domain.html", f"{domain['name']} Properties", "Domains", domain=domain,
                           labels=DOMAIN_TYPE_LABELS)

    async def sessions_page(self, request: web.Request) -> web.Response:
        sessions = await self.op(request, request[IDENTITY], "sessions.list", {})
        return self.render(request, "sessions.html", "Current Sessions", "Sessions", sessions=sessions)

    async def sessions_action(self, request: web.Request) -> web.Response:
        data = await request.post()
        if data.get("action") == "terminate_all":
            return await self.act(request, "sessions.terminate_all", {}, "Every session was ended.", "/sessions")
        session_id = str(data.get("id", ""))
        return await self.act(request, "sessions.terminate", {"id": session_id}, "The session was ended.",
                              "/sessions")

    # -- queue ----------------------------------------------------------------------------------------------

    async def queue_page(self, request: web.Request) -> web.Response:
        identity = request[IDENTITY]
        q = request.query.get("q", "").strip()
        state = request.query.get("state", "")
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            page = 1
        matching: int | None = None
        if q or state:
            listing = await self.op(request, identity, "queue.list", {"limit": SCAN_LIMIT})
            needle = q.lower()
            found = [i for i in listing["items"] if (not state or i["state"] == state) and (
                not needle or any(needle in str(v).lower() for v in
                                  (i["queue_id"], i["sender"], *i["recipients"], i["last_error"])))]
            matching, total = len(found), listing["total"]
            items = found[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
            count = matching
        else:
            listing = await self.op(request, identity, "queue.list",
                                    {"offset": (page - 1) * PAGE_SIZE, "limit": PAGE_SIZE})
            items, total = listing["items"], listing["total"]
            count = total
        pages = max(1, -(-count // PAGE_SIZE))

        def page_link(number: int) -> str:
            return "/queue?" + urlencode({k: v for k, v in (("q", q), ("state", state), ("page", number)) if v})

        return self.render(request, "queue.html", "Queue", "Queue", items=items, total=total, shown=len(items),
                           matching=matching, q=q, state=state, states=QUEUE_STATES, page=page, pages=pages,
                           page_link=page_link, back=request.path_qs, recovering=bool(listing.get("recovering")))

    async def queue_action(self, request: web.Request) -> web.Response:
        identity, data = await self.form(request)
        ids = [str(i) for i in data.getall("id", [])]
        action = data.get("action")
        back = str(data.get("back", "/queue"))
        back = back if back.startswith("/queue") else "/queue"
        if not ids:
            self.say(identity, "error", "Select one or more messages first.")
            raise web.HTTPSeeOther(back)
        if action == "retry":
            count = (await self.op(request, identity, "queue.flush", {"ids": ids}))["count"]
            self.say(identity, "ok", f"{count} message(s) due for delivery now.")
            raise web.HTTPSeeOther(back)
        if action not in ("freeze", "thaw", "delete", "bounce"):
            raise ForbiddenError(f"unknown action {action!r}")
        failed = []
        for queue_id in ids:
            try:
                await self.op(request, identity, f"queue.{action}", {"id": queue_id})
            except EngineError as error:
                failed.append(f"{queue_id}: {error}")
        done = {"freeze": "frozen", "thaw": "thawed", "delete": "deleted", "bounce": "returned to the sender"}
        if failed:
            self.say(identity, "error", "; ".join(failed))
        else:
            self.say(identity, "ok", f"{len(ids)} message(s) {done[str(action)]}.")
        raise web.HTTPSeeOther(back)

    async def message_page(self, request: web.Request) -> web.Response:
        queue_id = request.match_info["id"]
        detail = await self.op(request, request[IDENTITY], "queue.show", {"id": queue_id})
        item = detail["item"]
        rows = [("Queue ID", item["queue_id"]), ("State", item["state"]), ("Sender", item["sender"] or "<>"),
                ("Arrived", when(item["arrived"])), ("Size", f"{item['size']} bytes"), ("Source", item["source"]),
                ("Attempts", item["attempts"]), ("Next attempt", "held (frozen)" if item["state"] == "frozen"
                                                 else when(item["next_attempt"])),
                ("Delay notice", "sent" if detail["delay_notice_sent"] else "not sent"),
                ("Last error", item["last_error"] or "—")]
        actions = [("retry", "Retry now", ""), ("freeze", "Freeze", ""), ("thaw", "Thaw", ""),
                   ("bounce", "Bounce", "Return this message to its sender now?"),
                   ("delete", "Delete", "Delete this message? Nobody is told.")]
        return self.render(request, "message.html", f"Message {queue_id}", "Queue", rows=rows,
                           recipients=detail["recipients"], schedule=detail["schedule"],
                           text=detail["transcript"] or "(no attempt yet)", text_title="SMTP transcript",
                           actions=actions, action_url="/queue", hidden=[("id", queue_id), ("back", "/queue")])

    # -- Badmail and Drop -------------------------------------------------------------------------------------

    async def badmail_page(self, request: web.Request) -> web.Response:
        items = await self.op(request, request[IDENTITY], "badmail.list", {})
        rows = [{"href": f"/badmail/{i['name']}", "cells": [i["name"], when(i["at"]), i["sender"] or "<>",
                                                              ", ".join(i["recipients"]), i["reason"]]}
                for i in sorted(items, key=lambda i: i["at"], reverse=True)]
        return self.render(request, "folder.html", "Badmail", "Badmail", items=rows,
                           headings=("Name", "Date", "Sender", "Recipients", "Reason"), empty="Badmail is empty.")

    async def badmail_item(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await self.op(request, request[IDENTITY], "badmail.read", {"name": name})
        actions = [("resend", "Resend (back into Pickup)", ""), ("delete", "Delete", f"Delete {name}?")]
        return self.render(request, "message.html", f"Badmail {name}", "Badmail",
                           rows=[("Name", name), ("Size", f"{body['size']} bytes")], recipients=[], schedule=[],
                           text=body["text"], text_title="Message", actions=actions, action_url="/badmail",
                           hidden=[("name", name)])

    async def badmail_action(self, request: web.Request) -> web.Response:
        data = await request.post()
        name, action = str(data.get("name", "")), data.get("action")
        if action == "resend":
            return await self.act(request, "badmail.resend", {"name": name}, f"{name} went back into Pickup.",
                                  "/badmail")
        return await self.act(request, "badmail.delete", {"name": name}, f"Deleted {name}.", "/badmail")

    async def drop_page(self, request: web.Request) -> web.Response:
        items = await self.op(request, request[IDENTITY], "drop.list", {})
        rows = [{"href": f"/drop/{i['name']}" + (f"?{urlencode({'domain': i['domain']})}" if i.get("domain") else ""),
                 "cells": [i["name"], i.get("domain", ""), when(i["at"]), i["sender"] or "<>",
                           ", ".join(i["recipients"]), i["subject"]]}
                for i in sorted(items, key=lambda i: i["at"], reverse=True)]
        return self.render(request, "folder.html", "Drop", "Drop", items=rows,
                           headings=("File", "Domain", "Date", "Sender", "Recipients", "Subject"),
                           empty="Drop is empty.")

    async def drop_item(self, request: web.Request) -> web.Response:
        # Each local domain may have its own Drop: the op names a file "domain/file" (DropItem.ref).
        name = join_drop_ref(request.query.get("domain", ""), request.match_info["name"])
        body = await self.op(request, request[IDENTITY], "drop.read", {"name": name})
        return self.render(request, "message.html", f"Drop {name}", "Drop",
                           rows=[("File", name), ("Size", f"{body['size']} bytes")], recipients=[], schedule=[],
                           text=body["text"], text_title="Message",
                           actions=[("resend", "Resend (a copy into Pickup)", f"Deliver {name} again?"),
                                    ("delete", "Delete", f"Delete {name}?")],
                           action_url="/drop", hidden=[("name", name)])

    async def drop_action(self, request: web.Request) -> web.Response:
        data = await request.post()
        name = str(data.get("name", ""))
        if data.get("action") == "resend":
            return await self.act(request, "drop.resend", {"name": name}, f"A copy of {name} went into Pickup.",
                                  "/drop")
        return await self.act(request, "drop.delete", {"name": name}, f"Deleted {name}.", "/drop")

    # -- counters, events, upload -----------------------------------------------------------------------------

    async def counters_page(self, request: web.Request) -> web.Response:
        counters = await self.op(request, request[IDENTITY], "counters", {})
        return self.render(request, "counters.html", "Performance Counters", "Counters",
                           counters=sorted(counters.items()), now=when(time.time()))

    async def events_page(self, request: web.Request) -> web.Response:
        entries = await self.op(request, request[IDENTITY], "events.list", {"since": int(time.time()) - 7 * 86400})
        log = [{"when": when(e["at"]), "level": e["level"], "id": e["id"], "source": e["source"], "text": e["text"]}
               for e in reversed(entries[-EVENTS_SHOWN:])]
        return self.render(request, "events.html", "Event Log", "Events", log=log)

    async def operators_page(self, request: web.Request) -> web.Response:
        operators = await self.op(request, request[IDENTITY], "operators.list", {})
        return self.render(request, "operators.html", "Operators", "Operators", operators=operators, roles=ROLES)

    async def operators_action(self, request: web.Request) -> web.Response:
        data = await request.post()
        name = str(data.get("name", "")).strip()
        if data.get("action") == "delete":
            return await self.act(request, "operators.delete", {"name": name}, f"Removed the operator {name}.",
                                  "/operators")
        password = str(data.get("password", ""))
        if password != data.get("password2"):
            identity, _ = await self.form(request)
            self.say(identity, "error", "The two passwords differ; nothing was changed.")
            raise web.HTTPSeeOther("/operators")
        args = {"name": name, "password": password, "role": str(data.get("role", "admin"))}
        return await self.act(request, "operators.add", args, f"Added the operator {name}.", "/operators")

    async def upload_page(self, request: web.Request, results: list[dict[str, Any]] | None = None) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        return self.render(request, "upload.html", "Post Messages", "Post messages", results=results or [],
                           base=base, pickup_taking=self.admin.target.pickup_taking)


def setup(admin: AdminServer, app: web.Application) -> None:
    """Add the HTML manager to an admin server's application (an ``http_server.Setup``)."""
    pages = Pages(admin)
    pages.setup(app)
    admin.page_error = pages.error_page
    app[PAGES_KEY] = pages


PAGES_KEY: web.AppKey[Pages] = web.AppKey("smtpsvc_pages", Pages)
