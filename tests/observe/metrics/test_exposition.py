"""``GET /metrics``: formats by Accept, token auth, gzip, off-loop rendering and promtool."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from chatwatch.api.metrics_endpoint import build_metrics_endpoint
from chatwatch.clock import FakeClock
from chatwatch.config import MetricsSettings
from chatwatch.events import (
    AIBudgetChanged,
    AICircuitChanged,
    AIFallbackUsed,
    AIRequestRetried,
    EventBus,
    MessageReplayed,
    RejectionsSuppressed,
    ReplyCancelled,
    SecurityEvent,
    attach,
)
from chatwatch.observe.metrics.exposition import Exposition, new_registry
from chatwatch.observe.metrics.recorder import ChatMetrics
from tests.observe import factory as f
from tests.observe.live import LiveChat
from tests.observe.promtool import find_or_install_promtool


def client_for(
    registry: CollectorRegistry, settings: MetricsSettings, bus: EventBus | None = None
) -> httpx.AsyncClient:
    """An HTTP client for an app serving only ``/metrics``."""
    app = FastAPI()
    app.include_router(build_metrics_endpoint(registry, settings, bus=bus))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def traffic(bus: EventBus) -> None:
    """Some events so that labelled series exist."""
    bus.emit(f.opened())
    bus.emit(f.received())
    bus.emit(f.ai_done(tokens=(3, 4), cost=0.01))
    bus.emit(f.ai_failed("timeout"))
    bus.emit(ReplyCancelled("c1", "s1", "corr", "client_closed", stored=False))
    bus.emit(MessageReplayed("c1", "s1", "corr"))
    bus.emit(RejectionsSuppressed("c1", "u1", "127.0.0.1", 3, (("invalid_json", 3),), 10.0))
    bus.emit(AIRequestRetried("openai", "gpt-4o-mini", "corr", 2, "http 503", 0.1))
    bus.emit(AICircuitChanged("openai", "open", "closed", 5, 30.0))
    bus.emit(AIFallbackUsed("openai", "builtin", "corr", "circuit_open"))
    bus.emit(AIBudgetChanged("warning", 8.0, 10.0, "2027-01-15"))
    bus.emit(f.closed())


async def test_text_format_by_default(
    registry: CollectorRegistry, metrics: ChatMetrics, bus: EventBus
):
    """Without an OpenMetrics Accept the body is Prometheus text 0.0.4, as generate_latest."""
    traffic(bus)
    async with client_for(registry, MetricsSettings()) as client:
        r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert r.content == generate_latest(registry)
    assert (
        b'chat_ai_requests_total{model="gpt-4o-mini",outcome="timeout",provider="openai"} 1.0'
        in (r.content)
    )


async def test_openmetrics_when_asked(
    registry: CollectorRegistry, metrics: ChatMetrics, bus: EventBus
):
    """An OpenMetrics Accept gets OpenMetrics text that its parser accepts, ending in # EOF."""
    traffic(bus)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with client_for(registry, MetricsSettings()) as client:
        r = await client.get("/metrics", headers={"Accept": accept})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    names = {m.name for m in text_string_to_metric_families(r.text)}
    assert "chat_connections_opened" in names and "chat_ai_request_duration_seconds" in names


async def test_gzip_when_accepted(registry: CollectorRegistry, metrics: ChatMetrics):
    """``Accept-Encoding: gzip`` gets a gzip body; ``q=0`` does not."""
    async with client_for(registry, MetricsSettings()) as client:
        r = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert r.headers.get("content-encoding") == "gzip"
        assert b"chat_connections_active" in r.content  # httpx decodes it
        r = await client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
        assert "content-encoding" not in r.headers


async def test_token_is_required_when_configured(registry: CollectorRegistry, metrics: ChatMetrics):
    """With metrics.token, no or a wrong bearer is 401 (and a security event); the right one 200."""
    seen: list[SecurityEvent] = []
    bus = EventBus()
    bus.subscribe(SecurityEvent, seen.append)
    settings = MetricsSettings(token="scrape-secret-123")
    async with client_for(registry, settings, bus) as client:
        r = await client.get("/metrics")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = await client.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
        assert r.status_code == 200
    assert [e.type for e in seen] == ["auth_failed", "auth_failed"]


class _ThreadSpy(Collector):
    """Records which thread collects."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def collect(self) -> Iterable[Metric]:
        self.threads.append(threading.current_thread().name)
        return []


async def test_rendering_happens_off_the_event_loop_thread(registry: CollectorRegistry):
    """The scrape is generated in the dedicated scrape thread, never on the loop's."""
    spy = _ThreadSpy()
    registry.register(spy)
    async with client_for(registry, MetricsSettings()) as client:
        await client.get("/metrics")
    assert spy.threads and spy.threads[0].startswith("metrics-scrape")
    assert threading.current_thread().name not in spy.threads


def test_cooperative_rendering_is_byte_identical_for_many_series():
    """Rendering in GIL-yielding strides gives exactly generate_latest's bytes, text and OM."""
    from prometheus_client import Counter, Histogram
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest

    registry = CollectorRegistry()
    c = Counter("bulk_things", "Things.", ["a"], registry=registry)
    h = Histogram("bulk_seconds", "Seconds.", ["a"], registry=registry)
    for n in range(500):
        c.labels(str(n)).inc(n)
        h.labels(str(n % 7)).observe(n / 100)
    expo = Exposition(registry)
    assert expo.render().body == generate_latest(registry)
    om = expo.render("application/openmetrics-text; version=1.0.0").body
    assert om == om_latest(registry)
    expo.close()


def test_new_registry_has_process_metrics(monkeypatch: pytest.MonkeyPatch):
    """The standard process_* metrics are on a new registry (single-process mode)."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    body = Exposition(new_registry()).render().body
    assert b"process_resident_memory_bytes" in body
    assert b"process_cpu_seconds_total" in body


def _check(promtool: str, body: bytes) -> tuple[int, str]:
    """promtool check metrics on ``body``: its exit code and everything it printed."""
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    return result.returncode, (result.stdout + result.stderr).decode()


@pytest.mark.timeout(700)
async def test_promtool_accepts_a_real_scrape_without_warnings(clock: FakeClock, bus: EventBus):
    """``promtool check metrics`` on a scrape with every family populated says nothing."""
    promtool = find_or_install_promtool()
    registry = new_registry()
    attach(bus, ChatMetrics(registry, clock, MetricsSettings(), live=LiveChat(bus, clock).hub))
    traffic(bus)
    async with client_for(registry, MetricsSettings()) as client:
        body = (await client.get("/metrics")).content
    code, out = _check(promtool, body)
    assert code == 0 and out.strip() == "", out
    # The check can fail: a metric promtool dislikes makes it speak.
    bad = b"# HELP chat_latency_ms Latency.\n# TYPE chat_latency_ms counter\nchat_latency_ms 1\n"
    assert _check(promtool, bad)[1].strip()
