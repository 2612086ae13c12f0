"""The Posting Acceptor: ``POST /post``, multipart/form-data (RFC 7578) of message files, put into Pickup.

Each file part is streamed to SortTemp (memory stays bounded whatever the upload's size: the checks read its
header section, not the whole file) and checked by the Pickup rules first: not a message file, too large or no
recipients is refused at once and never reaches Pickup. A good file is fsynced and renamed into Pickup as
``<queue id>-<name>`` (the Pickup service submits such a file under that id), the directory fsynced: from then
on it is not lost, whatever becomes of the engine. The answer then waits (at most ``WAIT_S``) for the Pickup
service's outcome: "queued" with the queue id, or "refused" with the reason it went to Badmail. When the Pickup
service does not take files (the server is stopped, or its queue cannot store for now) or is slower than that,
the file is answered "pickup": accepted into Pickup, to be queued under that id when the service runs, and the
request gets 202.
Answers are JSON for a program (``curl -F file=@a.eml``) and a page for the manager's upload form.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any, Literal

from aiohttp import BodyPartReader, web

from engine.admin.http_auth import ForbiddenError, Identity
from engine.admin.http_pages import PAGES_KEY
from engine.admin.http_server import IDENTITY, AdminServer, AdminTarget, json_error
from engine.admin.operators import may_post
from engine.errors import EngineError
from engine.events import AdminAction, Event, MessageBadmailed, MessageQueued
from engine.pickup.pickup import MAX_HEADER_BYTES, PickupError, parse_pickup
from engine.store.mailroot import move_durable, new_id

log = logging.getLogger(__name__)

SUFFIXES = (".eml", ".txt")
HARD_LIMIT = 64 * 1024 * 1024  # the Pickup service's own file limit: an upload never passes it
MAX_FILES = 100  # files in one request
MAX_FIELD = 4096  # a non-file form field (the CSRF token)
CHUNK = 64 * 1024
WAIT_S = 10.0  # how long an answer waits for the Pickup service's outcome before saying "in Pickup"
BLANK = b" \t\r\n"  # what an empty Pickup file may hold
PROBE_BYTES = MAX_HEADER_BYTES + 64 * 1024  # read of a large upload for the checks: its whole header section
NAME_KEPT = 100  # characters of the uploaded file's name kept in the Pickup file's name

State = Literal["queued", "pickup", "refused"]


def _refused(name: str, reason: str) -> dict[str, Any]:
    return {"file": name, "accepted": False, "state": "refused", "reason": reason}


def _in_pickup(name: str, queue_id: str, why: str) -> dict[str, Any]:
    return {"file": name, "accepted": True, "state": "pickup", "queue_id": queue_id,
            "detail": f"accepted into Pickup; {why}. It is queued as {queue_id} when the service takes it."}


def pickup_name(queue_id: str, name: str) -> str:
    """The Pickup file's name: the queue id it is to be submitted under, then the uploaded name (tamed)."""
    stem, suffix = os.path.splitext(name)
    tame = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in stem)
    return f"{queue_id}-{tame[:NAME_KEPT]}{suffix.lower()}"


