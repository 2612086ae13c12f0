"""Prometheus ``/metrics`` (option ``metrics_listen``): every counter of the "SMTP Server" object, IIS names as HELP.

The exposition is prometheus-client's; the values are the sampler's latest sample (read at scrape time,
never computed by a scrape). Naming rules are pure functions; the HTTP side is a small aiohttp site.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Literal

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.admin.perf import explanation
from engine.conf.hostport import split_hostport

PREFIX = "smtpsvc_"
MetricKind = Literal["counter", "gauge"]
_GAUGE_WORDS = ("Current", "Queue Length", "Currently", "Avg ", "/sec", "%")


def metric_name(iis_name: str) -> str:
    """``Bytes Sent/sec`` → ``smtpsvc_bytes_sent_per_second``; a counter's ``Total`` goes (the client adds _total)."""
    name = iis_name.replace("/sec", " per second").replace("/msg", " per message").replace("%", "percent ")
    if metric_kind(iis_name) == "counter":
        name = re.sub(r"\bTotal\b", "", name)
    return PREFIX + "_".join(re.findall(r"[a-z0-9]+", name.lower()))


def metric_kind(iis_name: str) -> MetricKind:
    """Lengths, current values, averages and rates are gauges; everything else only ever grows."""
    return "gauge" if any(word in iis_name for word in _GAUGE_WORDS) else "counter"


def help_text(iis_name: str) -> str:
    text = explanation(iis_name)
    return f'"{iis_name}" (SMTP Server): {text}' if text else f'"{iis_name}" (SMTP Server)'


class CounterCollector(Collector):
    def __init__(self, values: Callable[[], dict[str, float]]) -> None:
        self._values = values

    def collect(self) -> Iterator[Metric]:
        for iis_name, value in sorted(self._values().items()):
            name = metric_name(iis_name)
            if metric_kind(iis_name) == "counter":
                yield CounterMetricFamily(name, help_text(iis_name), value=value)
            else:
                yield GaugeMetricFamily(name, help_text(iis_name), value=value)


class MetricsServer:
    """``GET /metrics`` on ``address`` (HOST:PORT)."""

    def __init__(self, address: str, values: Callable[[], dict[str, float]]) -> None:
        self.address = address
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CounterCollector(values))
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = split_hostport(self.address)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1]) if runner.addresses else port  # a port 0's real port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
