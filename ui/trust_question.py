"""The question before a remote computer's new certificate replaces the one pinned for it (Trust New Certificate…)."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget


def _fingerprint_html(text: str) -> str:
    """The 32 bytes on two lines of 16, in a fixed-width font: easy to compare with `smtpsvc cert show`."""
    parts = text.split(":")
    lines = [":".join(parts[i:i + 16]) for i in range(0, len(parts), 16)] if text else ["(none)"]
    return f"<pre style='margin-left:12px'>{escape(chr(10).join(lines))}</pre>"


def trust_question(parent: QWidget | None, host_port: str, presented: str, pinned: str) -> QMessageBox:
    """Yes pins ``presented`` (a SHA-256 fingerprint as AA:BB:…) in place of ``pinned``; No is the default."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Trust New Certificate",
                      f"<p>The certificate of <b>{escape(host_port)}</b> has changed since it was trusted.</p>"
                      f"<p>New certificate, SHA-256:</p>{_fingerprint_html(presented)}"
                      f"<p>Trusted until now, SHA-256:</p>{_fingerprint_html(pinned)}"
                      "<p>If the certificate was not replaced on purpose, someone may be intercepting the "
                      "connection. Compare the new fingerprint with <tt>smtpsvc cert show</tt> on that "
                      "computer.</p><p>Trust the new certificate and connect again?</p>",
                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, parent)
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setDefaultButton(QMessageBox.StandardButton.No)
    return box
