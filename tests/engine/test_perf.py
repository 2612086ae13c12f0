"""Performance counters: the rate and naming rules as tables, the sampler's history, /metrics scraped from the real
engine and checked by Prometheus's own `promtool check metrics`, counters moving by exactly what a test drives."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import subprocess
import urllib.request
from collections.abc import Callable

import pytest
from engine_support import start_server

from engine.admin import metrics, perf
from engine.conf.config import Config
from engine.counters import IIS_NAMES

PROMTOOL = shutil.which("promtool")


def test_rates_and_derived_totals() -> None:
    before = perf.with_derived({"Bytes Sent Total": 100, "Bytes Received Total": 50, "Messages Received Total": 7})
    after = perf.with_derived({"Bytes Sent Total": 300, "Bytes Received Total": 50, "Messages Received Total": 5})
    assert before["Bytes Total"] == 150 and after["Bytes Total"] == 350
    rates = perf.rates(before, after, 2.0)
    assert rates["Bytes Sent/sec"] == 100 and rates["Bytes Total/sec"] == 100
    assert rates["Messages Received/sec"] == 0  # a counter that went back (a restart) is no negative rate
    assert perf.rates(before, after, 0.0)["Bytes Sent/sec"] == 0
    assert set(perf.RATES.values()) <= {*IIS_NAMES.values(), *perf.DERIVED_TOTALS}
    averages = perf.with_derived({"Message Send Retries": 3, "Messages Sent Total": 2})
    assert averages["Avg Retries/msg Sent"] == 1.5 and averages["Avg Retries/msg Delivered"] == 0.0


def test_every_counter_has_an_explanation() -> None:
    names = {*IIS_NAMES.values(), *perf.DERIVED_TOTALS, *perf.RATES, *perf.AVERAGES, "Avg Recipients/msg Received"}
    assert {n for n in names if not perf.explanation(n)} == set()


@pytest.mark.parametrize(("iis_name", "name", "kind"), [
    ("Bytes Sent Total", "smtpsvc_bytes_sent", "counter"),
    ("Bytes Sent/sec", "smtpsvc_bytes_sent_per_second", "gauge"),
    ("Inbound Connections Current", "smtpsvc_inbound_connections_current", "gauge"),
    ("Total Connection Errors", "smtpsvc_connection_errors", "counter"),
    ("Remote Retry Queue Length", "smtpsvc_remote_retry_queue_length", "gauge"),
    ("Badmailed Messages (NDR of DSN)", "smtpsvc_badmailed_messages_ndr_of_dsn", "counter"),
    ("Avg Recipients/msg Received", "smtpsvc_avg_recipients_per_message_received", "gauge"),
    ("Messages Currently Undeliverable", "smtpsvc_messages_currently_undeliverable", "gauge"),
])
def test_metric_names(iis_name: str, name: str, kind: str) -> None:
    assert (metrics.metric_name(iis_name), metrics.metric_kind(iis_name)) == (name, kind)


def test_sampler_keeps_ten_minutes() -> None:
    total = [0.0]
    ticks = iter(range(10_000))
    sampler = perf.Sampler(lambda: {"Messages Received Total": total[0]}, clock=lambda: 0.0,
                           monotonic=lambda: float(next(ticks)))
    for _ in range(700):
        total[0] += 3
        sampler.sample()
    history = sampler.history()
    assert len(history.samples) == perf.HISTORY
    assert {v for _, v in history.series("Messages Received/sec")} == {3.0}
    assert history.series("Messages Received Total")[-1][1] == 2100


async def test_counters_move_exactly_and_metrics_pass_promtool(config_factory: Callable[..., Config]) -> None:
    running = await start_server(config_factory(metrics_listen="127.0.0.1:0"))
    server = running.server
    try:
        def send(count: int) -> None:
            for _ in range(count):
                with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
                    client.sendmail("a@example.test", ["b@example.test", "c@example.test"], b"Subject: x\r\n\r\nhi\r\n")

        before = await server.counters_snapshot()
        await asyncio.to_thread(send, 3)
        await running.wait_for(lambda: len(running.drop_files()) == 3)
        after = await server.counters_snapshot()
        assert server.sampler is not None
        sampled = server.sampler.sample()
        port = server.metrics_port
        assert port
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode())
    finally:
        await server.stop()
    moved = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert moved["Messages Received Total"] == 3 and moved["Inbound Connections Total"] == 3
    assert moved["Recipients Received Total"] == 6 and moved["Directory Drops Total"] == 3
    assert sampled["Messages Received/sec"] > 0
    assert "smtpsvc_messages_received_total 3.0" in body
    assert '# HELP smtpsvc_messages_received_total "Messages Received Total" (SMTP Server)' in body
    assert "# TYPE smtpsvc_messages_received_per_second gauge" in body
    if PROMTOOL is None:
        pytest.skip("promtool (Debian package prometheus) is installed by tests/run")
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # not even a lint warning
