"""Message parts (pure) and the viewer: encoded words, 8-bit, broken MIME shown raw, HTML without remote content."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QTextDocument
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from ui.message_parts import parse_message, remote_references
from ui.message_viewer import MessageViewer, SafeBrowser, safe_name

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5Er"
                       "kJggg==")

HTML_MAIL = (
    b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.test>\r\n"
    b"To: you@example.test\r\n"
    b"Subject: =?iso-8859-1?q?Gr=FC=DFe?= aus =?utf-8?b?S8O2bG4=?=\r\n"
    b"Date: Mon, 30 Nov 2026 08:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
    b"--outer\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
    b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Gr\xc3\xbc\xc3\x9fe in plain text\r\n"
    b"--alt\r\nContent-Type: multipart/related; boundary=rel\r\n\r\n"
    b"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><body><p>Hello <b>HTML</b></p><img src=\"cid:logo@x\">"
    b"<img src=\"http://tracker.example/pixel.gif\"><img src=\"file:///etc/passwd\">"
    b"<div style=\"background:url(https://cdn.example/bg.png)\">x</div>"
    b"<script>document.write('no')</script><a href=\"http://phish.example/\">click</a></body></html>\r\n"
    b"--rel\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PNG) + b"--rel--\r\n--alt--\r\n"
    b"--outer\r\nContent-Type: application/pdf; name=\"=?utf-8?q?Rechnung_M=C3=A4rz.pdf?=\"\r\n"
    b"Content-Disposition: attachment; filename=\"=?utf-8?q?Rechnung_M=C3=A4rz.pdf?=\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--outer--\r\n"
)


def test_parts_of_a_rich_message() -> None:
    parts = parse_message(HTML_MAIL)
    assert parts.sender == "Jörg Müller <joerg@example.test>"
    assert parts.subject == "Grüße aus Köln"
    assert parts.text == "Grüße in plain text"  # the line break before a boundary belongs to it
    assert parts.html is not None and "<b>HTML</b>" in parts.html
    names = [(a.name, a.content_type, a.size) for a in parts.attachments]
    assert names == [("part1.png", "image/png", len(PNG)), ("Rechnung März.pdf", "application/pdf", 9)]
    assert parts.by_content_id("<logo@x>") is parts.attachments[0]
    assert parts.problems == []
    assert remote_references(parts.html) == {"http://tracker.example/pixel.gif", "https://cdn.example/bg.png",
                                             "file:///etc/passwd"}


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\x01\x02 binary garbage \xff\xfe",
    b"Subject: no end of headers",
    b"From: a@x\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhalf",
    b"From: a@x\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\n\xe9t\xe9\r\n",
    b"From: a@x\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n",
    b"From: a@x\r\nContent-Type: multipart/mixed\r\n\r\nno boundary parameter\r\n",
    b"From: a@x\r\nSubject: =?utf-8?q?broken=ZZ?= =?x-unknown?b?AAAA?=\r\n\r\nbody\r\n",
    b"From: \xff\xfe 8-bit junk\r\nSubject: caf\xe9\r\n\r\nbody\r\n",
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
    + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 200,
])
def test_broken_messages_never_crash_and_keep_the_raw_text(data: bytes) -> None:
    parts = parse_message(data)
    assert parts.raw == data.decode("utf-8", "replace")
    assert parts.text is not None or parts.html is not None or parts.attachments


def test_broken_mime_is_reported_and_eight_bit_read() -> None:
    parts = parse_message(b"From: a@x\r\nSubject: caf\xc3\xa9 \xe9\r\nContent-Type: text/plain; charset=bogus\r\n"
                          b"\r\ncaf\xe9\r\n")
    assert parts.subject == "caf\xc3\xa9 \xe9"  # not UTF-8 as a whole: read as Latin-1
    assert parts.text == "café\r\n"
    assert any("bogus" in problem for problem in parts.problems)
    truncated = parse_message(b"From: a@x\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
                              b"Content-Type: text/plain\r\n\r\nhalf a message")
    assert any("boundary" in problem for problem in truncated.problems)
    assert truncated.text == "half a message"


def test_safe_browser_loads_inline_parts_only(qtbot: QtBot) -> None:
    parts = parse_message(HTML_MAIL)
    browser = SafeBrowser(parts)
    qtbot.addWidget(browser)
    image = QTextDocument.ResourceType.ImageResource.value
    assert browser.loadResource(image, QUrl("cid:logo@x")) is not None
    for url in ("http://tracker.example/pixel.gif", "file:///etc/passwd", "relative.png", "//cdn.example/x.png"):
        assert browser.loadResource(image, QUrl(url)) is None
    assert browser.blocked == {"http://tracker.example/pixel.gif", "file:///etc/passwd", "relative.png",
                               "//cdn.example/x.png"}
    assert not browser.openLinks() and not browser.openExternalLinks()


def test_viewer_shows_every_tab_and_saves(qtbot: QtBot, tmp_path: Path, qtmodeltester: ModelTester) -> None:
    saved: dict[str, bytes] = {}
    parts = parse_message(HTML_MAIL)
    viewer = MessageViewer("queued message Q1", HTML_MAIL, parts, "Q1.eml", lambda p, d: saved.update({p: d}))
    qtbot.addWidget(viewer)
    viewer.show()
    assert viewer.windowTitle() == "Grüße aus Köln — queued message Q1"
    assert viewer.html_view is not None and "Hello" in viewer.html_view.toPlainText()
    assert "no" not in viewer.html_view.toPlainText().split("Hello")[0]  # the script did not run
    assert viewer.remote_notice.isVisible() and "Remote content was blocked: 3" in viewer.remote_notice.text()
    assert "http://tracker.example/pixel.gif" in viewer.html_view.blocked
    assert viewer.body_choice.isVisible()
    viewer.body_choice.setCurrentIndex(1)
    assert viewer.body_stack.currentWidget() is viewer.text_view
    qtmodeltester.check(viewer.headers)
    qtmodeltester.check(viewer.attachments)
    assert viewer.headers.data(viewer.headers.index(0, 2)) == "Jörg Müller <joerg@example.test>"
    assert viewer.tabs.tabText(3) == "Attachments (2)"
    assert "Content-Type: multipart/mixed" in viewer.source.toPlainText()
    viewer.ask_save_path = lambda title, name, filters: str(tmp_path / name)  # type: ignore[method-assign]
    viewer.save_message()
    viewer.save_attachment(parts.attachments[1])
    assert saved[str(tmp_path / "Q1.eml")] == HTML_MAIL
    assert saved[str(tmp_path / "Rechnung März.pdf")] == b"%PDF-1.4\n"
    viewer.ask_directory = lambda title: str(tmp_path)  # type: ignore[method-assign]
    (tmp_path / "part1.png").write_bytes(b"already here")
    viewer.save_all()
    assert str(tmp_path / "part1 (2).png") in saved


def test_viewer_of_a_broken_message_shows_the_problem(qtbot: QtBot) -> None:
    data = b"\x00\x01 not a message"
    viewer = MessageViewer("Badmail X", data, parse_message(data), "X.eml", lambda p, d: None)
    qtbot.addWidget(viewer)
    viewer.show()
    assert viewer.problems.isVisible() and "not well formed" in viewer.problems.text()
    assert viewer.html_view is None and "not a message" in viewer.text_view.toPlainText()
    assert not viewer.tabs.isTabEnabled(3)


def test_safe_names() -> None:
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert safe_name("a\x00b:c?.pdf") == "a_b_c_.pdf"
    assert safe_name("  ") == "attachment"


def test_dates_in_local_time_with_the_written_one_kept() -> None:
    from ui.message_viewer import local_date

    shown = local_date("Mon, 07 Dec 2026 14:22:52 +0100")
    assert shown.endswith("(sent 14:22 +0100)") and shown[:4] == "2026"
    assert local_date("not a date") == "not a date"
