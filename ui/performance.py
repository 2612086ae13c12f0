"""The Performance node, like Performance Monitor: strip charts (QtCharts) of chosen counters with a scale each,
counters added from a list with their IIS explanation, pause, and a report view (the counter table alone).

The engine samples once a second and keeps ten minutes; this pane only reads that history while it is shown,
so leaving it open costs the engine one history copy a second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QValueAxis
from PySide6.QtCore import QMargins, QPointF, Qt, QTimer
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.admin.perf import HISTORY, History, explanation
from engine.errors import EngineError
from ui.facade import EngineFacade
from ui.models.table import Column, KeyedTableModel
from ui.result_pane import FramedPane, ResultPane
from ui.tasks import TaskRunner

REFRESH_MS = 1000
DEFAULT_COUNTERS = ("Messages Received/sec", "Messages Delivered/sec", "Inbound Connections Current",
                    "Remote Queue Length")
COLORS = ("#1f5fae", "#cf2b22", "#3a9a3a", "#e8a317", "#7b3fa0", "#17a2b8", "#8a5a2b", "#e4579c")
SCALES = tuple(10.0 ** power for power in range(-7, 4))  # as Performance Monitor: 0.0000001 … 1000
SPANS = {"100 seconds": 100, "10 minutes": HISTORY}


def auto_scale(maximum: float) -> float:
    """The largest power-of-ten scale that keeps ``maximum`` on the 0–100 chart."""
    if maximum <= 0:
        return 1.0
    power = math.floor(math.log10(100 / maximum))
    return 10.0 ** max(-7, min(3, power))


def scale_text(scale: float) -> str:
    return f"{scale:g}" if scale >= 0.001 else f"{scale:.7f}".rstrip("0")


@dataclass(frozen=True)
class CounterRow:
    name: str
    color: str
    scale: float
    auto: bool  # the scale follows the values until the user picks one
    last: float = 0.0
    average: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3f}"


class CountersModel(KeyedTableModel[CounterRow]):
    """The chosen counters: the chart's legend, and the report view."""

    columns = (
        Column("Counter", lambda r: r.name, width=250),
        Column("Scale", lambda r: scale_text(r.scale), right=True, width=70),
        Column("Last", lambda r: _number(r.last), right=True, width=90),
        Column("Average", lambda r: _number(r.average), right=True, width=90),
        Column("Minimum", lambda r: _number(r.minimum), right=True, width=90),
        Column("Maximum", lambda r: _number(r.maximum), right=True, width=90),
        Column("Explanation", lambda r: explanation(r.name), width=420),
    )

    def key(self, row: CounterRow) -> str:
        return row.name

    def icon(self, row: CounterRow) -> QIcon:
        swatch = QPixmap(12, 12)
        swatch.fill(QColor(row.color))
        return QIcon(swatch)

    def tooltip(self, row: CounterRow) -> str | None:
        return explanation(row.name) or None


