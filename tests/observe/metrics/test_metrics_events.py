"""Every SPEC §7 metric moves when its events are emitted, on a fresh registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from chatwatch.clock import FakeClock
from chatwatch.config import MetricsSettings
from chatwatch.events import (
    AIBudgetChanged,
    AICircuitChanged,
    AIFallbackUsed,
    AIRequestRetried,
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
    MessageReplayed,
    MessageSent,
    QuickActionUsed,
    RejectionsSuppressed,
    ReplyCancelled,
    ResponseCompleted,
    SecurityEvent,
    attach,
)
from chatwatch.observe.metrics.instruments import AI_LATENCY_BUCKETS
from chatwatch.observe.metrics.labels import LabelCap
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.vocabulary import AIOutcome, QuickActionName
from tests.observe import factory as f
from tests.observe.live import LiveChat


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, 0 when absent (so a missing series fails an equality check clearly)."""
    return registry.get_sample_value(name, labels) or 0.0


def test_connection_metrics_move(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics, live: LiveChat
):
    """Opened, closed by reason, failed by reason, active, reconnections and duration move."""
    live.open("c1", "u1")
    live.open("c2", "u1", resumed=True)
    live.open("c3", "u2")
    assert value(registry, "chat_connections_active") == 3
    assert value(registry, "chat_active_users") == 2
    live.close("c1", "u1", reason="client_closed", duration=30.0)
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
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics, live: LiveChat
):
    """A user with two connections counts once and leaves only when both close."""
    live.open("c1", "u1")
    live.open("c2", "u1")
    bus.emit(f.opened("c1", "u1"))  # a duplicate announcement changes nothing
    assert value(registry, "chat_active_users") == 1
    assert value(registry, "chat_connections_active") == 2
    live.close("c1", "u1")
    assert value(registry, "chat_active_users") == 1
    live.close("c2", "u1")
    live.close("c2", "u1")  # closing twice never goes negative
    assert value(registry, "chat_active_users") == 0
    assert value(registry, "chat_connections_active") == 0


def test_live_gauges_follow_the_hub_not_the_events(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics, live: LiveChat
):
    """The hub owns live state: events alone move no gauge; a tick republishes the hub's.

    Tried: ConnectionOpened events for sockets the hub never registered (metrics used to
    count them itself and so could disagree with the hub).
    """
    for n in range(3):
        bus.emit(f.opened(f"ghost-{n}", f"u{n}"))
    assert value(registry, "chat_connections_active") == 0
    assert value(registry, "chat_active_users") == 0
    live.open("quiet", "u9", "s9", announce=False)  # the hub has it; no event told metrics
    assert value(registry, "chat_connections_active") == 0
    metrics.tick()
    assert value(registry, "chat_connections_active") == 1
    assert value(registry, "chat_active_sessions") == 1
    assert metrics.read().active_connections == 1


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
    assert metrics.read().totals.ai_cost_usd == 0.0


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


def test_user_metrics_move(
    bus: EventBus,
    registry: CollectorRegistry,
    metrics: ChatMetrics,
    live: LiveChat,
    clock: FakeClock,
):
    """Sessions, session duration and messages, quick actions and features move."""
    live.open("c1", "u1", "s1")
    live.open("c2", "u2", "s2")
    assert value(registry, "chat_active_sessions") == 2
    for _ in range(6):
        live.hub.count_message("s1")
    clock.advance(120)
    live.close("c1", "u1")  # the last connection of s1: the hub ends the session
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
    """Arbitrary action strings cannot create unbounded series; every vocabulary name is kept.

    Tried: 100 junk names. The label set used to be a second list of four names that had
    drifted from the five the chat offers (``contact`` was missing).
    """
    for n in range(100):
        bus.emit(QuickActionUsed(f"junk-{n}", "corr"))
    actions = {
        s.labels["action"]
        for m in registry.collect()
        if m.name == "chat_quick_actions"
        for s in m.samples
        if s.name == "chat_quick_actions_total"
    }
    assert set(QuickActionName) <= actions
    assert len(actions) <= len(QuickActionName) + 20 + 1


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
    assert reading.totals.messages_received == 4
    assert reading.since_reset.messages_received == 1


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
        "chat_replies_cancelled_total",
        "chat_message_replays_total",
        "chat_ai_budget_used_ratio",
    ]
    assert set(expected) <= names, set(expected) - names


def test_a_broken_event_value_is_reported_not_raised(registry: CollectorRegistry, clock: FakeClock):
    """A listener error goes to the bus's error reporter; the emitter never sees it."""
    seen: list[BaseException] = []
    bus = EventBus(on_listener_error=lambda _e, exc: seen.append(exc))
    attach(bus, ChatMetrics(registry, clock, MetricsSettings(), live=LiveChat(bus, clock).hub))
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


# --- the events added for cancellation, replays, suppression and AI resilience --------------


