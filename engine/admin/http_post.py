"""The Posting Acceptor: ``POST /post``, multipart/form-data (RFC 7578) of one or more message files.

Each file part is streamed to SortTemp (memory stays bounded whatever the upload's size), refused once it
passes the message size limit, then read as a Pickup file is read (x-sender/x-receiver lines, or the
headers) and committed through the same intake as Pickup and SMTP — durably, before it is answered as
accepted with its queue id; local recipients land in Drop. Every file gets its own answer: accepted with
its queue id, or refused with the reason (not a message file, too large, no recipients...). Answers are
JSON for a program (``curl -F file=@a.eml``) and a page for the manager's upload form.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from engine.admin.http_auth import ForbiddenError, Identity
from engine.admin.http_pages import PAGES_KEY
from engine.admin.http_server import IDENTITY, AdminServer, json_error
from engine.errors import EngineError
from engine.events import AdminAction
from engine.pickup.pickup import PickupError, parse_pickup
from engine.store.mailroot import new_id

log = logging.getLogger(__name__)

SUFFIXES = (".eml", ".txt")
HARD_LIMIT = 64 * 1024 * 1024  # when the message size limit is off, an upload still stops here
MAX_FILES = 100  # files in one request
MAX_FIELD = 4096  # a non-file form field (the CSRF token)
CHUNK = 64 * 1024


def _refused(name: str, reason: str) -> dict[str, Any]:
    return {"file": name, "accepted": False, "reason": reason}


class PostingAcceptor:
    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin

    async def post(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        wants_page = "text/html" in request.headers.get("Accept", "")
        if identity.role != "admin":
            return json_error(ForbiddenError(f"posting messages needs the admin role; {identity.name} is a "
                                             f"{identity.role}"))
        if request.content_type != "multipart/form-data":
            return json_error(EngineError("the body must be multipart/form-data (curl -F file=@message.eml)"), 415)
        server = self.admin.target.config().server
        limit = server.max_message_size_kb * 1024 or HARD_LIMIT
        results: list[dict[str, Any]] = []
        token_ok = not identity.session  # HTTP Basic carries no cookie: no CSRF token needed
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                await part.release()
                continue
            if part.filename is None:
                value = await part.read_chunk(MAX_FIELD)
                await part.release()
                if part.name == "csrf" and identity.csrf:
                    token_ok = hmac.compare_digest(value, identity.csrf.encode())
                continue
            if not token_ok:
                return json_error(ForbiddenError("the upload form's CSRF token is missing or wrong (it must come "
                                                 "before the files); reload the page and try again"))
            if len(results) >= MAX_FILES:
                await part.release()
                results.append(_refused(part.filename, f"more than {MAX_FILES} files in one request"))
                continue
            results.append(await self._one(part, identity, request.remote or "", limit))
        if not results:
            return json_error(EngineError("no file in the request (a form field with a file name, e.g. "
                                          "curl -F file=@message.eml)"), 400)
        if wants_page and identity.session:
            pages = request.app.get(PAGES_KEY)
            if pages is not None:
                return await pages.upload_page(request, results)
        return web.json_response({"ok": True, "result": {"files": results}})

    async def _one(self, part: BodyPartReader, identity: Identity, peer: str, limit: int) -> dict[str, Any]:
        name = os.path.basename((part.filename or "").replace("\\", "/")) or "(no name)"
        if not name.lower().endswith(SUFFIXES):
            await part.release()
            return _refused(name, "not a message file: only .eml and .txt files are taken")
        mailroot = self.admin.target.mailroot
        spool = mailroot.sorttemp / f"post-{new_id()}.tmp"
        try:
            size = await self._spool(part, spool, limit)
            if size > limit:
                return _refused(name, f"too large: more than {limit // 1024} KB (the message size limit)")
            data = await asyncio.to_thread(spool.read_bytes)
            try:
                message = parse_pickup(data, self.admin.target.config().default_domain.name)
            except PickupError as error:
                return _refused(name, str(error))
            if not message.recipients:
                return _refused(name, "no recipients: no x-receiver line and no To, Cc or Bcc header")
            try:
                queue_id = await self.admin.target.submit(message.sender, message.recipients, message.content, "post")
            except EngineError as error:
                return _refused(name, str(error))
        finally:
            with contextlib.suppress(OSError):
                spool.unlink()
        log.info("operator %s from %s posted %s: %s", identity.name, peer, name, queue_id)
        self.admin.target.publish(AdminAction(identity.name, peer, "post", f"{name}: {queue_id}"))
        return {"file": name, "accepted": True, "queue_id": queue_id}

    async def _spool(self, part: BodyPartReader, path: Path, limit: int) -> int:
        """Write the part to ``path`` chunk by chunk; past ``limit`` the rest is read and dropped. Its size."""
        size = 0
        handle = await asyncio.to_thread(open, path, "wb")
        try:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size <= limit:
                    await asyncio.to_thread(handle.write, chunk)
        finally:
            await asyncio.to_thread(handle.close)
        return size


def setup(admin: AdminServer, app: web.Application) -> None:
    """Add ``POST /post`` to an admin server's application (an ``http_server.Setup``)."""
    app.router.add_post("/post", PostingAcceptor(admin).post)
