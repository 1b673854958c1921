"""Every SPEC §7 metric moves when its events are emitted, on a fresh registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chatwatch.clock import FakeClock
from chatwatch.config import MetricsSettings
from chatwatch.events import (
    AIUnpriced,
    BroadcastSent,
    CacheEvicted,
    CacheLookup,
    CacheStored,
    ConnectionFailed,
    ErrorOccurred,
    EventBus,
    FeatureUsed,
    FrameRejected,
    MessageSent,
    QuickActionUsed,
    ResponseCompleted,
    SecurityEvent,
    SessionStarted,
)
from chatwatch.observe.metrics.instruments import AI_LATENCY_BUCKETS
from chatwatch.observe.metrics.labels import LabelCap
from chatwatch.observe.metrics.recorder import ChatMetrics
from tests.observe import factory as f


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, 0 when absent (so a missing series fails an equality check clearly)."""
    return registry.get_sample_value(name, labels) or 0.0


def test_connection_metrics_move(bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics):
    """Opened, closed by reason, failed by reason, active, reconnections and duration move."""
    bus.emit(f.opened("c1", "u1"))
    bus.emit(f.opened("c2", "u1", resumed=True))
    bus.emit(f.opened("c3", "u2"))
    assert value(registry, "chat_connections_active") == 3
    assert value(registry, "chat_active_users") == 2
    bus.emit(f.closed("c1", "u1", reason="client_closed", duration=30.0))
    bus.emit(ConnectionFailed("auth_invalid", "10.0.0.1", "x", 401))
    assert value(registry, "chat_connections_opened_total") == 3
    assert value(registry, "chat_reconnections_total") == 1
    assert value(registry, "chat_connections_closed_total", reason="client_closed") == 1
    assert value(registry, "chat_connections_failed_total", reason="auth_invalid") == 1
    assert value(registry, "chat_connections_active") == 2
    assert value(registry, "chat_active_users") == 2  # u1 still has c2 open
    assert value(registry, "chat_connection_duration_seconds_sum") == 30.0
    assert value(registry, "chat_connection_duration_seconds_count") == 1