class AddCounters(QDialog):
    """Add Counters: every counter of the "SMTP Server" object, with IIS's explanation of the selected one."""

    def __init__(self, names: list[str], chosen: set[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add Counters")
        self.list = QListWidget()
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        for name in sorted(names):
            if name not in chosen:
                self.list.addItem(name)
        self.explain = QLabel()
        self.explain.setWordWrap(True)
        self.explain.setMinimumHeight(48)
        self.explain.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.list.currentTextChanged.connect(self._explain)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_button = buttons.addButton("Add", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.list.itemDoubleClicked.connect(lambda _item: self.accept())
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel('Performance object: SMTP Server — select counters from the list:'))
        layout.addWidget(self.list, 1)
        layout.addWidget(QLabel("Explain text:"))
        layout.addWidget(self.explain)
        layout.addWidget(buttons)
        self.resize(460, 440)
        if self.list.count():
            self.list.setCurrentRow(0)

    def _explain(self, name: str) -> None:
        self.explain.setText(explanation(name) or "(no explanation)")

    def selected(self) -> list[str]:
        return [item.text() for item in self.list.selectedItems()]


class Performance:
    """The pane and its feed: ``set_active(True)`` while the node is shown."""

    def __init__(self, engine: EngineFacade, runner: TaskRunner) -> None:
        self.engine = engine
        self.runner = runner
        self.model = CountersModel()
        self.history = History((), ())
        self.read_at = ""  # when the history shown was read (said when a later reading fails)
        self.series: dict[str, QLineSeries] = {}
        self.chart = QChart()
        self.chart.setMargins(QMargins(4, 4, 4, 4))
        self.chart.setBackgroundRoundness(0)
        self.chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
        self.chart.legend().hide()  # the counter table below is the legend, as in Performance Monitor
        self.x_axis = QValueAxis()
        self.x_axis.setTitleText("seconds ago")
        self.x_axis.setLabelFormat("%d")
        self.y_axis = QValueAxis()
        self.y_axis.setRange(0, 100)
        self.y_axis.setLabelFormat("%d")
        self.chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        self.chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        self.view = QChartView(self.chart)
        self.view.setObjectName("performanceChart")
        self.view.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.view.setMinimumHeight(220)
        self.add_button = QPushButton("Add…")
        self.remove_button = QPushButton("Remove")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.report_button = QPushButton("Report")
        self.report_button.setCheckable(True)
        self.report_button.setToolTip("Show the counters as a table only (the report view)")
        self.span = QComboBox()
        self.span.addItems(list(SPANS))
        self.scale = QComboBox()
        self.scale.addItem("Automatic", 0.0)
        for value in SCALES:
            self.scale.addItem(scale_text(value), value)
        self.status = QLabel()
        bar = QHBoxLayout()
        for widget in (self.add_button, self.remove_button, self.pause_button, self.report_button):
            bar.addWidget(widget)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Show:"))
        bar.addWidget(self.span)
        scale_label = QLabel("Scale:")  # short: this bar sets the narrowest the right pane can be (and so the tree)
        scale_tip = "The scale of the selected counter: its values are multiplied by it on the chart"
        scale_label.setToolTip(scale_tip)
        self.scale.setToolTip(scale_tip)
        bar.addWidget(scale_label)
        bar.addWidget(self.scale)
        bar.addStretch(1)
        bar.addWidget(self.status)
        top = QWidget()
        column = QVBoxLayout(top)
        column.setContentsMargins(0, 0, 4, 0)
        column.addLayout(bar)
        column.addWidget(self.view, 1)
        self.table = ResultPane(self.model, "performance")
        self.pane = FramedPane(top, self.table)
        self._report(False)
        self.add_button.clicked.connect(self.add_dialog)
        self.remove_button.clicked.connect(self.remove_selected)
        self.report_button.toggled.connect(self._report)
        self.span.currentIndexChanged.connect(lambda _i: self.redraw())
        self.scale.activated.connect(self._scale_chosen)
        self.pane.selection_changed.connect(self._selection)
        self.timer = QTimer()
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.poll)
        for name in DEFAULT_COUNTERS:
            self.add_counter(name)
        self._selection()

    def _report(self, report: bool) -> None:
        """The report view: the counter table alone, taking the chart's room."""
        self.view.setHidden(report)
        layout = self.pane.layout()
        if isinstance(layout, QVBoxLayout):
            layout.setStretch(0, 0 if report else 3)
            layout.setStretch(1, 1 if report else 2)
            layout.activate()

    # -- counters -------------------------------------------------------------------------------

    def add_counter(self, name: str) -> None:
        if self.model.get(name) is not None:
            return
        used = {row.color for row in self.model.rows()}
        color = next((c for c in COLORS if c not in used), COLORS[self.model.rowCount() % len(COLORS)])
        self.model.upsert(CounterRow(name, color, 1.0, True))
        series = QLineSeries()
        series.setName(name)
        pen = series.pen()
        pen.setColor(QColor(color))
        pen.setWidthF(1.6)
        series.setPen(pen)
        self.chart.addSeries(series)
        series.attachAxis(self.x_axis)
        series.attachAxis(self.y_axis)
        self.series[name] = series
        self.redraw()

    def remove_selected(self) -> None:
        for name in self.table.selected_keys():
            series = self.series.pop(name, None)
            if series is not None:
                self.chart.removeSeries(series)
            self.model.remove(name)
        self._selection()

    def add_dialog(self) -> None:
        names = list(self.history.names) or [row.name for row in self.model.rows()]
        dialog = AddCounters(names, {row.name for row in self.model.rows()}, self.pane.window())
        if dialog.exec() == QDialog.DialogCode.Accepted:
            for name in dialog.selected():
                self.add_counter(name)

    def _selection(self) -> None:
        keys = self.table.selected_keys()
        self.remove_button.setEnabled(bool(keys))
        self.scale.setEnabled(len(keys) == 1)
        row = self.model.get(keys[0]) if len(keys) == 1 else None
        if row is not None:
            index = 0 if row.auto else max(0, self.scale.findData(row.scale))
            self.scale.setCurrentIndex(index)

    def _scale_chosen(self, index: int) -> None:
        value = float(self.scale.itemData(index) or 0.0)
        for name in self.table.selected_keys():
            row = self.model.get(name)
            if row is not None:
                self.model.upsert(replace(row, scale=value or row.scale, auto=not value))
        self.redraw()

    # -- data -----------------------------------------------------------------------------------

    def set_active(self, active: bool) -> None:
        """Read the engine's history only while the node is shown."""
        if active:
            self.poll()
            self.timer.start()
        else:
            self.timer.stop()

    def poll(self) -> None:
        if self.pause_button.isChecked():
            return
        self.runner.spawn(self._fetch(), "Performance")

    async def _fetch(self) -> None:
        try:
            history = await self.engine.counter_history(None)
        except EngineError as error:  # asked again in a second: said beside the chart, not in a box each time
            self.show_failure(error)
            return
        self.show_history(history)

    def show_failure(self, error: EngineError) -> None:
        """A reading failed (a remote computer's link is down): the chart keeps what it had, and says since when."""
        self.status.setText(f"Not read again since {self.read_at}: {error}" if self.read_at
                            else f"The counters could not be read: {error}")
        self.status.setToolTip(self.status.text())

    def show_history(self, history: History) -> None:
        self.history = history
        self.read_at = time.strftime("%H:%M:%S")
        self.status.setText("" if history.samples else "No samples: the virtual server is not running.")
        self.status.setToolTip("")
        self.redraw()

    def redraw(self) -> None:
        history = self.history
        span = SPANS.get(self.span.currentText(), 100)
        self.x_axis.setRange(-span, 0)
        if not history.samples:
            for series in self.series.values():
                series.clear()
            return
        now = history.samples[-1][0]
        recent = [(at, values) for at, values in history.samples if at >= now - span]
        for row in self.model.rows():
            if row.name not in history.names:
                continue
            index = history.names.index(row.name)
            values = [v[index] for _, v in recent]
            scale = auto_scale(max(values)) if row.auto else row.scale
            self.model.upsert(replace(row, scale=scale, last=values[-1], average=sum(values) / len(values),
                                      minimum=min(values), maximum=max(values)))
            self.series[row.name].replace([QPointF(at - now, min(100.0, vals[index] * scale))
                                           for at, vals in recent])
