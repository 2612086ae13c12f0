"""The New SMTP Domain Wizard: Remote or Alias, then the name, checked as it is typed."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QLabel,
    QLineEdit,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from engine.conf.config import Config, DomainConfig, add_domain
from engine.errors import DomainError
from ui.icons import icon

TYPE_TEXT = {
    "remote": "Mail for this domain is relayed to other servers (wildcards like *.example.com allowed).",
    "alias": "Another name of the default domain: its mail goes to the default domain's Drop directory.",
}


class TypePage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Welcome to the New SMTP Domain Wizard")
        self.setSubTitle("Specify the domain type.")
        self.remote = QRadioButton("&Remote")
        self.alias = QRadioButton("&Alias")
        self.remote.setChecked(True)
        buttons = QButtonGroup(self)
        layout = QVBoxLayout(self)
        for key, button in (("remote", self.remote), ("alias", self.alias)):
            buttons.addButton(button)
            layout.addWidget(button)
            text = QLabel(TYPE_TEXT[key])
            text.setWordWrap(True)
            text.setIndent(22)
            layout.addWidget(text)
        layout.addStretch(1)

    @property
    def domain_type(self) -> str:
        return "remote" if self.remote.isChecked() else "alias"


class NamePage(QWizardPage):
    def __init__(self, types: TypePage, current: Callable[[], Config]) -> None:
        super().__init__()
        self._types = types
        self._current = current
        self.setTitle("Domain Name")
        self.setSubTitle("Type the name of the new domain.")
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("example.com")
        self.problem = QLabel()
        self.problem.setObjectName("problem")
        self.problem.setWordWrap(True)
        layout = QVBoxLayout(self)
        label = QLabel("&Name:")
        label.setBuddy(self.edit)
        layout.addWidget(label)
        layout.addWidget(self.edit)
        layout.addWidget(self.problem)
        layout.addStretch(1)
        # A remote domain always needs its route and relay settings: offer its sheet at once, as IIS's habit.
        self.open_properties = QCheckBox("&Open the new domain's properties when I click Finish")
        layout.addWidget(self.open_properties)
        self.edit.textChanged.connect(self._check)
        self.config: Config | None = None

    def initializePage(self) -> None:
        example = "*.example.com" if self._types.domain_type == "remote" else "example.com"
        self.edit.setPlaceholderText(example)
        self.open_properties.setChecked(self._types.domain_type == "remote")
        self._check()

    def domain(self) -> DomainConfig:
        return DomainConfig(name=self.edit.text().strip().lower(), type=self._types.domain_type)

    def _check(self) -> None:
        why: str | None = None
        self.config = None
        if not self.edit.text().strip():
            why = ""
        else:
            try:
                self.config = add_domain(self._current(), self.domain())
            except DomainError as error:
                why = str(error)
        self.problem.setText(why or "")
        self.edit.setProperty("invalid", bool(why))
        self.edit.style().unpolish(self.edit)
        self.edit.style().polish(self.edit)
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.config is not None


class DomainWizard(QWizard):
    """On Finish, ``finished_config`` carries the whole new configuration (the caller applies it)."""

    finished_config = Signal(object)

    def __init__(self, current: Callable[[], Config], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New SMTP Domain Wizard")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setPixmap(QWizard.WizardPixmap.LogoPixmap, icon("new-domain").pixmap(48, 48))
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage)
        self.types = TypePage()
        self.names = NamePage(self.types, current)
        self.addPage(self.types)
        self.addPage(self.names)
        self.resize(480, 360)

    def accept(self) -> None:
        if self.names.config is not None:
            self.finished_config.emit(self.names.config)
        super().accept()
