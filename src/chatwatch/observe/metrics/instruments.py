"""Every Prometheus instrument of SPEC §7, created once on a given registry.

Names and labels are the product contract. Gauges carry a ``multiprocess_mode`` so that, under
several workers, ``/metrics`` combines them sensibly: live sums for things each worker holds
(connections, sessions, tasks, cache entries), the live maximum for event-loop lag and for
alert state that every worker sees alike.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chatwatch.vocabulary import ErrorType

__all__ = [
    "AI_LATENCY_BUCKETS",
    "ALERT_SEVERITIES",
    "CACHE_RESULTS",
    "ERROR_TYPES",
    "ChatInstruments",
]

# OpenTelemetry GenAI semantic conventions: explicit bucket boundaries advised for
# gen_ai.client.operation.duration, so dashboards built for OTel line up with ours.
AI_LATENCY_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
_FAST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_LONG_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
)
_COUNT_BUCKETS = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0, 89.0, 144.0, 233.0)

ERROR_TYPES: tuple[str, ...] = tuple(ErrorType)
CACHE_RESULTS = ("hit", "miss")
ALERT_SEVERITIES = ("low", "medium", "high", "critical")


class ChatInstruments:
    """The metric families; children are bound by ``ChatMetrics``, not here."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        # connections
        self.connections_opened = Counter(
            "chat_connections_opened_total", "WebSocket connections accepted.", registry=r
        )
        self.connections_closed = Counter(
            "chat_connections_closed_total",
            "WebSocket connections closed.",
            ["reason"],
            registry=r,
        )
        self.connections_failed = Counter(
            "chat_connections_failed_total",
            "WebSocket upgrades refused or broken before the connected frame.",
            ["reason"],
            registry=r,
        )
        self.connections_active = Gauge(
            "chat_connections_active",
            "Open WebSocket connections.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.reconnections = Counter(
            "chat_reconnections_total", "Connections that resumed an earlier session.", registry=r
        )
        self.connection_duration = Histogram(
            "chat_connection_duration_seconds",
            "How long closed connections stayed open.",
            buckets=_LONG_BUCKETS,
            registry=r,
        )
        # messages
        self.messages_received = Counter(
            "chat_messages_received_total",
            "Valid client frames, by frame type.",
            ["type"],
            registry=r,
        )
        self.messages_sent = Counter(
            "chat_messages_sent_total",
            "Frames sent to clients, by frame type.",
            ["type"],
            registry=r,
        )
        self.message_errors = Counter(
            "chat_message_errors_total",
            "Error frames sent to clients, by error code.",
            ["code"],
            registry=r,
        )
        self.messages_processed = Counter(
            "chat_messages_processed_total",
            "Accepted client frames fully handled, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.message_processing = Histogram(
            "chat_message_processing_seconds",
            "Time to handle one accepted client frame.",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.replies_cancelled = Counter(
            "chat_replies_cancelled_total",
            "Replies stopped because the visitor left mid-reply (not errors), by reason.",
            ["reason"],
            registry=r,
        )
        self.message_replays = Counter(
            "chat_message_replays_total",
            "Messages re-sent with an id already stored: ack and reply replayed, no AI call.",
            registry=r,
        )
        self.rejections_suppressed = Counter(
            "chat_message_rejections_suppressed_total",
            "Bad frames past a connection's limit, counted in a summary rather than one by one.",
            ["code"],
            registry=r,
        )
        self.broadcasts = Counter("chat_broadcasts_total", "Broadcasts sent.", registry=r)
        self.broadcast_recipients = Counter(
            "chat_broadcast_recipients_total", "Frames delivered by broadcasts.", registry=r
        )
        # AI
        self.ai_requests = Counter(
            "chat_ai_requests_total",
            "Calls to the AI provider, by outcome.",
            ["provider", "model", "outcome"],
            registry=r,
        )
        self.ai_duration = Histogram(
            "chat_ai_request_duration_seconds",
            "Whole AI call, first byte sent to last received.",
            ["provider", "model"],
            buckets=AI_LATENCY_BUCKETS,
            registry=r,
        )
        self.ai_ttft = Histogram(
            "chat_ai_time_to_first_token_seconds",
            "AI call start to first streamed token.",
            ["provider", "model"],
            buckets=AI_LATENCY_BUCKETS,
            registry=r,
        )
        self.ai_tokens = Counter(
            "chat_ai_tokens_total",
            "Tokens used by AI calls, by type (input/output).",
            ["provider", "model", "type"],
            registry=r,
        )
        self.ai_cost = Counter(
            "chat_ai_cost_usd_total",
            "Cost of AI calls in US dollars.",
            ["provider", "model"],
            registry=r,
        )
        self.ai_unpriced = Counter(
            "chat_ai_unpriced_requests_total",
            "AI calls of a model with no known price.",
            ["provider"],
            registry=r,
        )
        self.ai_retries = Counter(
            "chat_ai_retries_total",
            "AI calls tried once more after failing before their first byte.",
            ["provider"],
            registry=r,
        )
        self.ai_circuit_state = Gauge(
            "chat_ai_circuit_state",
            "AI circuit breaker state: 0 closed, 1 half open, 2 open.",
            ["provider"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ai_circuit_transitions = Counter(
            "chat_ai_circuit_transitions_total",
            "AI circuit breaker state changes, by the state entered.",
            ["provider", "state"],
            registry=r,
        )
        self.ai_fallback = Counter(
            "chat_ai_fallback_total",
            "Replies given by the fallback instead of the AI provider, by reason.",
            ["reason"],
            registry=r,
        )
        self.ai_budget_used = Gauge(
            "chat_ai_budget_used_ratio",
            "Today's (UTC) AI spend as a fraction of ai.daily_budget_usd.",
            registry=r,
            multiprocess_mode="livemax",
        )
        # users
        self.active_users = Gauge(
            "chat_active_users",
            "Distinct users with at least one open connection.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.active_sessions = Gauge(
            "chat_active_sessions",
            "Sessions with at least one open connection.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.session_duration = Histogram(
            "chat_session_duration_seconds",
            "Length of ended sessions.",
            buckets=_LONG_BUCKETS,
            registry=r,
        )
        self.session_messages = Histogram(
            "chat_session_messages",
            "Messages exchanged in ended sessions.",
            buckets=_COUNT_BUCKETS,
            registry=r,
        )
        self.quick_actions = Counter(
            "chat_quick_actions_total", "Quick actions used, by action.", ["action"], registry=r
        )
        self.feature_usage = Counter(
            "chat_feature_usage_total", "Feature usage, by feature.", ["feature"], registry=r
        )
        # errors and security
        self.errors = Counter("chat_errors_total", "Errors, by type.", ["type"], registry=r)
        self.security_events = Counter(
            "chat_security_events_total", "Security events, by type.", ["type"], registry=r
        )
        # performance
        self.response = Histogram(
            "chat_response_seconds",
            "User message to full reply delivered.",
            buckets=AI_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_loop_lag = Gauge(
            "chat_event_loop_lag_seconds",
            "How late the event loop woke a sleeping task.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.asyncio_tasks = Gauge(
            "chat_asyncio_tasks", "asyncio tasks alive.", registry=r, multiprocess_mode="livesum"
        )
        # cache
        self.cache_requests = Counter(
            "chat_cache_requests_total",
            "AI response cache look-ups, by result.",
            ["result"],
            registry=r,
        )
        self.cache_entries = Gauge(
            "chat_cache_entries",
            "Entries in the AI response cache.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cache_evictions = Counter(
            "chat_cache_evictions_total", "Entries evicted from the AI response cache.", registry=r
        )
        # alerts (the alert engine sets these; present at 0 until then)
        self.alerts_active = Gauge(
            "chat_alerts_active",
            "Alerts pending or firing, by severity.",
            ["severity"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.alert_notifications = Counter(
            "chat_alert_notifications_total",
            "Alert notifications, by channel and outcome.",
            ["channel", "outcome"],
            registry=r,
        )
