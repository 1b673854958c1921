"""The admin metrics routes over HTTP (ASGI), including 400s for bad history parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from chatwatch.api.admin_metrics import build_admin_metrics_router
from chatwatch.clock import FakeClock
from chatwatch.events import ErrorOccurred, EventBus
from chatwatch.observe.health import HealthChecker
from chatwatch.observe.metrics.history import MetricsHistory
from chatwatch.observe.metrics.json_api import CATEGORIES, history_item
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.signals import IntervalCounter, Signals
from chatwatch.store.db import Database
from tests.observe import factory as f

PREFIX = "/api/v1/admin/chat"


@pytest.fixture
async def api(
    tmp_path: Path, metrics: ChatMetrics, signals: Signals, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, MetricsHistory]]:
    """An HTTP client for an app with only the admin metrics router, on a SQLite store."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}")
    await db.migrate()
    counter = IntervalCounter(metrics)

    def snapshot() -> dict[str, Any]:
        reading = signals.read()
        return history_item(reading, counter.take(reading.metrics.totals))

    history = MetricsHistory(db, clock, snapshot, interval=60, retention=86400)

    async def ping() -> bool:
        return True

    health = HealthChecker(ping, signals, memory_percent=lambda: 40.0)
    app = FastAPI()
    router = build_admin_metrics_router(metrics, history, health, signals=signals)
    app.include_router(router, prefix=PREFIX)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, history
    await db.dispose()


async def test_every_endpoint_answers(api: tuple[httpx.AsyncClient, MetricsHistory]):
    """metrics, each category, history, summary, reset, health and alerts all answer 200."""
    client, _ = api
    paths = ["/metrics", "/metrics/history", "/metrics/summary", "/health", "/alerts"]
    paths += [f"/metrics/{c}" for c in CATEGORIES]
    for path in paths:
        r = await client.get(PREFIX + path)
        assert r.status_code == 200, (path, r.text)
    r = await client.post(PREFIX + "/metrics/reset")
    assert r.status_code == 200 and r.json()["reset_at"].endswith("Z")
    assert len(paths) + 1 == 13  # with GET /metrics (Prometheus), the fourteen


async def test_metrics_reflect_events(api: tuple[httpx.AsyncClient, MetricsHistory], bus: EventBus):
    """What the events said is what the JSON says, per category and all together."""
    client, _ = api
    bus.emit(f.received())
    bus.emit(f.ai_done(tokens=(7, 9), cost=0.5))
    whole = (await client.get(PREFIX + "/metrics")).json()
    assert set(whole) == set(CATEGORIES)
    assert whole["messages"]["received"]["total"] == 1
    ai = (await client.get(PREFIX + "/metrics/ai")).json()
    assert ai["tokens_output"]["total"] == 9
    assert ai["cost_usd"]["total"] == 0.5


async def test_reset_restarts_since_reset(
    api: tuple[httpx.AsyncClient, MetricsHistory], bus: EventBus
):
    """POST reset zeroes since_reset but not total."""
    client, _ = api
    bus.emit(f.received())
    await client.post(PREFIX + "/metrics/reset")
    received = (await client.get(PREFIX + "/metrics/messages")).json()["received"]
    assert received["total"] == 1 and received["since_reset"] == 0


async def test_summary_has_status_and_headline(api: tuple[httpx.AsyncClient, MetricsHistory]):
    """summary carries the health status and the headline keys."""
    client, _ = api
    body = (await client.get(PREFIX + "/metrics/summary")).json()
    assert body["status"] == "healthy"
    for key in ("active_connections", "messages_per_second", "error_rate", "ai_p95_seconds"):
        assert key in body
    for key in ("ai_cost_usd_24h", "cache_hit_rate", "active_alerts"):
        assert key in body


async def test_summary_and_health_judge_the_service_error_rate(
    api: tuple[httpx.AsyncClient, MetricsHistory], bus: EventBus
):
    """summary and health say unhealthy when a third of the handled messages failed.

    Tried: 20 answered and 10 ai_unavailable messages (both used to say healthy).
    """
    client, _ = api
    for n in range(30):
        bus.emit(f.received())
        if n % 3 == 0:
            bus.emit(ErrorOccurred("ai_provider", "ai_unavailable", "upstream 500", "corr"))
        bus.emit(f.processed(ok=n % 3 != 0))
    summary = (await client.get(PREFIX + "/metrics/summary")).json()
    assert summary["status"] == "unhealthy"
    assert summary["error_rate"] == pytest.approx(1 / 3, abs=1e-6)
    health = (await client.get(PREFIX + "/health")).json()
    assert health["status"] == "unhealthy"
    assert health["checks"]["error_rate"]["failures"] == 10