class _Outcomes:
    """The Pickup service's outcome for each file dropped by one request, from the engine's events."""

    def __init__(self, target: AdminTarget) -> None:
        self._waiting: dict[str, asyncio.Future[tuple[State, str]]] = {}
        self._unsubscribe = target.subscribe(self._event)

    def expect(self, queue_id: str) -> None:
        """Call before the file appears in Pickup: its outcome can follow at once."""
        self._waiting[queue_id] = asyncio.get_running_loop().create_future()

    def _event(self, event: Event) -> None:
        if isinstance(event, MessageQueued) and event.source == "pickup":
            outcome: tuple[State, str] = ("queued", "")
        elif isinstance(event, MessageBadmailed) and event.source == "pickup":
            outcome = ("refused", f"{event.reason} (in Badmail as {event.name})")
        else:
            return
        future = self._waiting.get(getattr(event, "queue_id", ""))
        if future is not None and not future.done():
            future.set_result(outcome)

    async def wait(self, timeout: float) -> dict[str, tuple[State, str]]:
        """The outcomes known within ``timeout`` seconds, by queue id."""
        pending = [future for future in self._waiting.values() if not future.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        return {queue_id: future.result() for queue_id, future in self._waiting.items() if future.done()}

    def close(self) -> None:
        self._unsubscribe()
        for future in self._waiting.values():
            future.cancel()


class PostingAcceptor:
    def __init__(self, admin: AdminServer) -> None:
        self.admin = admin

    async def post(self, request: web.Request) -> web.StreamResponse:
        identity: Identity = request[IDENTITY]
        wants_page = "text/html" in request.headers.get("Accept", "")
        if not may_post(identity.role):
            return json_error(ForbiddenError(f"posting messages needs the admin or the poster role; "
                                             f"{identity.name} is a {identity.role}"))
        if request.content_type != "multipart/form-data":
            return json_error(EngineError("the body must be multipart/form-data (curl -F file=@message.eml)"), 415)
        server = self.admin.target.config().server
        limit = min(server.max_message_size_kb * 1024 or HARD_LIMIT, HARD_LIMIT)
        results: list[dict[str, Any]] = []
        token_ok = not identity.session  # HTTP Basic carries no cookie: no CSRF token needed
        outcomes = _Outcomes(self.admin.target)
        try:
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
                    return json_error(ForbiddenError("the upload form's CSRF token is missing or wrong (it must "
                                                     "come before the files); reload the page and try again"))
                if len(results) >= MAX_FILES:
                    await part.release()
                    results.append(_refused(part.filename, f"more than {MAX_FILES} files in one request"))
                    continue
                results.append(await self._one(part, identity, request.remote or "", limit, outcomes))
            if not results:
                return json_error(EngineError("no file in the request (a form field with a file name, e.g. "
                                              "curl -F file=@message.eml)"), 400)
            await self._answer(results, outcomes)
        finally:
            outcomes.close()
        status = 202 if any(r["state"] == "pickup" for r in results) else 200
        if wants_page and identity.session:
            pages = request.app.get(PAGES_KEY)
            if pages is not None:
                return await pages.upload_page(request, results)
        return web.json_response({"ok": True, "result": {"files": results}}, status=status)

    async def _answer(self, results: list[dict[str, Any]], outcomes: _Outcomes) -> None:
        """Replace each "in Pickup" answer by the Pickup service's outcome, when it comes in time."""
        if not any(r["state"] == "pickup" for r in results):
            return
        taking = self.admin.target.pickup_taking
        known = await outcomes.wait(WAIT_S) if taking else {}
        why = ("the Pickup service has not taken it yet" if taking else
               "the Pickup service is not running (the server is stopped, or its queue cannot store now)")
        for index, result in enumerate(results):
            if result["state"] != "pickup":
                continue
            name, queue_id = result["file"], result["queue_id"]
            state, reason = known.get(queue_id, ("pickup", ""))
            if state == "queued":
                results[index] = {"file": name, "accepted": True, "state": "queued", "queue_id": queue_id}
            elif state == "refused":
                results[index] = {**_refused(name, reason), "queue_id": queue_id}
            else:
                results[index] = _in_pickup(name, queue_id, why)

    async def _one(self, part: BodyPartReader, identity: Identity, peer: str, limit: int,
                   outcomes: _Outcomes) -> dict[str, Any]:
        name = os.path.basename((part.filename or "").replace("\\", "/")) or "(no name)"
        if not name.lower().endswith(SUFFIXES):
            await part.release()
            return _refused(name, "not a message file: only .eml and .txt files are taken")
        mailroot = self.admin.target.mailroot
        queue_id = new_id()
        spool = mailroot.sorttemp / f"post-{queue_id}.tmp"
        try:
            await asyncio.to_thread(mailroot.sorttemp.mkdir, parents=True, exist_ok=True, mode=0o700)
            size = await self._spool(part, spool, limit)
            if size > limit:
                return _refused(name, f"too large: more than {limit // 1024} KB (the message size limit)")
            probe = await asyncio.to_thread(_probe, spool, size)
            try:
                parse_pickup(probe, self.admin.target.config().default_domain.name)  # what Pickup will do
            except PickupError as error:
                return _refused(name, str(error))
            del probe
            outcomes.expect(queue_id)
            target = mailroot.pickup / pickup_name(queue_id, name)
            try:
                await asyncio.to_thread(_into_pickup, spool, target)
            except OSError as error:
                return _refused(name, f"Pickup could not store it: {error.strerror or error}")
        finally:
            with contextlib.suppress(OSError):
                spool.unlink()
        log.info("operator %s from %s posted %s into Pickup as %s", identity.name, peer, name, target.name)
        self.admin.target.publish(AdminAction(identity.name, peer, "post", f"{name}: into Pickup as {queue_id}"))
        return _in_pickup(name, queue_id, "not answered yet")

    async def _spool(self, part: BodyPartReader, path: Path, limit: int) -> int:
        """Write the part to ``path`` chunk by chunk and fsync it; past ``limit`` the rest is read and dropped.
        Returns the part's size."""
        size = 0
        handle = await asyncio.to_thread(open, path, "xb")
        try:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size <= limit:
                    await asyncio.to_thread(handle.write, chunk)
            if size <= limit:
                await asyncio.to_thread(_sync, handle)
        finally:
            await asyncio.to_thread(handle.close)
        return size


def _probe(spool: Path, size: int) -> bytes:
    """What the Pickup checks need of the spooled file to refuse it as the whole file would be refused: every
    refusal is decided by the header section (at most MAX_HEADER_BYTES), by whether the file ends with a lone
    "." line (dot-stuffed) and by whether it is blank throughout. A large file is read as its first PROBE_BYTES,
    then a last line standing for its real one, so an upload costs about a megabyte of memory whatever its size."""
    with open(spool, "rb") as handle:
        if size <= PROBE_BYTES:
            return handle.read()
        head = handle.read(PROBE_BYTES)
        if not head.strip(BLANK):  # blank so far: only the whole file says whether it is empty
            while chunk := handle.read(CHUNK):
                if chunk.strip(BLANK):
                    break
            else:
                return b""
        handle.seek(size - 5)
        tail = handle.read()
    stuffed = tail.endswith((b"\n.\r\n", b"\n.\n")) or tail.endswith(b"\n.")
    return head + b"\r\n" + (b".\r\n" if stuffed else b"(the rest of the file)\r\n")


def _sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _into_pickup(spool: Path, target: Path) -> None:
    """The fsynced spool becomes ``target`` in Pickup whole (a rename, or a durable copy across filesystems)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    move_durable(spool, target)


def setup(admin: AdminServer, app: web.Application) -> None:
    """Add ``POST /post`` to an admin server's application (an ``http_server.Setup``)."""
    app.router.add_post("/post", PostingAcceptor(admin).post)