def test_reply_cancelled_is_counted_and_is_no_error(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """``chat_replies_cancelled_total{reason}`` moves; no error counter or failure does."""
    bus.emit(f.received())
    bus.emit(ReplyCancelled("c1", "s1", "corr", "client_closed", stored=True))
    assert value(registry, "chat_replies_cancelled_total", reason="client_closed") == 1
    assert sum(value(registry, "chat_errors_total", type=t) for t in ("system", "timeout")) == 0
    totals = metrics.read().totals
    assert totals.replies_cancelled == 1
    assert totals.service_failures == 0 and totals.message_errors == 0


def test_message_replayed_is_counted(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """``chat_message_replays_total`` counts idempotent re-sends."""
    bus.emit(MessageReplayed("c1", "s1", "corr"))
    bus.emit(MessageReplayed("c1", "s1", "corr"))
    assert value(registry, "chat_message_replays_total") == 2
    assert metrics.read().totals.replays == 2


def test_suppressed_rejections_count_by_code_and_as_client_mistakes(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """A summary's counts land in ``chat_message_rejections_suppressed_total{code}`` and in
    the rejected frames and client mistakes behind ``client_error_rate``."""
    bus.emit(
        RejectionsSuppressed(
            "c1", "u1", "10.0.0.1", 7, (("invalid_json", 5), ("rate_limited", 2)), 10.0
        )
    )
    name = "chat_message_rejections_suppressed_total"
    assert value(registry, name, code="invalid_json") == 5
    assert value(registry, name, code="rate_limited") == 2
    # Each was answered with an error frame: counted by code like the announced ones.
    assert value(registry, "chat_message_errors_total", code="invalid_json") == 5
    totals = metrics.read().totals
    assert totals.message_errors == 7
    assert totals.rejections_suppressed == 7
    assert totals.frames_rejected == 7 and totals.client_mistakes == 7
    assert totals.service_failures == 0


def test_ai_retry_fallback_circuit_and_budget_metrics(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics
):
    """Retries by provider, fallbacks by reason, circuit state and transitions, budget ratio."""
    bus.emit(AIRequestRetried("openai", "gpt-4o-mini", "corr", 2, "http 503", 0.2))
    bus.emit(AIFallbackUsed("openai", "builtin", "corr", "circuit_open"))
    bus.emit(AICircuitChanged("openai", "open", "closed", 5, 30.0))
    assert value(registry, "chat_ai_retries_total", provider="openai") == 1
    assert value(registry, "chat_ai_fallback_total", reason="circuit_open") == 1
    assert value(registry, "chat_ai_circuit_state", provider="openai") == 2
    bus.emit(AICircuitChanged("openai", "half_open", "open", 5, 0.0))
    assert value(registry, "chat_ai_circuit_state", provider="openai") == 1
    bus.emit(AICircuitChanged("openai", "closed", "half_open", 0, 0.0))
    assert value(registry, "chat_ai_circuit_state", provider="openai") == 0
    transitions = "chat_ai_circuit_transitions_total"
    for state in ("open", "half_open", "closed"):
        assert value(registry, transitions, provider="openai", state=state) == 1
    bus.emit(AIBudgetChanged("warning", 8.0, 10.0, "2027-01-15"))
    assert value(registry, "chat_ai_budget_used_ratio") == pytest.approx(0.8)
    reading = metrics.read()
    assert reading.circuit == {"openai": "closed"}
    assert reading.budget is not None and reading.budget.state == "warning"
    assert reading.totals.ai_retries == 1 and reading.totals.ai_fallbacks == 1


@pytest.mark.parametrize("outcome", [o for o in AIOutcome if o != AIOutcome.SUCCESS])
def test_every_ai_outcome_has_its_own_series(
    bus: EventBus, registry: CollectorRegistry, metrics: ChatMetrics, outcome: AIOutcome
):
    """``AIRequestFailed.outcome`` may be any AIOutcome: each is counted under its own label.

    Tried: invalid_reply, circuit_open, budget_exceeded and cancelled, which used to be
    counted as ``error``.
    """
    bus.emit(f.ai_failed(outcome))
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(registry, "chat_ai_requests_total", **labels, outcome=outcome) == 1
    others = [o for o in AIOutcome if o != outcome]
    assert all(value(registry, "chat_ai_requests_total", **labels, outcome=o) == 0 for o in others)
    totals = metrics.read().totals
    assert totals.ai_cancelled == (1 if outcome == AIOutcome.CANCELLED else 0)
    assert totals.ai_budget_refused == (1 if outcome == AIOutcome.BUDGET_EXCEEDED else 0)
    failure = outcome not in (AIOutcome.CANCELLED, AIOutcome.BUDGET_EXCEEDED)
    assert totals.ai_failed == (1 if failure else 0)


def test_counter_values_fall_back_to_collect_without_the_internal(
    bus: EventBus, metrics: ChatMetrics, monkeypatch: pytest.MonkeyPatch
):
    """When a counter child lacks the internal value attribute, totals read it via collect().

    Simulates a prometheus_client release that renamed ``_value``: the totals stay right.
    """
    from chatwatch.observe.metrics import labels

    bus.emit(f.received())
    bus.emit(f.ai_done(tokens=(5, 6), cost=0.25))
    expected = metrics.read().totals
    monkeypatch.setattr(labels, "_VALUE_ATTR", "_no_such_attribute")
    fallback = metrics.read().totals
    assert fallback == expected
    assert fallback.messages_received == 1 and fallback.ai_cost_usd == 0.25