async def test_history_items_carry_interval_counts(
    api: tuple[httpx.AsyncClient, MetricsHistory], bus: EventBus, clock: FakeClock
):
    """Each snapshot stores the interval's handled messages and service failures (summable)."""
    client, history = api
    for ok in (True, False, True):
        bus.emit(f.received())
        if not ok:
            bus.emit(ErrorOccurred("system", "internal", "store down", "corr"))
        bus.emit(f.processed(ok=ok))
    clock.advance(60)
    await history.record()
    bus.emit(f.received())
    bus.emit(f.processed())
    clock.advance(60)
    await history.record()
    items = (await client.get(PREFIX + "/metrics/history")).json()["items"]
    counts = [item["interval"] for item in items]
    assert [c["handled_messages"] for c in counts] == [3, 1]
    assert [c["service_failures"] for c in counts] == [1, 0]
    assert all(c["seconds"] == 60 for c in counts)


async def test_alerts_placeholder(api: tuple[httpx.AsyncClient, MetricsHistory]):
    """Until the alert engine exists, alerts is an empty list with zero counts."""
    client, _ = api
    body = (await client.get(PREFIX + "/alerts")).json()
    assert body == {"active": [], "counts": {"low": 0, "medium": 0, "high": 0, "critical": 0}}


async def test_history_items_and_time_formats(
    api: tuple[httpx.AsyncClient, MetricsHistory], clock: FakeClock
):
    """Items carry an RFC 3339 timestamp and headline keys; since/until take all time forms."""
    client, history = api
    start = clock.time()
    for _ in range(5):
        await history.record()
        clock.advance(60)
    body = (await client.get(PREFIX + "/metrics/history")).json()
    assert len(body["items"]) == 5
    item = body["items"][0]
    assert item["timestamp"].endswith("Z") and "messages_per_second" in item
    assert "status" not in item
    r = await client.get(PREFIX + "/metrics/history", params={"since": str(start + 120)})
    assert len(r.json()["items"]) == 3
    r = await client.get(PREFIX + "/metrics/history", params={"since": "150s"})
    assert len(r.json()["items"]) == 2
    iso = body["items"][3]["timestamp"]
    r = await client.get(PREFIX + "/metrics/history", params={"until": iso, "limit": "2"})
    assert [i["timestamp"] for i in r.json()["items"]] == [
        body["items"][2]["timestamp"],
        body["items"][3]["timestamp"],
    ]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-45T00:00:00Z"}, "until"),
        ({"since": "2025-01-01T00:00:00+24:00"}, "since"),
        ({"since": "-5"}, "since"),
        ({"since": "nan"}, "since"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100001"}, "limit"),
        ({"limit": " "}, "limit"),
        ({"since": "1000", "until": "10"}, "since: must not be after until"),
    ],
)
async def test_bad_history_parameters_are_400_with_a_reason(
    api: tuple[httpx.AsyncClient, MetricsHistory], params: dict[str, str], needle: str
):
    """A malformed since/until/limit is a 400 naming the problem, never a 422 or 500."""
    client, _ = api
    r = await client.get(PREFIX + "/metrics/history", params=params)
    assert r.status_code == 400, r.text
    assert needle in r.json()["detail"]


async def test_history_times_without_a_zone_are_utc(
    api: tuple[httpx.AsyncClient, MetricsHistory], clock: FakeClock
):
    """until=<RFC 3339 without a zone> is read as UTC, as in the log API (it was a 400 here).

    Tried: the last snapshot's time with its Z removed, and the SPEC's template with every
    parameter empty (``?since=&until=&limit=``: empty counts as absent; limit was a 400).
    """
    client, history = api
    for _ in range(3):
        await history.record()
        clock.advance(60)
    items = (await client.get(PREFIX + "/metrics/history")).json()["items"]
    naive = items[1]["timestamp"].removesuffix("Z")
    r = await client.get(PREFIX + "/metrics/history", params={"until": naive})
    assert r.status_code == 200, r.text
    assert [i["timestamp"] for i in r.json()["items"]] == [i["timestamp"] for i in items[:2]]
    r = await client.get(PREFIX + "/metrics/history?since=&until=&limit=")
    assert (r.status_code, len(r.json()["items"])) == (200, 3)
