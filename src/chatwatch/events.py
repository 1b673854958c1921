"""What happened in the chat service, said once, heard by metrics, logs and security.

The chat side builds one frozen event per fact and calls ``EventBus.emit``. Listeners
are plain synchronous callables run in the emitter's context (so correlation
contextvars are visible to them); a listener must be cheap and must not block: anything
slow (database writes, notifications) goes onto a queue of its own. A listener that
raises is reported to ``on_listener_error`` and never breaks the chat.

Every listener object registers the same way: its methods say which events they handle
with ``@handles(SomeEvent)``, and ``attach(bus, listener)`` subscribes each of them, so no
listener keeps a hand-written table of its own.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "AIBudgetChanged",
    "AICircuitChanged",
    "AIFallbackUsed",
    "AIRequestCompleted",
    "AIRequestFailed",
    "AIRequestRetried",
    "AIRequestStarted",
    "AIUnpriced",
    "BroadcastSent",
    "CacheEvicted",
    "CacheLookup",
    "CacheStored",
    "ConnectionClosed",
    "ConnectionFailed",
    "ConnectionOpened",
    "ErrorOccurred",
    "Event",
    "EventBus",
    "FeatureUsed",
    "FrameRejected",
    "LimitsStorageChanged",
    "MessageProcessed",
    "MessageReceived",
    "MessageReplayed",
    "MessageSent",
    "QuickActionUsed",
    "RejectionsSuppressed",
    "ReplyCancelled",
    "ResponseCompleted",
    "SecurityEvent",
    "SessionEnded",
    "SessionStarted",
    "attach",
    "handlers_of",
    "handles",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; ``name`` is the log event name (``connection.opened`` …)."""

    name = "event"


# --- connections ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionOpened(Event):
    connection_id: str
    user_id: str
    session_id: str
    client_ip: str
    user_agent: str
    resumed: bool
    name = "connection.opened"


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    connection_id: str
    user_id: str
    session_id: str
    reason: str  # client_closed | server_shutdown | error | protocol_error
    code: int
    duration_s: float
    messages: int
    name = "connection.closed"


@dataclass(frozen=True, slots=True)
class ConnectionFailed(Event):
    """A WebSocket upgrade that was refused or broke before ``connected`` was sent."""

    reason: str  # auth_missing | auth_invalid | auth_expired | forbidden_session |
    #             too_many_connections | shutting_down | internal
    client_ip: str
    user_agent: str
    status: int  # HTTP status or close code given to the client
    name = "connection.failed"


# --- messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A client frame that parsed and validated (``type`` is message/quick_action/ping)."""

    type: str
    connection_id: str
    session_id: str
    user_id: str
    correlation_id: str | None
    size_bytes: int
    content: str | None = None  # logged only when logging.log_content is on
    name = "message.received"


@dataclass(frozen=True, slots=True)
class MessageSent(Event):
    """A frame sent to a client (``type`` is the frame type).

    ``quiet`` frames (error frames answering a rejection that is only counted, see
    ``RejectionsSuppressed``) are counted in metrics but not logged one by one.
    """

    type: str
    connection_id: str
    correlation_id: str | None
    quiet: bool = False
    name = "message.sent"


@dataclass(frozen=True, slots=True)
class FrameRejected(Event):
    """A client frame answered with an ``error`` frame (code per SPEC §4)."""

    code: str  # invalid_json | invalid_frame | message_too_large | rate_limited
    connection_id: str
    user_id: str
    correlation_id: str | None
    detail: str
    size_bytes: int
    name = "message.rejected"


@dataclass(frozen=True, slots=True)
class MessageProcessed(Event):
    """One accepted client frame fully handled (stored, replied or failed)."""

    type: str
    correlation_id: str | None
    duration_s: float
    ok: bool
    name = "message.processed"


@dataclass(frozen=True, slots=True)
class ResponseCompleted(Event):
    """User message → full reply delivered (what the user waited)."""

    correlation_id: str
    session_id: str
    duration_s: float
    cached: bool
    name = "message.replied"


@dataclass(frozen=True, slots=True)
class BroadcastSent(Event):
    recipients: int
    name = "message.broadcast"


# --- AI ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AIRequestStarted(Event):
    provider: str
    model: str
    correlation_id: str
    context_messages: int
    name = "ai.request.started"


@dataclass(frozen=True, slots=True)
class AIRequestCompleted(Event):
    provider: str
    model: str  # as reported by the upstream (may be any string: cap before labelling)
    correlation_id: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    priced: bool
    duration_s: float
    time_to_first_token_s: float | None
    cached: bool
    estimated_usage: bool
    name = "ai.request.completed"


@dataclass(frozen=True, slots=True)
class AIRequestFailed(Event):
    provider: str
    model: str
    correlation_id: str
    outcome: str  # an AIOutcome other than success/cancelled
    error_type: str
    detail: str
    duration_s: float
    name = "ai.request.failed"


