"""Chat metrics: the event listeners that move the Prometheus instruments and the JSON windows.

The chat side emits typed events once (``chatwatch.events``); ``ChatMetrics`` turns them into
Prometheus samples through children bound at set-up (or on first sight of a capped label
value), and feeds the sliding windows behind the JSON admin API. The windows cost the hot path
at most a list append: rates are differences of periodic ``Totals`` snapshots taken by
``tick()``, percentiles come from sketches folded on ``tick()`` too. ``RuntimeMonitor`` calls
``tick()`` twice a second; every read calls it first, so figures are always current.

Live state (open connections, sessions, users) is not kept here: the hub owns it
(``LiveCounts``), and the gauges are set from it when it changes and on every tick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from chatwatch.clock import Clock
from chatwatch.config import MetricsSettings
from chatwatch.events import (
    AIBudgetChanged,
    AICircuitChanged,
    AIFallbackUsed,
    AIRequestCompleted,
    AIRequestFailed,
    AIRequestRetried,
    AIUnpriced,
    BroadcastSent,
    CacheEvicted,
    CacheLookup,
    CacheStored,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    ErrorOccurred,
    FeatureUsed,
    FrameRejected,
    MessageProcessed,
    MessageReceived,
    MessageReplayed,
    MessageSent,
    QuickActionUsed,
    RejectionsSuppressed,
    ReplyCancelled,
    ResponseCompleted,
    SecurityEvent,
    SessionEnded,
    SessionStarted,
    handles,
)
from chatwatch.observe.live import LiveCounts
from chatwatch.observe.metrics.instruments import ALERT_SEVERITIES, ERROR_TYPES, ChatInstruments
from chatwatch.observe.metrics.labels import (
    AI_OUTCOMES,
    CIRCUIT_STATES,
    CLIENT_MISTAKES,
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
from chatwatch.observe.metrics.totals import ModelTotals, Totals
from chatwatch.observe.metrics.windows import LatencySummary, LatencyWindow, SnapshotRing
from chatwatch.vocabulary import AIOutcome, CloseReason, ErrorCode, ErrorType, SecurityEventType

__all__ = [
    "AI_FAILURE_OUTCOMES",
    "BudgetState",
    "ChatMetrics",
    "Latencies",
    "LatencyWindows",
    "Reading",
    "RuntimeReadings",
]

_COST_DAY = 86400.0
# Outcomes that are the provider failing. A cancelled call (the visitor left) and a call
# refused by the daily budget are no provider failures: they count apart.
AI_FAILURE_OUTCOMES = frozenset(
    {AIOutcome.ERROR, AIOutcome.TIMEOUT, AIOutcome.INVALID_REPLY, AIOutcome.CIRCUIT_OPEN}
)
_CIRCUIT_LEVEL = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@dataclass(slots=True)
class RuntimeReadings:
    """The latest process readings taken by the runtime monitor (None until sampled)."""

    rss_bytes: int | None = None
    cpu_percent: float | None = None
    loop_lag_seconds: float | None = None
    asyncio_tasks: int | None = None
    sampled_at: float | None = None


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The last ``AIBudgetChanged``: today's spend against ``ai.daily_budget_usd``."""

    state: str  # warning | exhausted | reset
    spent_usd: float
    budget_usd: float
    day: str

    @property
    def used_ratio(self) -> float:
        """Spend as a fraction of the budget (0 when no budget is set)."""
        return self.spent_usd / self.budget_usd if self.budget_usd > 0 else 0.0


@dataclass(slots=True)
class LatencyWindows:
    """The sliding latency windows, one per measured duration."""

    connection_duration: LatencyWindow
    processing: LatencyWindow
    ai_duration: LatencyWindow
    ai_ttft: LatencyWindow
    session_duration: LatencyWindow
    response: LatencyWindow

    def all(self) -> list[LatencyWindow]:
        """Every window."""
        return [getattr(self, f.name) for f in dataclasses.fields(self)]


