"""View ▸ Customize… (MMC's Customize View): show or hide the console tree, description bar, status bar, toolbar."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QGroupBox, QLabel, QVBoxLayout, QWidget


class CustomizeDialog(QDialog):
    """Each box is one View action: ticking it shows or hides that part at once (and the window remembers it)."""

    def __init__(self, parts: list[tuple[str, QAction]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Customize View")
        self.boxes: dict[str, QCheckBox] = {}
        group = QGroupBox("MMC")
        group_layout = QVBoxLayout(group)
        for text, action in parts:
            box = QCheckBox(text)
            box.setChecked(action.isChecked())
            box.toggled.connect(action.setChecked)
            action.toggled.connect(box.setChecked)  # the View menu changes it too, while this is open
            group_layout.addWidget(box)
            self.boxes[text.replace("&", "")] = box
        note = QLabel("Select or clear the check boxes to show or hide items in the console window.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(group)
        layout.addWidget(buttons)
        self.setMinimumWidth(340)
