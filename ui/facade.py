"""The engine facade as the window sees it: a typing Protocol (the host in app/ implements it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from engine.admin.event_ids import EventEntry, Level
from engine.admin.mailroot_items import DropItem, PickupFile, PickupPreview
from engine.admin.perf import History
from engine.admin.pickup_history import PickupRecord
from engine.admin.tracking import Query, Track
from engine.bounce.badmail import BadmailItem
from engine.conf.config import Config
from engine.log.tail import LogTail
from engine.qmgr.queue import QueueDetail, QueueItem, QueuePage
from engine.smtp.dns_check import DnsReport
from engine.smtpd.sessions import SessionInfo
from engine.smtpd.tls import PairReport


class EngineSnapshot(Protocol):
    """What the window reads without waiting: snapshots kept by whatever carries the engine's calls."""

    @property
    def state(self) -> str: ...

    @property
    def bound_addresses(self) -> list[tuple[str, int]]: ...

    @property
    def mailroot(self) -> Path: ...

    def config(self) -> Config: ...


class EngineFacade(EngineSnapshot, Protocol):
    """Async calls run on the engine's own loop; the properties are snapshots, safe to read from the GUI."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def apply_config(self, config: Config) -> None: ...

    async def list_sessions(self) -> list[SessionInfo]: ...

    async def terminate_session(self, session_id: str) -> None: ...

    async def terminate_all_sessions(self) -> int: ...

    # -- queue ----------------------------------------------------------------------------------

    async def list_queue(self, offset: int = 0, limit: int = 100, sort: str = "age",
                         descending: bool = False) -> QueuePage: ...

    async def queue_page(self, after: str = "", limit: int = 5000) -> QueuePage: ...

    async def queue_items(self, queue_ids: Sequence[str]) -> list[QueueItem]: ...

    async def queue_subjects(self, queue_ids: Sequence[str]) -> dict[str, str]: ...

    async def queue_detail(self, queue_id: str) -> QueueDetail: ...

    async def retry_now(self, queue_ids: Sequence[str] | None = None, domain: str | None = None) -> int: ...

    async def release_etrn(self, domain: str) -> int: ...

    async def freeze(self, queue_id: str) -> None: ...

    async def thaw(self, queue_id: str) -> None: ...

    async def delete_message(self, queue_id: str) -> None: ...

    async def bounce_now(self, queue_id: str) -> None: ...

    async def read_queued(self, queue_id: str, limit: int = 0) -> bytes: ...  # limit > 0: its first bytes only

    # -- Badmail, Drop, Pickup --------------------------------------------------------------------

    async def list_badmail(self) -> list[BadmailItem]: ...

    async def badmail_items(self, names: Sequence[str]) -> list[BadmailItem]: ...

    async def read_badmail(self, name: str) -> bytes: ...

    async def resend_badmail(self, name: str) -> str: ...

    async def delete_badmail(self, name: str) -> None: ...

    async def list_drop(self) -> list[DropItem]: ...

    async def drop_items(self, refs: Sequence[str]) -> list[DropItem]: ...

    async def read_drop(self, name: str) -> bytes: ...

    async def delete_drop(self, name: str) -> None: ...

    async def resend_drop(self, ref: str) -> str: ...  # a copy into Pickup; the Drop file stays

    async def preview_pickup(self, data: bytes) -> PickupPreview: ...

    async def submit_to_pickup(self, data: bytes, name_hint: str = "") -> str: ...

    async def list_events(self, since: float | None = None, level: Level = "Information",
                          limit: int = 1000) -> list[EventEntry]: ...

    async def counter_history(self, seconds: float | None = None) -> History: ...

    async def track_messages(self, query: Query) -> list[Track]: ...


@runtime_checkable
class AccountsFacade(Protocol):
    """The AUTH accounts of the users file (the embedded engine's, or a remote computer's through users.* ops)."""

    async def list_users(self) -> list[str]: ...

    async def add_user(self, name: str, password: str) -> None: ...

    async def set_user_password(self, name: str, password: str) -> None: ...

    async def delete_user(self, name: str) -> None: ...


@runtime_checkable
class OperatorsFacade(Protocol):
    """The Operators (remote administrators) with their roles; the engine refuses to delete the last admin."""

    async def list_operators(self) -> list[tuple[str, str]]: ...

    async def add_operator(self, name: str, password: str, role: str = "admin") -> None: ...

    async def set_operator_password(self, name: str, password: str) -> None: ...

    async def delete_operator(self, name: str) -> None: ...

    async def set_operator_role(self, name: str, role: str) -> None: ...


@runtime_checkable
class CertificateFacade(Protocol):
    """The Certificate page's calls: describe and check a certificate/key pair, make a self-signed one, import a
    PKCS#12 (.pfx) file as a PEM pair."""

    async def inspect_certificate(self, certificate: str, key: str) -> PairReport: ...

    async def create_certificate(self, fqdn: str, names: tuple[str, ...], days: int) -> tuple[str, str]: ...

    async def import_certificate(self, pkcs12: str, password: str) -> tuple[str, str]: ...


@runtime_checkable
class TranscriptFacade(Protocol):
    """A live session's dialogue (Session Properties): the embedded engine's, or a remote computer's through its
    sessions.transcript op."""

    async def session_transcript(self, session_id: str) -> list[str]: ...


@runtime_checkable
class PickupFolderFacade(Protocol):
    """What sits in the Pickup directory now (the Pickup pane's "In the Pickup folder now" line)."""

    async def list_pickup(self) -> list[PickupFile]: ...


@runtime_checkable
class DnsCheckFacade(Protocol):
    """Check DNS (Advanced Delivery): a host name's addresses and MX hosts as the engine's resolver finds them."""

    async def check_dns(self, name: str, dns_servers: tuple[str, ...] | None = None) -> DnsReport: ...


@runtime_checkable
class PickupHistoryFacade(Protocol):
    """What became of the files put into Pickup, by any tool and in earlier sessions (the Pickup pane's list)."""

    async def pickup_history(self, limit: int = 500) -> list[PickupRecord]: ...


@runtime_checkable
class ProtocolLogFacade(Protocol):
    """The newest entries of the protocol log file written now (the Protocol Log node)."""

    async def protocol_log_tail(self, limit: int = 1000) -> LogTail: ...