@dataclass(frozen=True, slots=True)
class Latencies:
    """p50/p95/p99 of each window at one instant."""

    connection_duration: LatencySummary
    processing: LatencySummary
    ai_duration: LatencySummary
    ai_ttft: LatencySummary
    session_duration: LatencySummary
    response: LatencySummary


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything the JSON API and the signals show, read at one instant."""

    at: float
    window_seconds: float
    reset_at: float
    totals: Totals
    since_reset: Totals
    window: Totals  # growth over the window (or since start or reset, if younger)
    per_second: Totals
    latencies: Latencies
    active_connections: int
    active_users: int
    active_sessions: int
    cache_entries: int
    ai_cost_usd_24h: float
    runtime: RuntimeReadings
    circuit: Mapping[str, str]  # provider label -> closed | half_open | open
    budget: BudgetState | None
    model_labels: tuple[str, ...]

    @property
    def messages_per_session(self) -> float | None:
        """Mean messages of the sessions that ended since the reset (None before any)."""
        ended = self.since_reset.sessions_ended
        return self.since_reset.session_messages / ended if ended else None


@dataclass(slots=True)
class _Tally:
    """Counts with no Prometheus counter of their own."""

    frames_rejected: int = 0
    client_mistakes: int = 0
    sessions_ended: int = 0
    session_messages: int = 0


@dataclass(slots=True)
class _AIChildren:
    """The children of one (provider, model) label pair."""

    ok: Counter  # outcomes["success"], bound apart for the hot path
    outcomes: dict[str, Counter]
    duration: Histogram
    ttft: Histogram
    tokens_in: Counter
    tokens_out: Counter
    cost: Counter


class ChatMetrics:
    """Listens to chat events; owns the instruments, their children and the JSON windows."""

    def __init__(
        self,
        registry: CollectorRegistry,
        clock: Clock,
        settings: MetricsSettings,
        live: LiveCounts,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.settings = settings
        self.window = settings.window
        self.live = live
        self.i = i = ChatInstruments(registry)
        self.runtime = RuntimeReadings()
        self._tally = _Tally()
        self._closed = LabelledCounter(
            i.connections_closed, LabelCap(20, CLOSE_REASONS), CLOSE_REASONS
        )
        self._failed = LabelledCounter(
            i.connections_failed, LabelCap(20, FAIL_REASONS), FAIL_REASONS
        )
        self._received = LabelledCounter(
            i.messages_received, LabelCap(10, FRAME_TYPES_IN), FRAME_TYPES_IN
        )
        self._sent = LabelledCounter(
            i.messages_sent, LabelCap(10, FRAME_TYPES_OUT), FRAME_TYPES_OUT
        )
        self._msg_errors = LabelledCounter(i.message_errors, LabelCap(10, ERROR_CODES), ERROR_CODES)
        self._suppressed = LabelledCounter(i.rejections_suppressed, LabelCap(10, ERROR_CODES))
        self._cancelled = LabelledCounter(
            i.replies_cancelled, LabelCap(10, CloseReason), (CloseReason.CLIENT_CLOSED,)
        )
        self._errors = LabelledCounter(i.errors, LabelCap(20, ERROR_TYPES), ERROR_TYPES)
        self._security = LabelledCounter(
            i.security_events, LabelCap(30, SECURITY_TYPES), SECURITY_TYPES
        )
        self._quick = LabelledCounter(i.quick_actions, LabelCap(20, QUICK_ACTIONS), QUICK_ACTIONS)
        self._features = LabelledCounter(i.feature_usage, LabelCap(20, FEATURES), FEATURES)
        self._unpriced = LabelledCounter(i.ai_unpriced, LabelCap(10))
        self._retries = LabelledCounter(i.ai_retries, LabelCap(10))
        self._fallbacks = LabelledCounter(i.ai_fallback, LabelCap(10, AI_OUTCOMES))
        self._received_incs = self._received.incs
        self._sent_incs = self._sent.incs
        self._observe_processing = i.message_processing.observe
        self._observe_response = i.response.observe
        self._processed_ok = i.messages_processed.labels("ok")
        self._processed_failed = i.messages_processed.labels("failed")
        self._cache_hit = i.cache_requests.labels("hit")
        self._cache_miss = i.cache_requests.labels("miss")
        for severity in ALERT_SEVERITIES:
            i.alerts_active.labels(severity).set(0)
        self._providers = LabelCap(10)
        self._models = LabelCap(MODEL_LABEL_LIMIT)
        self._circuit_states = LabelCap(5, CIRCUIT_STATES)
        self._ai: dict[tuple[str, str], _AIChildren] = {}
        self._ai_by_label: dict[tuple[str, str], _AIChildren] = {}
        self.model_labels: list[str] = []
        self._cache_entries = 0
        # Where the chat's own components stand (they own the state; this is what they said).
        self.circuit: dict[str, str] = {}
        self.budget: BudgetState | None = None
        # Windows.
        w = self.window
        self.latency = LatencyWindows(*(LatencyWindow(clock, w) for _ in range(6)))
        self._add_conn_duration = self.latency.connection_duration.add
        self._add_processing = self.latency.processing.add
        self._add_ai_duration = self.latency.ai_duration.add
        self._add_ai_ttft = self.latency.ai_ttft.add
        self._add_session_duration = self.latency.session_duration.add
        self._add_response = self.latency.response.add
        self.started_at = clock.time()
        self.reset_at = self.started_at
        totals = self.totals()
        self._at_reset = totals
        self._ring: SnapshotRing[Totals] = SnapshotRing(clock, w)
        self._ring.restart(totals)
        self._cost_ring: SnapshotRing[float] = SnapshotRing(clock, _COST_DAY, step=60.0)
        self._cost_ring.restart(0.0)

    # --- live counts (owned by the hub) ---------------------------------------------------

    def _publish_connections(self) -> None:
        live = self.live
        self.i.connections_active.set(live.active_connections)
        self.i.active_users.set(live.active_users)

    def _publish_sessions(self) -> None:
        self.i.active_sessions.set(self.live.active_sessions)

    # --- connections --------------------------------------------------------------------

    @handles(ConnectionOpened)
    def on_connection_opened(self, e: ConnectionOpened) -> None:
        """Count the connection; publish the hub's live counts."""
        self.i.connections_opened.inc()
        if e.resumed:
            self.i.reconnections.inc()
        self._publish_connections()

    @handles(ConnectionClosed)
    def on_connection_closed(self, e: ConnectionClosed) -> None:
        """Count the close by reason and its duration; publish the hub's live counts."""
        child = self._closed.children.get(e.reason) or self._closed.child(e.reason)
        child.inc()
        self.i.connection_duration.observe(e.duration_s)
        self._add_conn_duration(e.duration_s)
        self._publish_connections()

    @handles(ConnectionFailed)
    def on_connection_failed(self, e: ConnectionFailed) -> None:
        """Count a refused or broken upgrade by reason."""
        self._failed.child(e.reason).inc()

    # --- messages -----------------------------------------------------------------------

    @handles(MessageReceived)
    def on_message_received(self, e: MessageReceived) -> None:
        """Count a valid client frame by type."""
        inc = self._received_incs.get(e.type)
        (inc or self._received.inc_of(e.type))()

    @handles(MessageSent)
    def on_message_sent(self, e: MessageSent) -> None:
        """Count a frame sent to a client by type."""
        inc = self._sent_incs.get(e.type)
        (inc or self._sent.inc_of(e.type))()

    @handles(FrameRejected)
    def on_frame_rejected(self, e: FrameRejected) -> None:
        """Count an error frame for a rejected client frame by code."""
        self._msg_errors.child(e.code).inc()
        tally = self._tally
        tally.frames_rejected += 1
        if e.code in CLIENT_MISTAKES:
            tally.client_mistakes += 1

    @handles(RejectionsSuppressed)
    def on_rejections_suppressed(self, e: RejectionsSuppressed) -> None:
        """Count the bad frames a connection summarised instead of announcing one by one
        (each was answered with an error frame, so they count by code there too)."""
        tally = self._tally
        for code, count in e.by_code:
            if count <= 0:
                continue
            self._suppressed.child(code).inc(count)
            self._msg_errors.child(code).inc(count)
            # Each would have been an ErrorOccurred (and, past a rate limit, a security
            # event) had it been reported one by one: the totals say the same either way.
            rate_limited = code == ErrorCode.RATE_LIMITED
            self._errors.child(ErrorType.RATE_LIMIT if rate_limited else ErrorType.VALIDATION).inc(
                count
            )
            if rate_limited:
                self._security.child(SecurityEventType.RATE_LIMITED).inc(count)
            tally.frames_rejected += count
            if code in CLIENT_MISTAKES:
                tally.client_mistakes += count

    @handles(MessageProcessed)
    def on_message_processed(self, e: MessageProcessed) -> None:
        """Count a handled frame by outcome and time it."""
        (self._processed_ok if e.ok else self._processed_failed).inc()
        self._observe_processing(e.duration_s)
        self._add_processing(e.duration_s)

    @handles(ResponseCompleted)
    def on_response_completed(self, e: ResponseCompleted) -> None:
        """Time user message → full reply."""
        self._observe_response(e.duration_s)
        self._add_response(e.duration_s)

    @handles(ReplyCancelled)
    def on_reply_cancelled(self, e: ReplyCancelled) -> None:
        """Count a reply the visitor walked away from (never an error)."""
        self._cancelled.child(e.reason).inc()

    @handles(MessageReplayed)
    def on_message_replayed(self, e: MessageReplayed) -> None:
        """Count an idempotent re-send."""
        self.i.message_replays.inc()

    @handles(BroadcastSent)
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
            outcomes = {o: i.ai_requests.labels(p, m, o) for o in AI_OUTCOMES}
            found = _AIChildren(
                ok=outcomes[AIOutcome.SUCCESS],
                outcomes=outcomes,
                duration=i.ai_duration.labels(p, m),
                ttft=i.ai_ttft.labels(p, m),
                tokens_in=i.ai_tokens.labels(p, m, "input"),
                tokens_out=i.ai_tokens.labels(p, m, "output"),
                cost=i.ai_cost.labels(p, m),
            )
            self._ai_by_label[labels] = found
            if m not in self.model_labels:
                self.model_labels.append(m)
        if len(self._ai) < 256:
            self._ai[key] = found
        return found

    @handles(AIRequestCompleted)
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

    @handles(AIRequestFailed)
    def on_ai_failed(self, e: AIRequestFailed) -> None:
        """Count a call that did not succeed by its outcome (an unknown one counts as error)."""
        c = self._ai_children(e.provider, e.model)
        (c.outcomes.get(e.outcome) or c.outcomes[AIOutcome.ERROR]).inc()

    @handles(AIUnpriced)
    def on_ai_unpriced(self, e: AIUnpriced) -> None:
        """Count a call whose model has no known price."""
        self._unpriced.child(e.provider).inc()

    @handles(AIRequestRetried)
    def on_ai_retried(self, e: AIRequestRetried) -> None:
        """Count a retry of a call that failed before its first byte."""
        self._retries.child(e.provider).inc()

    @handles(AICircuitChanged)
    def on_ai_circuit_changed(self, e: AICircuitChanged) -> None:
        """Follow the circuit breaker's state (gauge) and count its transitions."""
        provider = self._providers(e.provider)
        state = self._circuit_states(e.state)
        # A state this version does not know is taken as half open: not closed, not known down.
        self.i.ai_circuit_state.labels(provider).set(_CIRCUIT_LEVEL.get(state, 1.0))
        self.i.ai_circuit_transitions.labels(provider, state).inc()
        self.circuit[provider] = state

    @handles(AIFallbackUsed)
    def on_ai_fallback(self, e: AIFallbackUsed) -> None:
        """Count a reply the fallback gave, by why the provider was not used."""
        self._fallbacks.child(e.reason).inc()

    @handles(AIBudgetChanged)
    def on_ai_budget_changed(self, e: AIBudgetChanged) -> None:
        """Follow today's AI spend against the budget."""
        budget = BudgetState(e.state, e.spent_usd, e.budget_usd, e.day)
        self.budget = budget
        self.i.ai_budget_used.set(budget.used_ratio)

    # --- cache --------------------------------------------------------------------------

    @handles(CacheLookup)
    def on_cache_lookup(self, e: CacheLookup) -> None:
        """Count a hit or miss; follow the entry count."""
        (self._cache_hit if e.hit else self._cache_miss).inc()
        if e.entries != self._cache_entries:
            self._cache_entries = e.entries
            self.i.cache_entries.set(e.entries)

    @handles(CacheEvicted)
    def on_cache_evicted(self, e: CacheEvicted) -> None:
        """Count evictions; follow the entry count."""
        if e.count > 0:
            self.i.cache_evictions.inc(e.count)
        self._cache_entries = e.entries
        self.i.cache_entries.set(e.entries)

    @handles(CacheStored)
    def on_cache_stored(self, e: CacheStored) -> None:
        """Follow the entry count after a store."""
        self._cache_entries = e.entries
        self.i.cache_entries.set(e.entries)

    # --- users --------------------------------------------------------------------------

    @handles(SessionStarted)
    def on_session_started(self, e: SessionStarted) -> None:
        """Publish the hub's session count."""
        self._publish_sessions()

    @handles(SessionEnded)
    def on_session_ended(self, e: SessionEnded) -> None:
        """Record the session's length and message count; publish the hub's session count."""
        self._publish_sessions()
        self.i.session_duration.observe(e.duration_s)
        self._add_session_duration(e.duration_s)
        self.i.session_messages.observe(e.messages)
        self._tally.sessions_ended += 1
        self._tally.session_messages += e.messages

    @handles(QuickActionUsed)
    def on_quick_action(self, e: QuickActionUsed) -> None:
        """Count a quick action (action names are capped: the client sends them)."""
        self._quick.child(e.action).inc()

    @handles(FeatureUsed)
    def on_feature(self, e: FeatureUsed) -> None:
        """Count a feature use."""
        self._features.child(e.feature).inc()

    # --- errors and security ------------------------------------------------------------

    @handles(ErrorOccurred)
    def on_error(self, e: ErrorOccurred) -> None:
        """Count an error by type; a late error frame (AI, internal) also by code."""
        self._errors.child(e.type).inc()
        if e.code in LATE_ERROR_CODES:
            self._msg_errors.child(e.code).inc()

    @handles(SecurityEvent)
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

    def totals(self) -> Totals:
        """Every count since start, read from the counters."""
        v = counter_value
        i = self.i
        tally = self._tally
        by_outcome = dict.fromkeys(AI_OUTCOMES, 0.0)
        by_model: dict[str, ModelTotals] = {}
        for (_provider, model), c in self._ai_by_label.items():
            requests = 0.0
            for outcome, child in c.outcomes.items():
                n = v(child)
                by_outcome[outcome] += n
                requests += n
            usage = ModelTotals(requests, v(c.tokens_in), v(c.tokens_out), v(c.cost))
            earlier = by_model.get(model)  # one model label under several providers
            by_model[model] = usage if earlier is None else usage.plus(earlier)
        by_code = self._msg_errors.values()
        handled_ok = v(self._processed_ok)
        return Totals(
            connections_opened=v(i.connections_opened),
            connections_closed=self._closed.total(),
            connections_failed=self._failed.total(),
            reconnections=v(i.reconnections),
            messages_received=self._received.total(),
            messages_sent=self._sent.total(),
            message_errors=sum(by_code.values()),
            frames_rejected=tally.frames_rejected,
            client_mistakes=tally.client_mistakes,
            rejections_suppressed=self._suppressed.total(),
            messages_handled=handled_ok + v(self._processed_failed),
            messages_handled_ok=handled_ok,
            service_failures=sum(n for code, n in by_code.items() if code in LATE_ERROR_CODES),
            replies_cancelled=self._cancelled.total(),
            replays=v(i.message_replays),
            broadcasts=v(i.broadcasts),
            ai_requests=sum(by_outcome.values()),
            ai_failed=sum(by_outcome[o] for o in AI_FAILURE_OUTCOMES),
            ai_cancelled=by_outcome[AIOutcome.CANCELLED],
            ai_budget_refused=by_outcome[AIOutcome.BUDGET_EXCEEDED],
            ai_tokens_input=sum(m.tokens_input for m in by_model.values()),
            ai_tokens_output=sum(m.tokens_output for m in by_model.values()),
            ai_cost_usd=sum(m.cost_usd for m in by_model.values()),
            ai_unpriced=self._unpriced.total(),
            ai_retries=self._retries.total(),
            ai_fallbacks=self._fallbacks.total(),
            cache_hits=v(self._cache_hit),
            cache_misses=v(self._cache_miss),
            cache_evictions=v(i.cache_evictions),
            errors=self._errors.total(),
            security_events=self._security.total(),
            sessions_ended=tally.sessions_ended,
            session_messages=tally.session_messages,
            errors_by_type=self._errors.values(),
            message_errors_by_code=by_code,
            security_by_type=self._security.values(),
            quick_actions=self._quick.values(),
            features=self._features.values(),
            ai_by_outcome=by_outcome,
            ai_by_model=by_model,
        )

    def _tick(self) -> Totals:
        for w in self.latency.all():
            w.fold()
        totals = self.totals()
        self._ring.record(totals)
        self._cost_ring.record(totals.ai_cost_usd)
        self._publish_connections()
        self._publish_sessions()
        return totals

    def tick(self) -> None:
        """Fold buffered observations, snapshot the totals and republish the live gauges
        (call about once a second)."""
        self._tick()

    def reset(self) -> float:
        """Start a new JSON window and since-reset totals; Prometheus is untouched."""
        totals = self._tick()
        self._at_reset = totals
        self._ring.restart(totals)
        for w in self.latency.all():
            w.clear()
        self.reset_at = self.clock.time()
        return self.reset_at

    def read(self) -> Reading:
        """A consistent reading of every figure the JSON API shows."""
        totals = self._tick()
        base = self._ring.baseline()
        window, span = (totals.minus(base[0]), base[1]) if base else (totals.minus(totals), 0.0)
        cost_base = self._cost_ring.baseline()
        cost_24h = totals.ai_cost_usd - (cost_base[0] if cost_base else 0.0)
        lat = self.latency
        live = self.live
        return Reading(
            at=self.clock.time(),
            window_seconds=self.window,
            reset_at=self.reset_at,
            totals=totals,
            since_reset=totals.minus(self._at_reset),
            window=window,
            # A rate over less than a second is not a rate yet.
            per_second=window.scaled(1.0 / max(span, 1.0)),
            latencies=Latencies(
                connection_duration=lat.connection_duration.summary(),
                processing=lat.processing.summary(),
                ai_duration=lat.ai_duration.summary(),
                ai_ttft=lat.ai_ttft.summary(),
                session_duration=lat.session_duration.summary(),
                response=lat.response.summary(),
            ),
            active_connections=live.active_connections,
            active_users=live.active_users,
            active_sessions=live.active_sessions,
            cache_entries=self._cache_entries,
            ai_cost_usd_24h=max(0.0, cost_24h),
            runtime=dataclasses.replace(self.runtime),
            circuit=dict(self.circuit),
            budget=self.budget,
            model_labels=tuple(self.model_labels),
        )
