"""Middle elision of paths, host names and addresses: one helper for labels and list cells."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QStyleOptionViewItem
from pytestqt.qtbot import QtBot

from ui.elide import ElidedLabel, elide_mode, is_name
from ui.views import ItemView

PATH = "/srv/mail/smtpsvc/Mailroot/Drop/example.test/very/long/folder/name/for/the/drop/directory"


def test_names_are_cut_in_the_middle_and_prose_at_the_end() -> None:
    for name in (PATH, r"C:\Inetpub\mailroot\Drop", "relay1.partner.example.com:25", "anna@example.test",
                 "Delivered to: /var/mail/Drop"):
        assert is_name(name) and elide_mode(name) == Qt.TextElideMode.ElideMiddle, name
    for prose in ("451 4.7.1 Greylisted, please try again later", "Held (frozen)", "Queued"):
        assert not is_name(prose) and elide_mode(prose) == Qt.TextElideMode.ElideRight, prose


def test_label_shows_both_ends_and_the_whole_in_its_tooltip(qtbot: QtBot) -> None:
    label = ElidedLabel(PATH)
    qtbot.addWidget(label)
    label.setToolTip("Where the domain's mail goes")
    label.resize(200, 20)
    label.show()
    qtbot.waitUntil(lambda: label.is_cut)
    shown = label.text()
    assert "…" in shown and shown.startswith("/srv") and shown.endswith("directory")
    assert label.toolTip() == f"{PATH}\nWhere the domain's mail goes"
    label.resize(label.sizeHint().width() + 20, 20)
    qtbot.waitUntil(lambda: not label.is_cut)
    assert label.text() == PATH and label.toolTip() == "Where the domain's mail goes"
    label.setText("short")
    assert label.full == "short" and label.text() == "short"


def test_list_cells_cut_names_in_the_middle(qtbot: QtBot) -> None:
    model = QStandardItemModel()
    model.appendRow([QStandardItem("relay1.partner.example.com:25"), QStandardItem("Greylisted, try later")])
    view = ItemView()
    qtbot.addWidget(view)
    view.setModel(model)
    delegate = view.itemDelegate()
    option = QStyleOptionViewItem()
    delegate.initStyleOption(option, model.index(0, 0))  # type: ignore[attr-defined]
    assert option.textElideMode == Qt.TextElideMode.ElideMiddle  # the two smart hosts keep their ends apart
    option = QStyleOptionViewItem()
    delegate.initStyleOption(option, model.index(0, 1))  # type: ignore[attr-defined]
    assert option.textElideMode == Qt.TextElideMode.ElideRight