def test_active_users_are_distinct_users_with_an_open_connection(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """A user with two connections counts once and leaves only when both close."""
    bus.emit(f.opened("c1", "u1"))
    bus.emit(f.opened("c2", "u1"))
    bus.emit(f.opened("c1", "u1"))  # a duplicate announcement changes nothing
    assert value(registry, "chat_active_users") == 1
    assert value(registry, "chat_connections_active") == 2
    bus.emit(f.closed("c1", "u1"))
    assert value(registry, "chat_active_users") == 1
    bus.emit(f.closed("c2", "u1"))
    bus.emit(f.closed("c2", "u1"))  # closing twice never goes negative
    assert value(registry, "chat_active_users") == 0
    assert value(registry, "chat_connections_active") == 0


def test_message_metrics_move(bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics):
    """Received/sent by type, errors by code, processing time, broadcasts and replies move."""
    bus.emit(f.received("message"))
    bus.emit(f.received("ping"))
    bus.emit(MessageSent("ack", "c1", "corr"))
    bus.emit(MessageSent("ai_delta", "c1", "corr"))
    bus.emit(FrameRejected("invalid_json", "c1", "u1", None, "bad", 3))
    bus.emit(ErrorOccurred("ai_provider", "ai_unavailable", "upstream 500"))
    bus.emit(f.processed(0.25))
    bus.emit(f.processed(0.5, ok=False))
    bus.emit(ResponseCompleted("corr", "s1", 1.5, False))
    bus.emit(BroadcastSent(recipients=3))
    assert value(registry, "chat_messages_received_total", type="message") == 1
    assert value(registry, "chat_messages_received_total", type="ping") == 1
    assert value(registry, "chat_messages_sent_total", type="ack") == 1
    assert value(registry, "chat_messages_sent_total", type="ai_delta") == 1
    assert value(registry, "chat_message_errors_total", code="invalid_json") == 1
    assert value(registry, "chat_message_errors_total", code="ai_unavailable") == 1
    assert value(registry, "chat_message_processing_seconds_count") == 2
    assert value(registry, "chat_message_processing_seconds_sum") == 0.75
    assert value(registry, "chat_messages_processed_total", outcome="failed") == 1
    assert value(registry, "chat_response_seconds_sum") == 1.5
    assert value(registry, "chat_broadcasts_total") == 1
    assert value(registry, "chat_broadcast_recipients_total") == 3


def test_ai_metrics_move(bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics):
    """Requests by outcome, duration, TTFT, tokens by type, cost and unpriced calls move."""
    bus.emit(f.ai_done(duration=0.5, ttft=0.1, tokens=(100, 40), cost=0.25))
    bus.emit(f.ai_failed("timeout"))
    bus.emit(f.ai_failed("error"))
    bus.emit(AIUnpriced("openai", "mystery-model", first_time=True))
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(registry, "chat_ai_requests_total", **labels, outcome="success") == 1
    assert value(registry, "chat_ai_requests_total", **labels, outcome="timeout") == 1
    assert value(registry, "chat_ai_requests_total", **labels, outcome="error") == 1
    assert value(registry, "chat_ai_request_duration_seconds_sum", **labels) == 0.5
    assert value(registry, "chat_ai_time_to_first_token_seconds_sum", **labels) == 0.1
    assert value(registry, "chat_ai_tokens_total", **labels, type="input") == 100
    assert value(registry, "chat_ai_tokens_total", **labels, type="output") == 40
    assert value(registry, "chat_ai_cost_usd_total", **labels) == 0.25
    assert value(registry, "chat_ai_unpriced_requests_total", provider="openai") == 1


def test_ai_histograms_use_the_opentelemetry_genai_buckets(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """Duration and TTFT buckets are 0.01 doubling to 81.92 s (plus +Inf)."""
    bus.emit(f.ai_done())
    for family in ("chat_ai_request_duration_seconds", "chat_ai_time_to_first_token_seconds"):
        bounds = [
            float(s.labels["le"])
            for m in registry.collect()
            if m.name == family
            for s in m.samples
            if s.name.endswith("_bucket")
        ]
        assert bounds == [*AI_LATENCY_BUCKETS, float("inf")]
    assert tuple(0.01 * 2**k for k in range(14)) == AI_LATENCY_BUCKETS


def test_cached_completion_is_not_a_provider_call(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """A reply served from the cache adds no AI request, tokens, cost or latency."""
    bus.emit(f.ai_done(cached=True, cost=1.0))
    assert registry.get_sample_value(
        "chat_ai_requests_total",
        {"provider": "openai", "model": "gpt-4o-mini", "outcome": "success"},
    ) in (None, 0.0)
    assert metrics.read().totals.get("ai.cost_usd", 0.0) == 0.0


def test_model_label_is_capped_at_twenty_distinct_values(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """The 21st distinct upstream model name and later ones are labelled ``other``."""
    for n in range(25):
        bus.emit(f.ai_done(f"model-{n}"))
    models = {
        s.labels["model"]
        for m in registry.collect()
        if m.name == "chat_ai_requests"
        for s in m.samples
    }
    assert len(models) == 21
    assert "other" in models and "model-19" in models and "model-20" not in models
    other = {"provider": "openai", "model": "other", "outcome": "success"}
    assert value(registry, "chat_ai_requests_total", **other) == 5


def test_label_cap_keeps_known_values_and_truncates_long_ones():
    """Known values never count against the cap; long strings are cut."""
    cap = LabelCap(1, known=("a",), max_len=4)
    assert cap("a") == "a"
    assert cap("bbbbbbbb") == "bbbb"
    assert cap("c") == "other"
    assert cap("a") == "a"
    assert cap("") == "unknown"


def test_user_metrics_move(bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics):
    """Sessions, session duration and messages, quick actions and features move."""
    bus.emit(SessionStarted("s1", "u1", resumed=False))
    bus.emit(SessionStarted("s2", "u2", resumed=False))
    assert value(registry, "chat_active_sessions") == 2
    bus.emit(f.session_ended("s1", duration=120.0, messages=6))
    bus.emit(QuickActionUsed("pricing", "corr"))
    bus.emit(FeatureUsed("history"))
    assert value(registry, "chat_active_sessions") == 1
    assert value(registry, "chat_session_duration_seconds_sum") == 120.0
    assert value(registry, "chat_session_messages_sum") == 6
    assert value(registry, "chat_quick_actions_total", action="pricing") == 1
    assert value(registry, "chat_feature_usage_total", feature="history") == 1


def test_quick_action_names_from_clients_are_capped(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """Arbitrary action strings cannot create unbounded series."""
    for n in range(100):
        bus.emit(QuickActionUsed(f"junk-{n}", "corr"))
    actions = {
        s.labels["action"]
        for m in registry.collect()
        if m.name == "chat_quick_actions"
        for s in m.samples
        if s.name == "chat_quick_actions_total"
    }
    assert len(actions) <= 4 + 20 + 1


def test_error_and_security_metrics_move(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """Errors by type and security events by type move."""
    bus.emit(ErrorOccurred("authentication", "auth_invalid", "bad token"))
    bus.emit(ErrorOccurred("timeout", "ai_timeout", "slow"))
    bus.emit(SecurityEvent("auth_failed", "10.0.0.1", "curl", None, "bad token"))
    assert value(registry, "chat_errors_total", type="authentication") == 1
    assert value(registry, "chat_errors_total", type="timeout") == 1
    assert value(registry, "chat_errors_total", type="system") == 0  # pre-bound at zero
    assert value(registry, "chat_security_events_total", type="auth_failed") == 1


def test_cache_metrics_move(bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics):
    """Hits, misses, entries and evictions move."""
    bus.emit(CacheLookup(hit=False, entries=0))
    bus.emit(CacheLookup(hit=True, entries=5))
    bus.emit(CacheEvicted(count=2, entries=3))
    assert value(registry, "chat_cache_requests_total", result="hit") == 1
    assert value(registry, "chat_cache_requests_total", result="miss") == 1
    assert value(registry, "chat_cache_evictions_total") == 2
    assert value(registry, "chat_cache_entries") == 3


def test_alert_metrics_exist_at_zero_and_can_be_set(
    registry: CollectorRegistry, metrics: ChatMetrics
):
    """``chat_alerts_active`` is present for every severity; the engine hooks move it."""
    for severity in ("low", "medium", "high", "critical"):
        assert registry.get_sample_value("chat_alerts_active", {"severity": severity}) == 0
    metrics.set_alerts_active({"high": 2})
    metrics.count_notification("ops-webhook", "delivered")
    assert value(registry, "chat_alerts_active", severity="high") == 2
    assert (
        value(
            registry, "chat_alert_notifications_total", channel="ops-webhook", outcome="delivered"
        )
        == 1
    )


def test_reset_keeps_prometheus_counters_monotonic(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics, clock: FakeClock
):
    """After a reset Prometheus totals keep growing while JSON since-reset restarts at 0."""
    for _ in range(3):
        bus.emit(f.received())
    clock.advance(10)
    metrics.reset()
    bus.emit(f.received())
    assert value(registry, "chat_messages_received_total", type="message") == 4
    reading = metrics.read()
    assert reading.totals["messages.received"] == 4
    assert reading.since_reset["messages.received"] == 1


def test_every_spec_family_is_registered(registry: CollectorRegistry, metrics: ChatMetrics):
    """All SPEC §7 names exist on the registry from the start (logs excepted: another module)."""
    names = set()
    for m in registry.collect():
        for s in m.samples:
            names.add(s.name)
    expected = [
        "chat_connections_opened_total",
        "chat_connections_closed_total",
        "chat_connections_failed_total",
        "chat_connections_active",
        "chat_reconnections_total",
        "chat_connection_duration_seconds_count",
        "chat_messages_received_total",
        "chat_messages_sent_total",
        "chat_message_errors_total",
        "chat_message_processing_seconds_count",
        "chat_broadcasts_total",
        "chat_active_users",
        "chat_active_sessions",
        "chat_session_duration_seconds_count",
        "chat_session_messages_count",
        "chat_errors_total",
        "chat_response_seconds_count",
        "chat_event_loop_lag_seconds",
        "chat_asyncio_tasks",
        "chat_cache_requests_total",
        "chat_cache_entries",
        "chat_cache_evictions_total",
        "chat_security_events_total",
        "chat_alerts_active",
    ]
    assert set(expected) <= names, set(expected) - names


def test_a_broken_event_value_is_reported_not_raised(registry: CollectorRegistry, clock: FakeClock):
    """A listener error goes to the bus's error reporter; the emitter never sees it."""
    seen: list[BaseException] = []
    bus = EventBus(on_listener_error=lambda _e, exc: seen.append(exc))
    ChatMetrics(registry, clock, MetricsSettings()).attach(bus)
    bus.emit(f.ai_done(tokens=(-3, 1)))  # prometheus_client refuses to decrease a counter
    assert len(seen) == 1 and isinstance(seen[0], ValueError)


def test_cache_store_updates_the_entry_count(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """A store announces the count after it, so the gauge does not lag one store behind."""
    bus.emit(CacheLookup(hit=False, entries=0))
    bus.emit(CacheStored(entries=1))
    assert value(registry, "chat_cache_entries") == 1
    assert metrics.read().cache_entries == 1
