"""The JSON objects of SPEC §7: keys, count/latency/rate shapes and the figures in them."""

from __future__ import annotations

from typing import Any

import pytest

from chatwatch.clock import FakeClock
from chatwatch.events import (
    CacheLookup,
    ErrorOccurred,
    EventBus,
    FeatureUsed,
    FrameRejected,
    QuickActionUsed,
)
from chatwatch.observe.metrics import json_api as metrics_api
from chatwatch.observe.signals import IntervalCounter, Signals
from chatwatch.timefmt import format_time
from tests.observe import factory as f
from tests.observe.live import LiveChat

COUNT_KEYS = {"total", "since_reset", "per_second"}
LATENCY_KEYS = {"p50", "p95", "p99", "count"}

SHAPES: dict[str, dict[str, str]] = {
    "connections": {
        "opened": "count",
        "closed": "count",
        "failed": "count",
        "reconnections": "count",
        "active": "int",
        "success_rate": "rate",
        "duration_seconds": "latency",
    },
    "messages": {
        "received": "count",
        "sent": "count",
        "errors": "count",
        "broadcasts": "count",
        "processing_seconds": "latency",
        "success_rate": "rate",
    },
    "ai": {
        "requests": "count",
        "failed": "count",
        "tokens_input": "count",
        "tokens_output": "count",
        "cost_usd": "count",
        "duration_seconds": "latency",
        "time_to_first_token_seconds": "latency",
        "success_rate": "rate",
        "by_model": "dict",
    },
    "users": {
        "active_users": "int",
        "active_sessions": "int",
        "session_duration_seconds": "latency",
        "messages_per_session": "number",
        "quick_actions": "dict",
        "features": "dict",
    },
    "errors": {
        "total": "count",
        "by_type": "dict",
        "error_rate": "rate",
        "client_error_rate": "rate",
        "service_failures": "count",
        "client_errors": "count",
    },
    "performance": {
        "response_seconds": "latency",
        "throughput_per_second": "number",
        "memory_rss_bytes": "int",
        "cpu_percent": "number",
        "event_loop_lag_seconds": "number",
        "asyncio_tasks": "int",
    },
    "cache": {
        "hits": "count",
        "misses": "count",
        "evictions": "count",
        "hit_rate": "rate",
        "entries": "int",
    },
}


def check_shape(kind: str, value: Any) -> None:
    """Assert ``value`` is a SPEC §7 ``kind`` (null allowed where the window may be empty)."""
    if kind == "count":
        assert set(value) == COUNT_KEYS
        assert all(isinstance(value[k], int | float) for k in COUNT_KEYS)
    elif kind == "latency":
        assert set(value) == LATENCY_KEYS and isinstance(value["count"], int)
    elif kind == "rate":
        assert value is None or 0.0 <= value <= 1.0
    elif kind == "int":
        assert value is None or isinstance(value, int)
    elif kind == "number":
        assert value is None or isinstance(value, int | float)
    elif kind == "dict":
        assert isinstance(value, dict)


def busy(bus: EventBus, live: LiveChat) -> None:
    """A little of everything."""
    live.open("c1", "u1", "s1")
    for _ in range(4):
        bus.emit(f.received())
        bus.emit(f.processed(0.02))
    bus.emit(FrameRejected("invalid_json", "c1", "u1", None, "bad", 3))
    bus.emit(f.ai_done(duration=0.8, tokens=(100, 50), cost=0.002))
    bus.emit(f.ai_failed("timeout"))
    bus.emit(CacheLookup(hit=True, entries=1))
    bus.emit(CacheLookup(hit=False, entries=1))
    bus.emit(CacheLookup(hit=False, entries=2))
    bus.emit(QuickActionUsed("pricing", "corr"))
    bus.emit(FeatureUsed("history"))
    bus.emit(ErrorOccurred("validation", "invalid_json", "bad"))


