"""Chat metrics: the event listeners that move the Prometheus instruments and the JSON windows.

The chat side emits typed events once (``chatwatch.events``); ``ChatMetrics`` turns them into
Prometheus samples through children bound at set-up (or on first sight of a capped label
value), and feeds the sliding windows behind the JSON admin API. The windows cost the hot path
at most a list append: rates are differences of periodic counter snapshots taken by ``tick()``,
percentiles come from sketches folded on ``tick()`` too. ``RuntimeMonitor`` calls ``tick()``
every second; every read calls it first, so figures are always current.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from chatwatch.clock import Clock
from chatwatch.config import MetricsSettings
from chatwatch.events import (
    AIRequestCompleted,
    AIRequestFailed,
    AIUnpriced,
    BroadcastSent,
    CacheEvicted,
    CacheLookup,
    CacheStored,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    ErrorOccurred,
    EventBus,
    FeatureUsed,
    FrameRejected,
    MessageProcessed,
    MessageReceived,
    MessageSent,
    QuickActionUsed,
    ResponseCompleted,
    SecurityEvent,
    SessionEnded,
    SessionStarted,
)
from chatwatch.observe.metrics.instruments import ALERT_SEVERITIES, ERROR_TYPES, ChatInstruments
from chatwatch.observe.metrics.labels import (
    CLOSE_REASONS,
    ERROR_CODES,
    FAIL_REASONS,
    FEATURES,
    FRAME_TYPES_IN,
    FRAME_TYPES_OUT,
    LATE_ERROR_CODES,
    MODEL_LABEL_LIMIT,
    QUICK_ACTIONS,
    SECURITY_TYPES,
    LabelCap,
    LabelledCounter,
    counter_value,
)
from chatwatch.observe.metrics.windows import LatencySummary, LatencyWindow, SnapshotRing

__all__ = ["LATENCIES", "ChatMetrics", "Reading", "RuntimeReadings"]

LATENCIES = (
    "connection_duration",
    "processing",
    "ai_duration",
    "ai_ttft",
    "session_duration",
    "response",
)
_COST_DAY = 86400.0


@dataclass(slots=True)
class RuntimeReadings:
    """The latest process readings taken by the runtime monitor (None until sampled)."""

    rss_bytes: int | None = None
    cpu_percent: float | None = None
    loop_lag_seconds: float | None = None
    asyncio_tasks: int | None = None
    sampled_at: float | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything the JSON API shows, read at one instant."""

    window_seconds: float
    reset_at: float
    totals: dict[str, float]
    since_reset: dict[str, float]
    per_second: dict[str, float]
    window_growth: dict[str, float]
    latencies: dict[str, LatencySummary]
    active_connections: int
    active_users: int
    active_sessions: int
    cache_entries: int
    messages_per_session: float | None
    ai_cost_usd_24h: float
    runtime: RuntimeReadings


@dataclass(slots=True)
class _AIChildren:
    """The children of one (provider, model) label pair."""

    ok: Counter
    error: Counter
    timeout: Counter
    duration: Histogram
    ttft: Histogram
    tokens_in: Counter
    tokens_out: Counter
    cost: Counter