@dataclass(frozen=True, slots=True)
class AIUnpriced(Event):
    """An AI call whose model has no known price: its cost was counted as 0."""

    provider: str
    model: str
    first_time: bool  # first unpriced call for this model since start (log once)
    name = "ai.request.unpriced"


# --- cache ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheLookup(Event):
    hit: bool
    entries: int
    name = "cache.lookup"


@dataclass(frozen=True, slots=True)
class CacheEvicted(Event):
    count: int
    entries: int
    name = "cache.evicted"


# --- users and sessions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionStarted(Event):
    session_id: str
    user_id: str
    resumed: bool
    name = "session.started"


@dataclass(frozen=True, slots=True)
class SessionEnded(Event):
    """The last connection on a session closed."""

    session_id: str
    user_id: str
    duration_s: float
    messages: int
    name = "session.ended"


@dataclass(frozen=True, slots=True)
class QuickActionUsed(Event):
    action: str
    correlation_id: str
    name = "message.quick_action"


@dataclass(frozen=True, slots=True)
class FeatureUsed(Event):
    feature: str  # resume | quick_action | history | guest_login | ping | handoff
    name = "feature.used"


# --- errors and security -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorOccurred(Event):
    """An error by SPEC §7 type: authentication, authorization, validation, system,
    timeout, rate_limit, ai_provider."""

    type: str
    code: str
    detail: str
    correlation_id: str | None = None
    exception: BaseException | None = field(default=None, compare=False)
    name = "error.occurred"


@dataclass(frozen=True, slots=True)
class SecurityEvent(Event):
    """auth_failed | admin_denied | rate_limited | oversized_frame | malformed_frame |
    too_many_connections | forbidden_session."""

    type: str
    client_ip: str
    user_agent: str
    user_id: str | None
    detail: str
    name = "security.event"


E = TypeVar("E", bound=Event)
F = TypeVar("F", bound=Callable[..., None])
Listener = Callable[[Any], None]
_HANDLES = "__chatwatch_handles__"


