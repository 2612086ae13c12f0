"""The queue-shape chart (QtCharts): one bar per target domain, stacked by age; clicking a segment filters the list."""

from __future__ import annotations

from PySide6.QtCharts import (
    QBarCategoryAxis,
    QBarSet,
    QChart,
    QChartView,
    QHorizontalStackedBarSeries,
    QValueAxis,
)
from PySide6.QtCore import QMargins, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QResizeEvent
from PySide6.QtWidgets import QToolTip, QWidget

from ui.models.queue_shape import AGE_BUCKETS, OTHER, Shape

# young (green) to old (dark red): how long mail has waited is what an administrator looks for
BUCKET_COLORS = ("#6dbb5a", "#a7cf4f", "#e3d33b", "#f2b01e", "#ec8a1c", "#de5a1c", "#c0301d", "#7f1d1d")


LEGEND_BESIDE_FROM = 215  # px of chart height for the legend's eight rows beside the bars

class QueueChart(QChartView):
    """``show_shape(shape)`` redraws; ``picked(domain or "", bucket)`` when a segment is clicked."""

    picked = Signal(str, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queueChart")
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        chart = QChart()
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, small.pointSizeF() - 1))
        chart.setTitleFont(small)
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignRight)  # (under the bars when too low: resizeEvent)
        chart.legend().setFont(small)
        chart.setMargins(QMargins(4, 4, 4, 4))
        chart.setBackgroundRoundness(0)
        chart.setAnimationOptions(QChart.AnimationOption.NoAnimation)
        self.setChart(chart)
        self.series = QHorizontalStackedBarSeries()
        self.series.setBarWidth(0.7)
        chart.addSeries(self.series)
        self.domain_axis = QBarCategoryAxis()
        self.domain_axis.setTruncateLabels(False)
        self.domain_axis.setLabelsFont(small)
        self.count_axis = QValueAxis()
        self.count_axis.setLabelFormat("%d")
        self.count_axis.setLabelsFont(small)
        chart.addAxis(self.domain_axis, Qt.AlignmentFlag.AlignLeft)
        chart.addAxis(self.count_axis, Qt.AlignmentFlag.AlignBottom)
        self.series.attachAxis(self.domain_axis)
        self.series.attachAxis(self.count_axis)
        self.shape: Shape | None = None
        self._categories: list[str] = []
        self.setMinimumHeight(150)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """The legend's eight rows fit beside the bars only in a tall chart; else one row beneath (never cut)."""
        wanted = Qt.AlignmentFlag.AlignRight if event.size().height() >= LEGEND_BESIDE_FROM else \
            Qt.AlignmentFlag.AlignBottom
        if self.chart().legend().alignment() != wanted:
            self.chart().legend().setAlignment(wanted)
        super().resizeEvent(event)

    def show_shape(self, shape: Shape) -> None:
        if shape == self.shape:
            return
        self.shape = shape
        self.series.clear()
        # a horizontal bar series draws its first category at the bottom: busiest domain on top
        self._categories = list(reversed(shape.domains))
        for number, (_, label) in enumerate(AGE_BUCKETS):
            values = list(reversed(shape.counts[number]))
            bar = QBarSet(label)
            bar.setColor(QColor(BUCKET_COLORS[number]))
            bar.setBorderColor(QColor(BUCKET_COLORS[number]).darker(130))
            bar.append([float(value) for value in values])
            bar.clicked.connect(lambda index, bucket=number: self._clicked(index, bucket))
            bar.hovered.connect(lambda status, index, bucket=number: self._hovered(status, index, bucket))
            self.series.append(bar)
        self.domain_axis.setCategories(self._categories or [""])
        most = max((shape.domain_total(i) for i in range(len(shape.domains))), default=0)
        if most <= 8:  # whole messages: one tick per message (nice numbers would label 0, 0, 1, 1)
            self.count_axis.setRange(0, max(most, 1))
            self.count_axis.setTickCount(max(most, 1) + 1)
        else:
            self.count_axis.setRange(0, most * 1.05)
            self.count_axis.applyNiceNumbers()
        plural = "s" * (shape.total != 1)
        self.chart().setTitle(f"Queue shape: {shape.total:,} message{plural} by target domain and age — click a bar "
                              "to list them" if shape.total else "Queue shape: the queue is empty")

    def _domain(self, index: int) -> str:
        domain = self._categories[index] if 0 <= index < len(self._categories) else ""
        return "" if domain == OTHER else domain

    def _clicked(self, index: int, bucket: int) -> None:
        self.picked.emit(self._domain(index), bucket)

    def _hovered(self, status: bool, index: int, bucket: int) -> None:
        if not status or self.shape is None or not 0 <= index < len(self._categories):
            QToolTip.hideText()
            return
        column = len(self._categories) - 1 - index
        count = self.shape.counts[bucket][column]
        QToolTip.showText(self.cursor().pos(), f"{self._categories[index]}: {count:,} message"
                          f"{'s' * (count != 1)}, {AGE_BUCKETS[bucket][1]} old — click to show them", self)
