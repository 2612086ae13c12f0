"""The result-pane models: qtmodeltester on each, keyed diffs instead of resets, the sessions invariant."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from engine.conf.config import DomainConfig
from engine.smtpd.sessions import SessionInfo
from ui.models.domains import DomainsModel
from ui.models.nodes import ChildrenModel, NodeRow, ServerRow, ServersModel
from ui.models.sessions import SessionsModel, duration
from ui.units import size_text, until


def session(sid: str, peer: str = "127.0.0.1", bytes_in: int = 0, since: float = 1000.0) -> SessionInfo:
    return SessionInfo(sid, peer, 40000, "(anonymous)", since, bytes_in, 10, "connected", "EHLO", 0, False)


class Signals:
    def __init__(self, model: object) -> None:
        self.resets = 0
        self.inserted = 0
        self.removed = 0
        self.changed = 0
        model.modelReset.connect(self._reset)  # type: ignore[attr-defined]
        model.rowsInserted.connect(self._inserted)  # type: ignore[attr-defined]
        model.rowsRemoved.connect(self._removed)  # type: ignore[attr-defined]
        model.dataChanged.connect(self._changed)  # type: ignore[attr-defined]

    def _reset(self) -> None:
        self.resets += 1

    def _inserted(self, *_: object) -> None:
        self.inserted += 1

    def _removed(self, *_: object) -> None:
        self.removed += 1

    def _changed(self, *_: object) -> None:
        self.changed += 1


def test_domains_model(qtmodeltester: ModelTester) -> None:
    model = DomainsModel()
    model.set_domains([DomainConfig("example.test", "default"), DomainConfig("alias.test", "alias"),
                       DomainConfig("*.relay.test", "remote", relay_allowed=True, route="smarthost",
                                    smart_host="[192.0.2.1]")])
    qtmodeltester.check(model)
    assert model.rowCount() == 3
    assert [model.data(model.index(r, 1)) for r in range(3)] == ["Local (Default)", "Local (Alias)", "Remote"]
    assert model.data(model.index(2, 3)) == "Smart host [192.0.2.1]"
    assert [model.data(model.index(0, c)) for c in (2, 3, 4)] == ["—", "Drop directory Mailroot/Drop", "—"]  # no blanks
    assert model.data(model.index(1, 3)) == "Drop directory of the default domain"
    signals = Signals(model)
    model.set_domains([DomainConfig("example.test", "default"), DomainConfig("*.relay.test", "remote")])
    qtmodeltester.check(model)
    assert (signals.resets, signals.removed, signals.changed) == (0, 1, 1)


def test_sessions_model_rows_come_and_go_without_reset(qtmodeltester: ModelTester) -> None:
    now = [1010.0]
    model = SessionsModel(clock=lambda: now[0])
    signals = Signals(model)
    model.opened("S1", "127.0.0.1", 1000.0)
    model.opened("S2", "127.0.0.2", 1005.0)
    qtmodeltester.check(model)
    assert model.data(model.index(0, model.DURATION_COLUMN)) == "10 s"
    now[0] = 4671.0
    model.tick()
    assert model.data(model.index(0, model.DURATION_COLUMN)) == "1 h 01 min"
    model.closed("S1")
    qtmodeltester.check(model)
    assert model.rowCount() == 1 and signals.resets == 0
    assert (signals.inserted, signals.removed) == (2, 1)


def test_sessions_snapshot_never_resurrects_or_drops_unseen_rows() -> None:
    model = SessionsModel()
    model.opened("S1", "127.0.0.1", 1000.0)
    generation = model.snapshot_started()
    model.closed("S1")  # closed while the list was on its way
    model.opened("S2", "127.0.0.1", 1001.0)  # opened after the list was taken
    model.apply_snapshot(generation, [session("S1", bytes_in=50), session("S3", bytes_in=7)])
    assert sorted(row.session_id for row in model.rows()) == ["S2", "S3"]
    assert model.get("S3").bytes_in == 7  # type: ignore[union-attr]
    generation = model.snapshot_started()
    model.apply_snapshot(generation, [session("S3", bytes_in=99)])  # S2 ended unseen: gone now
    assert [row.session_id for row in model.rows()] == ["S3"]
    assert model.data(model.index(0, 8)) == "99 bytes"


def test_sessions_model_many_rows(qtmodeltester: ModelTester) -> None:
    model = SessionsModel()
    for number in range(500):
        model.opened(f"S{number}", f"127.0.0.{number % 250 + 1}", 1000.0 + number)
    qtmodeltester.check(model)
    signals = Signals(model)
    model.tick()
    assert signals.changed == 1  # one dataChanged for the whole clock column


def test_node_models(qtmodeltester: ModelTester) -> None:
    servers = ServersModel()
    servers.sync([ServerRow("Default SMTP Virtual Server", "paused", (("0.0.0.0", 25), ("::", 25)), "/m")])
    qtmodeltester.check(servers)
    assert [servers.data(servers.index(0, c)) for c in range(4)] == [
        "Default SMTP Virtual Server", "Paused", "All Unassigned", "25"]
    children = ChildrenModel()
    children.sync([NodeRow("domains", "Domains", "domains", "d"), NodeRow("sessions", "Current Sessions",
                                                                          "sessions", "s")])
    qtmodeltester.check(children)
    assert children.data(children.index(1, 0)) == "Current Sessions"
    assert children.rowCount(children.index(0, 0)) == 0
    assert servers.data(QModelIndex()) is None


def test_duration_and_size_are_written_one_way() -> None:
    assert duration(0) == "0 s" and duration(3725) == "1 h 02 min" and duration(200_000) == "2 d 7 h"
    assert (size_text(429), size_text(1), size_text(1536), size_text(5 << 20)) == \
        ("429 bytes", "1 byte", "1.5 KB", "5.0 MB")
    assert (until(0), until(38), until(14 * 60 + 21)) == ("now", "in 38 s", "in 14 min")


def test_icons_render(qtbot: QtBot) -> None:
    from ui import icons

    for name in ("computer", "server", "domain-local", "domain-alias", "domain-remote", "sessions", "queue",
                 "badmail", "drop", "start", "stop", "pause", "properties", "refresh", "export"):
        assert not icons.icon(name).pixmap(32, 32).isNull()
    for state in ("started", "stopped", "paused", "starting"):
        assert not icons.state_icon("server", state).pixmap(16, 16).isNull()
