"""The window's engine facade (ui.facade.EngineFacade), written once: each call names the VirtualServer method
it stands for, and a transport runs it — on the embedded engine's thread (app/host.py) or over a remote
computer's admin server (app/remote_host.py). A new call is one line here and, for remote computers, one
route in app/remote_host.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from engine.admin.perf import History
from engine.conf.config import Config
from engine.server import VirtualServer
from ui.facade import EngineSnapshot

P = ParamSpec("P")
T = TypeVar("T")
Method = Callable[Concatenate[VirtualServer, P], Awaitable[T]]


class Transport(EngineSnapshot, Protocol):
    """Runs a facade call and keeps the snapshots the window reads without waiting."""

    async def run(self, method: Callable[Concatenate[VirtualServer, P], Awaitable[T]], /,
                  *args: P.args, **kwargs: P.kwargs) -> T: ...


def forward(method: Callable[Concatenate[VirtualServer, P], Awaitable[T]]
            ) -> Callable[Concatenate[EngineProxy, P], Coroutine[Any, Any, T]]:
    """The proxy's method for ``method``: same parameters, run by the proxy's transport."""
    async def call(self: EngineProxy, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.transport.run(method, *args, **kwargs)

    call.__name__ = call.__qualname__ = getattr(method, "__name__", "call")
    call.__doc__ = method.__doc__
    return call


async def counter_history(server: VirtualServer, seconds: float | None = None) -> History:
    """VirtualServer.counter_history is synchronous (it reads the sampler's memory): the async form a call needs."""
    return server.counter_history(seconds)


class EngineProxy:
    """The facade the window sees, for any transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @property
    def state(self) -> str:
        return self.transport.state

    @property
    def bound_addresses(self) -> list[tuple[str, int]]:
        return self.transport.bound_addresses

    @property
    def mailroot(self) -> Path:
        return self.transport.mailroot  # on a remote computer: a path over there

    def config(self) -> Config:
        return self.transport.config()

    start = forward(VirtualServer.start)
    stop = forward(VirtualServer.stop)
    pause = forward(VirtualServer.pause)
    resume = forward(VirtualServer.resume)
    apply_config = forward(VirtualServer.apply_config)
    list_sessions = forward(VirtualServer.list_sessions)
    terminate_session = forward(VirtualServer.terminate_session)
    terminate_all_sessions = forward(VirtualServer.terminate_all_sessions)
    session_transcript = forward(VirtualServer.session_transcript)
    list_users = forward(VirtualServer.list_users)
    add_user = forward(VirtualServer.add_user)
    set_user_password = forward(VirtualServer.set_user_password)
    delete_user = forward(VirtualServer.delete_user)
    list_operators = forward(VirtualServer.list_operators)
    add_operator = forward(VirtualServer.add_operator)
    set_operator_password = forward(VirtualServer.set_operator_password)
    delete_operator = forward(VirtualServer.delete_operator)
    set_operator_role = forward(VirtualServer.set_operator_role)
    # -- queue
    list_queue = forward(VirtualServer.list_queue)
    queue_page = forward(VirtualServer.queue_page)
    queue_items = forward(VirtualServer.queue_items)
    queue_subjects = forward(VirtualServer.queue_subjects)
    queue_detail = forward(VirtualServer.queue_detail)
    retry_now = forward(VirtualServer.retry_now)
    release_etrn = forward(VirtualServer.release_etrn)
    freeze = forward(VirtualServer.freeze)
    thaw = forward(VirtualServer.thaw)
    delete_message = forward(VirtualServer.delete_message)
    bounce_now = forward(VirtualServer.bounce_now)
    read_queued = forward(VirtualServer.read_queued)
    # -- Badmail, Drop, Pickup
    list_badmail = forward(VirtualServer.list_badmail)
    badmail_items = forward(VirtualServer.badmail_items)
    read_badmail = forward(VirtualServer.read_badmail)
    resend_badmail = forward(VirtualServer.resend_badmail)
    delete_badmail = forward(VirtualServer.delete_badmail)
    list_drop = forward(VirtualServer.list_drop)
    drop_items = forward(VirtualServer.drop_items)
    read_drop = forward(VirtualServer.read_drop)
    delete_drop = forward(VirtualServer.delete_drop)
    resend_drop = forward(VirtualServer.resend_drop)
    preview_pickup = forward(VirtualServer.preview_pickup)
    submit_to_pickup = forward(VirtualServer.submit_to_pickup)
    list_pickup = forward(VirtualServer.list_pickup)
    # -- monitoring
    list_events = forward(VirtualServer.list_events)
    counter_history = forward(counter_history)
    track_messages = forward(VirtualServer.track_messages)
    pickup_history = forward(VirtualServer.pickup_history)
    check_dns = forward(VirtualServer.check_dns)
    protocol_log_tail = forward(VirtualServer.protocol_log_tail)
    protocol_log_lines = forward(VirtualServer.protocol_log_lines)