def test_every_category_has_its_keys_and_shapes(bus: EventBus, live: LiveChat, signals: Signals):
    """Each category carries SPEC §7's keys with count/latency/rate shapes, window and reset."""
    busy(bus, live)
    body = metrics_api.all_categories(signals.read())
    assert set(body) == set(SHAPES)
    for name, keys in SHAPES.items():
        cat = body[name]
        assert cat["window_seconds"] == 300
        assert cat["reset_at"].endswith("Z")
        for key, kind in keys.items():
            assert key in cat, (name, key)
            check_shape(kind, cat[key])


def test_figures_are_right(bus: EventBus, live: LiveChat, signals: Signals, clock: FakeClock):
    """Counts, rates and usage by model carry the exact numbers the events gave."""
    busy(bus, live)
    clock.advance(10)
    body = metrics_api.all_categories(signals.read())
    assert body["messages"]["received"] == {"total": 4, "since_reset": 4, "per_second": 0.4}
    assert body["messages"]["errors"]["total"] == 1
    assert body["messages"]["success_rate"] == 1.0
    # The one bad frame is the client's mistake: 1 of 5 received frames, and no failure of
    # the service among the 4 handled messages.
    assert body["errors"]["error_rate"] == 0.0
    assert body["errors"]["client_error_rate"] == pytest.approx(1 / 5)
    assert body["errors"]["client_errors"]["total"] == 1
    assert body["errors"]["service_failures"]["total"] == 0
    assert body["errors"]["by_type"]["validation"]["total"] == 1
    assert body["ai"]["requests"]["total"] == 2
    assert body["ai"]["failed"]["total"] == 1
    assert body["ai"]["success_rate"] == 0.5
    assert body["ai"]["cost_usd"]["total"] == pytest.approx(0.002)
    assert body["ai"]["by_model"]["gpt-4o-mini"]["tokens_input"]["total"] == 100
    assert body["ai"]["by_model"]["gpt-4o-mini"]["tokens_output"]["total"] == 50
    assert body["ai"]["duration_seconds"]["count"] == 1
    assert body["ai"]["duration_seconds"]["p95"] == pytest.approx(0.8, rel=0.02)
    assert body["cache"]["hit_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert body["cache"]["entries"] == 2
    assert body["users"]["quick_actions"]["pricing"] == 1
    assert body["users"]["features"]["history"] == 1
    assert body["users"]["active_users"] == 1 and body["users"]["active_sessions"] == 1
    assert body["connections"]["success_rate"] == 1.0
    assert body["connections"]["active"] == 1


def test_rates_over_no_events_are_null(signals: Signals):
    """With nothing in the window a rate is "no data" (null), not 0 or 1."""
    body = metrics_api.all_categories(signals.read())
    assert body["connections"]["success_rate"] is None
    assert body["messages"]["success_rate"] is None
    assert body["ai"]["success_rate"] is None
    assert body["errors"]["error_rate"] is None
    assert body["errors"]["client_error_rate"] is None
    assert body["cache"]["hit_rate"] is None
    assert body["messages"]["processing_seconds"] == {
        "p50": None,
        "p95": None,
        "p99": None,
        "count": 0,
    }


def test_summary_and_headline_keys(bus: EventBus, live: LiveChat, signals: Signals):
    """``summary`` has the SPEC keys plus status; a history item the same without status."""
    counter = IntervalCounter(signals.metrics)
    busy(bus, live)
    reading = signals.read()
    summary = metrics_api.summary(reading, "healthy", 2)
    want = {
        "active_connections",
        "messages_per_second",
        "error_rate",
        "ai_p95_seconds",
        "ai_cost_usd_24h",
        "cache_hit_rate",
        "active_alerts",
    }
    assert want | {"status"} <= set(summary)
    assert summary["status"] == "healthy" and summary["active_alerts"] == 2
    head = metrics_api.history_item(reading, counter.take(reading.metrics.totals))
    assert want <= set(head) and "status" not in head
    assert head["ai_cost_usd_24h"] == pytest.approx(0.002)


def test_reset_at_is_rfc3339_utc(signals: Signals, clock: FakeClock):
    """Every category's reset_at is the API's one time format (chatwatch.timefmt)."""
    body = metrics_api.all_categories(signals.read())
    assert {cat["reset_at"] for cat in body.values()} == {format_time(clock.time())}