class ChatMetrics:
    """Listens to chat events; owns the instruments, their children and the JSON windows."""

    def __init__(self, registry: CollectorRegistry, clock: Clock, settings: MetricsSettings):
        self.registry = registry
        self.clock = clock
        self.settings = settings
        self.window = settings.window
        self.i = i = ChatInstruments(registry)
        self.runtime = RuntimeReadings()
        self._tracked: list[tuple[tuple[str, ...], Counter]] = []
        self._extra: dict[str, float] = {"messages.rejected": 0.0}
        # Plain counters first, so every total exists from the start.
        for keys, child in (
            (("connections.opened",), i.connections_opened),
            (("connections.reconnections",), i.reconnections),
            (("messages.broadcasts",), i.broadcasts),
            (("cache.evictions",), i.cache_evictions),
        ):
            self._track(keys, child)
        self._closed = LabelledCounter(
            self._track,
            i.connections_closed,
            LabelCap(20, CLOSE_REASONS),
            ("connections.closed",),
            None,
            CLOSE_REASONS,
        )
        self._failed = LabelledCounter(
            self._track,
            i.connections_failed,
            LabelCap(20, FAIL_REASONS),
            ("connections.failed",),
            None,
            FAIL_REASONS,
        )
        self._received = LabelledCounter(
            self._track,
            i.messages_received,
            LabelCap(10, FRAME_TYPES_IN),
            ("messages.received",),
            None,
            FRAME_TYPES_IN,
        )
        self._sent = LabelledCounter(
            self._track,
            i.messages_sent,
            LabelCap(10, FRAME_TYPES_OUT),
            ("messages.sent",),
            None,
            FRAME_TYPES_OUT,
        )
        self._msg_errors = LabelledCounter(
            self._track,
            i.message_errors,
            LabelCap(10, ERROR_CODES),
            ("messages.errors",),
            None,
            ERROR_CODES,
        )
        self._errors = LabelledCounter(
            self._track,
            i.errors,
            LabelCap(20, ERROR_TYPES),
            ("errors.total",),
            "errors.type",
            ERROR_TYPES,
        )
        self._security = LabelledCounter(
            self._track,
            i.security_events,
            LabelCap(30, SECURITY_TYPES),
            ("security.total",),
            "security.type",
            SECURITY_TYPES,
        )
        self._quick = LabelledCounter(
            self._track,
            i.quick_actions,
            LabelCap(20, QUICK_ACTIONS),
            (),
            "users.quick_action",
            QUICK_ACTIONS,
        )
        self._features = LabelledCounter(
            self._track, i.feature_usage, LabelCap(20, FEATURES), (), "users.feature", FEATURES
        )
        self._unpriced = LabelledCounter(self._track, i.ai_unpriced, LabelCap(10), ("ai.unpriced",))
        self._received_incs = self._received.incs
        self._sent_incs = self._sent.incs
        self._observe_processing = i.message_processing.observe
        self._observe_response = i.response.observe
        self._processed_ok = i.messages_processed.labels("ok")
        self._processed_failed = i.messages_processed.labels("failed")
        self._track(("messages.processed", "messages.processed_ok"), self._processed_ok)
        self._track(("messages.processed",), self._processed_failed)
        self._cache_hit = i.cache_requests.labels("hit")
        self._cache_miss = i.cache_requests.labels("miss")
        self._track(("cache.hits",), self._cache_hit)
        self._track(("cache.misses",), self._cache_miss)
        for severity in ALERT_SEVERITIES:
            i.alerts_active.labels(severity).set(0)
        self._providers = LabelCap(10)
        self._models = LabelCap(MODEL_LABEL_LIMIT)
        self._ai: dict[tuple[str, str], _AIChildren] = {}
        self._ai_by_label: dict[tuple[str, str], _AIChildren] = {}
        self.model_labels: list[str] = []
        # State behind the gauges.
        self._connections: dict[str, str] = {}  # connection id -> user id
        self._user_connections: dict[str, int] = {}
        self._sessions: set[str] = set()
        self._cache_entries = 0
        self._sessions_ended = 0
        self._session_messages = 0
        # Windows.
        self.latency = {name: LatencyWindow(clock, self.window) for name in LATENCIES}
        self._add_conn_duration = self.latency["connection_duration"].add
        self._add_processing = self.latency["processing"].add
        self._add_ai_duration = self.latency["ai_duration"].add
        self._add_ai_ttft = self.latency["ai_ttft"].add
        self._add_session_duration = self.latency["session_duration"].add
        self._add_response = self.latency["response"].add
        self._ring = SnapshotRing(clock, self.window)
        self._cost_ring = SnapshotRing(clock, _COST_DAY, step=60.0)
        self.started_at = clock.time()
        self.reset_at = self.started_at
        totals = self.totals()
        self._at_reset = dict(totals)
        self._ring.restart(totals)
        self._cost_ring.restart({"ai.cost_usd": 0.0})
        self._ended_at_reset = (0, 0)

    # --- wiring -------------------------------------------------------------------------

    def attach(self, bus: EventBus) -> None:
        """Subscribe every handler to its event class on ``bus``."""
        handlers: Mapping[type[Any], Callable[[Any], None]] = {
            ConnectionOpened: self.on_connection_opened,
            ConnectionClosed: self.on_connection_closed,
            ConnectionFailed: self.on_connection_failed,
            MessageReceived: self.on_message_received,
            MessageSent: self.on_message_sent,
            FrameRejected: self.on_frame_rejected,
            MessageProcessed: self.on_message_processed,
            ResponseCompleted: self.on_response_completed,
            BroadcastSent: self.on_broadcast,
            AIRequestCompleted: self.on_ai_completed,
            AIRequestFailed: self.on_ai_failed,
            AIUnpriced: self.on_ai_unpriced,
            CacheLookup: self.on_cache_lookup,
            CacheEvicted: self.on_cache_evicted,
            CacheStored: self.on_cache_stored,
            SessionStarted: self.on_session_started,
            SessionEnded: self.on_session_ended,
            QuickActionUsed: self.on_quick_action,
            FeatureUsed: self.on_feature,
            ErrorOccurred: self.on_error,
            SecurityEvent: self.on_security_event,
        }
        for event_type, handler in handlers.items():
            bus.subscribe(event_type, handler)

    def _track(self, keys: tuple[str, ...], child: Counter) -> None:
        self._tracked.append((keys, child))

    # --- connections --------------------------------------------------------------------

    def on_connection_opened(self, e: ConnectionOpened) -> None:
        """Count the connection; track it for the active connection and user gauges."""
        self.i.connections_opened.inc()
        if e.resumed:
            self.i.reconnections.inc()
        if e.connection_id not in self._connections:
            self._connections[e.connection_id] = e.user_id
            users = self._user_connections
            users[e.user_id] = users.get(e.user_id, 0) + 1
            self.i.connections_active.set(len(self._connections))
            self.i.active_users.set(len(users))

    def on_connection_closed(self, e: ConnectionClosed) -> None:
        """Count the close by reason and its duration; update the active gauges."""
        child = self._closed.children.get(e.reason) or self._closed.child(e.reason)
        child.inc()
        self.i.connection_duration.observe(e.duration_s)
        self._add_conn_duration(e.duration_s)
        user = self._connections.pop(e.connection_id, None)
        if user is not None:
            users = self._user_connections
            left = users.get(user, 1) - 1
            if left > 0:
                users[user] = left
            else:
                users.pop(user, None)
            self.i.connections_active.set(len(self._connections))
            self.i.active_users.set(len(users))

    def on_connection_failed(self, e: ConnectionFailed) -> None:
        """Count a refused or broken upgrade by reason."""
        self._failed.child(e.reason).inc()

    # --- messages -----------------------------------------------------------------------

    def on_message_received(self, e: MessageReceived) -> None:
        """Count a valid client frame by type."""
        inc = self._received_incs.get(e.type)
        (inc or self._received.inc_of(e.type))()

    def on_message_sent(self, e: MessageSent) -> None:
        """Count a frame sent to a client by type."""
        inc = self._sent_incs.get(e.type)
        (inc or self._sent.inc_of(e.type))()

    def on_frame_rejected(self, e: FrameRejected) -> None:
        """Count an error frame for a rejected client frame by code."""
        self._msg_errors.child(e.code).inc()
        self._extra["messages.rejected"] += 1.0

    def on_message_processed(self, e: MessageProcessed) -> None:
        """Count a handled frame by outcome and time it."""
        (self._processed_ok if e.ok else self._processed_failed).inc()
        self._observe_processing(e.duration_s)
        self._add_processing(e.duration_s)

    def on_response_completed(self, e: ResponseCompleted) -> None:
        """Time user message → full reply."""
        self._observe_response(e.duration_s)
        self._add_response(e.duration_s)

    def on_broadcast(self, e: BroadcastSent) -> None:
        """Count a broadcast and its recipients."""
        self.i.broadcasts.inc()
        if e.recipients > 0:
            self.i.broadcast_recipients.inc(e.recipients)

    # --- AI -----------------------------------------------------------------------------

    def _ai_children(self, provider: str, model: str) -> _AIChildren:
        key = (provider, model)
        found = self._ai.get(key)
        if found is not None:
            return found
        labels = (self._providers(provider), self._models(model))
        found = self._ai_by_label.get(labels)
        if found is None:
            p, m = labels
            i = self.i
            found = _AIChildren(
                ok=i.ai_requests.labels(p, m, "success"),
                error=i.ai_requests.labels(p, m, "error"),
                timeout=i.ai_requests.labels(p, m, "timeout"),
                duration=i.ai_duration.labels(p, m),
                ttft=i.ai_ttft.labels(p, m),
                tokens_in=i.ai_tokens.labels(p, m, "input"),
                tokens_out=i.ai_tokens.labels(p, m, "output"),
                cost=i.ai_cost.labels(p, m),
            )
            self._ai_by_label[labels] = found
            if m not in self.model_labels:
                self.model_labels.append(m)
            mk = f"ai.model.{m}"
            self._track(("ai.requests", f"{mk}.requests"), found.ok)
            self._track(("ai.requests", "ai.failed", f"{mk}.requests"), found.error)
            self._track(("ai.requests", "ai.failed", f"{mk}.requests"), found.timeout)
            self._track(("ai.tokens_input", f"{mk}.tokens_input"), found.tokens_in)
            self._track(("ai.tokens_output", f"{mk}.tokens_output"), found.tokens_out)
            self._track(("ai.cost_usd", f"{mk}.cost_usd"), found.cost)
        if len(self._ai) < 256:
            self._ai[key] = found
        return found

    def on_ai_completed(self, e: AIRequestCompleted) -> None:
        """Count a provider call, its latency, tokens and cost (cache hits are not calls)."""
        if e.cached:
            return
        c = self._ai.get((e.provider, e.model)) or self._ai_children(e.provider, e.model)
        c.ok.inc()
        c.duration.observe(e.duration_s)
        self._add_ai_duration(e.duration_s)
        ttft = e.time_to_first_token_s
        if ttft is not None:
            c.ttft.observe(ttft)
            self._add_ai_ttft(ttft)
        if e.input_tokens:
            c.tokens_in.inc(e.input_tokens)
        if e.output_tokens:
            c.tokens_out.inc(e.output_tokens)
        if e.cost_usd:
            c.cost.inc(e.cost_usd)

    def on_ai_failed(self, e: AIRequestFailed) -> None:
        """Count a failed provider call as ``timeout`` or ``error``."""
        c = self._ai_children(e.provider, e.model)
        (c.timeout if e.outcome == "timeout" else c.error).inc()

    def on_ai_unpriced(self, e: AIUnpriced) -> None:
        """Count a call whose model has no known price."""
        self._unpriced.child(e.provider).inc()

    # --- cache --------------------------------------------------------------------------

    def on_cache_lookup(self, e: CacheLookup) -> None:
        """Count a hit or miss; follow the entry count."""
        (self._cache_hit if e.hit else self._cache_miss).inc()
        if e.entries != self._cache_entries:
            self._cache_entries = e.entries
            self.i.cache_entries.set(e.entries)

    def on_cache_evicted(self, e: CacheEvicted) -> None:
        """Count evictions; follow the entry count."""
        if e.count > 0:
            self.i.cache_evictions.inc(e.count)
        self._cache_entries = e.entries
        self.i.cache_entries.set(e.entries)

    def on_cache_stored(self, e: CacheStored) -> None:
        """Follow the entry count after a store."""
        self._cache_entries = e.entries
        self.i.cache_entries.set(e.entries)

    # --- users --------------------------------------------------------------------------

    def on_session_started(self, e: SessionStarted) -> None:
        """Track an active session."""
        self._sessions.add(e.session_id)
        self.i.active_sessions.set(len(self._sessions))

    def on_session_ended(self, e: SessionEnded) -> None:
        """Untrack the session; record its length and message count."""
        self._sessions.discard(e.session_id)
        self.i.active_sessions.set(len(self._sessions))
        self.i.session_duration.observe(e.duration_s)
        self._add_session_duration(e.duration_s)
        self.i.session_messages.observe(e.messages)
        self._sessions_ended += 1
        self._session_messages += e.messages

    def on_quick_action(self, e: QuickActionUsed) -> None:
        """Count a quick action (action names are capped: the client sends them)."""
        self._quick.child(e.action).inc()

    def on_feature(self, e: FeatureUsed) -> None:
        """Count a feature use."""
        self._features.child(e.feature).inc()

    # --- errors and security ------------------------------------------------------------

    def on_error(self, e: ErrorOccurred) -> None:
        """Count an error by type; a late error frame (AI, internal) also by code."""
        self._errors.child(e.type).inc()
        if e.code in LATE_ERROR_CODES:
            self._msg_errors.child(e.code).inc()

    def on_security_event(self, e: SecurityEvent) -> None:
        """Count a security event by type."""
        self._security.child(e.type).inc()

    # --- alerts (for the alert engine) ----------------------------------------------------

    def set_alerts_active(self, counts: Mapping[str, int]) -> None:
        """Publish how many alerts are pending or firing per severity."""
        for severity in ALERT_SEVERITIES:
            self.i.alerts_active.labels(severity).set(counts.get(severity, 0))

    def count_notification(self, channel: str, outcome: str) -> None:
        """Count one alert notification attempt (channel names come from config: bounded)."""
        self.i.alert_notifications.labels(channel, outcome).inc()

    # --- reading ------------------------------------------------------------------------

    def totals(self) -> dict[str, float]:
        """Every tracked total since start, by key."""
        out = dict(self._extra)
        for keys, child in self._tracked:
            v = counter_value(child)
            for k in keys:
                out[k] = out.get(k, 0.0) + v
        return out

    def tick(self) -> None:
        """Fold buffered observations and snapshot the totals (call about once a second)."""
        for w in self.latency.values():
            w.fold()
        totals = self.totals()
        self._ring.record(totals)
        self._cost_ring.record({"ai.cost_usd": totals.get("ai.cost_usd", 0.0)})

    def reset(self) -> float:
        """Start a new JSON window and since-reset totals; Prometheus is untouched."""
        self.tick()
        totals = self.totals()
        self._at_reset = totals
        self._ring.restart(totals)
        for w in self.latency.values():
            w.clear()
        self._ended_at_reset = (self._sessions_ended, self._session_messages)
        self.reset_at = self.clock.time()
        return self.reset_at

    def read(self) -> Reading:
        """A consistent reading of every figure the JSON API shows."""
        self.tick()
        totals = self.totals()
        growth, span = self._ring.deltas(totals)
        rate_span = max(span, 1.0)
        ended = self._sessions_ended - self._ended_at_reset[0]
        messages = self._session_messages - self._ended_at_reset[1]
        cost_growth, _ = self._cost_ring.deltas({"ai.cost_usd": totals.get("ai.cost_usd", 0.0)})
        return Reading(
            window_seconds=self.window,
            reset_at=self.reset_at,
            totals=totals,
            since_reset={k: v - self._at_reset.get(k, 0.0) for k, v in totals.items()},
            per_second={k: v / rate_span for k, v in growth.items()},
            window_growth=growth,
            latencies={name: w.summary() for name, w in self.latency.items()},
            active_connections=len(self._connections),
            active_users=len(self._user_connections),
            active_sessions=len(self._sessions),
            cache_entries=self._cache_entries,
            messages_per_session=(messages / ended) if ended else None,
            ai_cost_usd_24h=max(0.0, cost_growth["ai.cost_usd"]),
            runtime=self.runtime,
        )

    def labels_of(self, family: str) -> list[str]:
        """Label values bound so far for ``quick_action``, ``feature`` or ``error`` families."""
        fam = {"quick_action": self._quick, "feature": self._features, "error": self._errors}
        return fam[family].labels()
