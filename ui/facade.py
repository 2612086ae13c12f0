"""The engine facade as the window sees it: a typing Protocol (the host in app/ implements it)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from engine.config import Config
from engine.sessions import SessionInfo


class EngineFacade(Protocol):
    """Async calls run on the engine's own loop; the properties are snapshots, safe to read from the GUI."""

    @property
    def state(self) -> str: ...

    @property
    def bound_addresses(self) -> list[tuple[str, int]]: ...

    @property
    def mailroot(self) -> Path: ...

    def config(self) -> Config: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def apply_config(self, config: Config) -> None: ...

    async def list_sessions(self) -> list[SessionInfo]: ...

    async def terminate_session(self, session_id: str) -> None: ...

    async def terminate_all_sessions(self) -> int: ...