class EventBus:
    """In-process fan-out of events to listeners, by exact event class."""

    def __init__(self, on_listener_error: Callable[[Event, BaseException], None] | None = None):
        self._listeners: dict[type[Event], list[Listener]] = defaultdict(list)
        self._all: list[Listener] = []
        self._on_error = on_listener_error

    def subscribe(self, event_type: type[E], listener: Callable[[E], None]) -> None:
        """Call ``listener`` for every emitted event of exactly ``event_type``."""
        self._listeners[event_type].append(listener)

    def subscribe_all(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` for every event."""
        self._all.append(listener)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to its listeners, in subscription order."""
        for listener in self._listeners.get(type(event), ()):
            try:
                listener(event)
            except Exception as exc:
                self._report(event, exc)
        for listener in self._all:
            try:
                listener(event)
            except Exception as exc:
                self._report(event, exc)

    def _report(self, event: Event, exc: BaseException) -> None:
        if self._on_error is not None:
            # An error reporter must never take the chat down.
            with contextlib.suppress(Exception):
                self._on_error(event, exc)


def handles(*event_types: type[Event]) -> Callable[[F], F]:
    """Mark a listener method as the handler of ``event_types`` (subscribed by ``attach``)."""
    if not event_types:
        raise TypeError("handles() needs at least one event class")
    for event_type in event_types:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise TypeError(f"handles() takes Event classes, not {event_type!r}")

    def mark(method: F) -> F:
        # An attribute on the function itself: no wrapper, so the hot path pays nothing.
        setattr(method, _HANDLES, (*getattr(method, _HANDLES, ()), *event_types))
        return method

    return mark


def handlers_of(listener: object) -> list[tuple[type[Event], Listener]]:
    """Every ``@handles`` method of ``listener``, bound, with its event class, in class order."""
    found: dict[str, tuple[type[Event], ...]] = {}
    # Base classes first, in definition order; a subclass's method of the same name replaces
    # its base's (as attribute lookup would).
    for cls in reversed(type(listener).__mro__):
        for name, attr in vars(cls).items():
            marked = getattr(attr, _HANDLES, None)
            if marked is not None:
                found[name] = marked
            elif name in found:
                del found[name]  # overridden without the decorator: no longer a handler
    return [
        (event_type, getattr(listener, name))
        for name, event_types in found.items()
        for event_type in event_types
    ]


def attach(bus: EventBus, listener: object) -> int:
    """Subscribe every ``@handles`` method of ``listener`` on ``bus``; returns how many."""
    pairs = handlers_of(listener)
    if not pairs:
        raise TypeError(f"{type(listener).__name__} has no @handles methods to attach")
    for event_type, handler in pairs:
        bus.subscribe(event_type, handler)
    return len(pairs)


# --- appended by the metrics work (issue 3) ------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheStored(Event):
    """A reply was stored in the AI response cache; ``entries`` is the count after it."""

    entries: int
    name = "cache.stored"


# --- added by the chat-path work (issue 7) -------------------------------------------
# Contract for the chat side (emitter) and metrics/logs/signals (listeners).


@dataclass(frozen=True, slots=True)
class ReplyCancelled(Event):
    """A reply stopped because the visitor left (closed the socket) mid-reply: no error.

    ``stored`` says whether the reply was still stored (the AI call had finished).
    Metrics: ``chat_replies_cancelled_total{reason}``; logged at info.
    """

    connection_id: str
    session_id: str
    correlation_id: str
    reason: str  # client_closed
    stored: bool
    name = "message.cancelled"


@dataclass(frozen=True, slots=True)
class MessageReplayed(Event):
    """A message id already stored in the session was sent again: its ack and reply (or
    error) were replayed and no AI call was made. Metrics: ``chat_message_replays_total``."""

    connection_id: str
    session_id: str
    correlation_id: str
    name = "message.replayed"


@dataclass(frozen=True, slots=True)
class RejectionsSuppressed(Event):
    """Bad frames past the connection's rate limit are counted, not logged one by one:
    one summary per connection per interval. ``by_code`` maps an error code to a count."""

    connection_id: str
    user_id: str
    client_ip: str
    count: int
    by_code: tuple[tuple[str, int], ...]
    interval_s: float
    name = "message.rejected.suppressed"


@dataclass(frozen=True, slots=True)
class AIRequestRetried(Event):
    """The AI call failed before its first byte (429/5xx/connect) and is tried once more.
    Metrics: ``chat_ai_retries_total{provider}``; logged at warning."""

    provider: str
    model: str
    correlation_id: str
    attempt: int  # the attempt about to start (2 for the first retry)
    reason: str
    delay_s: float
    name = "ai.request.retried"


@dataclass(frozen=True, slots=True)
class AICircuitChanged(Event):
    """The AI circuit breaker changed state: ``closed`` → ``open`` after repeated failures,
    ``open`` → ``half_open`` after the cool-off (one probe), then ``closed`` or ``open``.
    Metrics: gauge ``chat_ai_circuit_state{provider}`` (0 closed, 1 half_open, 2 open) and
    ``chat_ai_circuit_transitions_total{provider,state}``; logged (open at error, the rest
    at warning/info); health: ``ai_provider`` at least degraded while not closed."""

    provider: str
    state: str  # closed | open | half_open
    previous: str
    consecutive_failures: int
    open_for_s: float  # the cool-off when state == open, else 0
    name = "ai.circuit.changed"


@dataclass(frozen=True, slots=True)
class AIFallbackUsed(Event):
    """The configured fallback (``ai.fallback = "builtin"``) answered instead of the
    upstream. Metrics: ``chat_ai_fallback_total{reason}``; logged at warning."""

    provider: str  # the primary provider that was skipped or failed
    fallback_model: str
    correlation_id: str
    reason: str  # an AIOutcome: error | timeout | invalid_reply | circuit_open | budget_exceeded
    name = "ai.fallback.used"


@dataclass(frozen=True, slots=True)
class AIBudgetChanged(Event):
    """Today's (UTC) AI spend crossed a mark of ``ai.daily_budget_usd``: ``warning`` (80%),
    ``exhausted`` (100%, AI calls stop until the next UTC day) or ``reset`` (a new day).
    Metrics: gauge ``chat_ai_budget_used_ratio``; logged (warning / error / info)."""

    state: str  # warning | exhausted | reset
    spent_usd: float
    budget_usd: float
    day: str  # YYYY-MM-DD (UTC)
    name = "ai.budget.changed"


# --- added by the limits work (issue 8) ----------------------------------------------
# Emitted by chat.limits.ChatLimits; listeners are for the lead to wire.


@dataclass(frozen=True, slots=True)
class LimitsStorageChanged(Event):
    """The shared rate-limit store (Redis) became unreachable — ``degraded``: limits count
    in this process's memory until it answers again — or answered again (``recovered``).
    Once per outage each way. ``ChatLimits`` logs it itself (warning / info), so no log
    listener is needed. Metrics to wire: gauge ``chat_limits_storage_degraded`` (1 while
    degraded) and counter ``chat_limits_storage_fallbacks_total`` (``fallback_calls``)."""

    state: str  # degraded | recovered
    backend: str  # redis
    error: str  # what failed first ("" when recovered)
    fallback_calls: int  # limit checks counted in memory during this outage so far
    name = "limits.storage.changed"


# --- added by the alerts work (issue 9) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class HandoffRequested(Event):
    """The consultant offered a visitor a human hand-off (beside ``FeatureUsed("handoff")``,
    which carries no session). Listener: the alert engine's ``HandoffNotifier`` queues a
    ``handoff`` notification with the conversation link; no metric (``FeatureUsed`` counts
    it), no log listener (the notifier logs ``alert.handoff_queued`` at info)."""

    session_id: str
    user_id: str
    correlation_id: str
    name = "chat.handoff.requested"
