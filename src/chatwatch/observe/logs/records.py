"""The chat's events as log records: one handler per event type, SPEC §5 families.

Levels: what an operator should look at is a warning or worse (refused connections,
rejected frames, security events, slow replies, AI failures, retries, fallbacks, the
circuit breaker opening, the AI budget running out, server errors); the normal trail of a
message is info — and so is a visitor leaving mid-reply, which is no error; chatty
per-frame records (streamed deltas, pongs, cache look-ups) are debug. Components name the
subsystem: ``chat``, ``ai``, ``security``, ``cache``. Durations are ``duration_ms``. Message
contents are never logged unless ``logging.log_content`` is on; their length always is.
"""

from __future__ import annotations

import re
from typing import Any

from chatwatch.config import LoggingSettings
from chatwatch.events import (
    AIBudgetChanged,
    AICircuitChanged,
    AIFallbackUsed,
    AIRequestCompleted,
    AIRequestFailed,
    AIRequestRetried,
    AIRequestStarted,
    AIUnpriced,
    BroadcastSent,
    CacheEvicted,
    CacheLookup,
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
from chatwatch.observe.logs.pipeline import get_logger
from chatwatch.vocabulary import AIOutcome, CloseReason, ErrorType

__all__ = ["EventLogger"]

# Client-caused error types: already logged as message.rejected or security.* warnings.
_CLIENT_ERRORS = frozenset(
    {ErrorType.AUTHENTICATION, ErrorType.AUTHORIZATION, ErrorType.VALIDATION, ErrorType.RATE_LIMIT}
)
# A connection that ended by an error of ours or of the client's protocol is worth a look.
_BAD_CLOSES = frozenset({CloseReason.ERROR, CloseReason.PROTOCOL_ERROR})
# AI outcomes that are no provider failure: the visitor left (info), or the call was refused
# at once by a state already logged when it began (circuit open, budget spent: warning).
_AI_REFUSALS = frozenset({AIOutcome.CIRCUIT_OPEN, AIOutcome.BUDGET_EXCEEDED})
_QUIET_FRAMES = frozenset({"ai_delta", "pong"})
_NAME_PART = re.compile(r"[^a-z0-9_]+")
_MAX_UNPRICED_MODELS = 1000


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _name(text: str) -> str:
    """An event-name segment from free text: lower case, ``[a-z0-9_]``, at most 40 chars."""
    return _NAME_PART.sub("_", text.lower())[:40].strip("_") or "unknown"


class EventLogger:
    """Writes a log record for each chat event."""

    def __init__(self, settings: LoggingSettings) -> None:
        self.settings = settings
        self._log = get_logger()
        self._unpriced: set[tuple[str, str]] = set()

    @staticmethod
    def _cid(correlation_id: str | None) -> dict[str, str]:
        # The event's own id wins over the one bound in context (they differ only when an
        # event is emitted outside the message's task).
        return {"correlation_id": correlation_id} if correlation_id else {}

    # --- connections ---------------------------------------------------------------------

    @handles(ConnectionOpened)
    def on_connection_opened(self, e: ConnectionOpened) -> None:
        """connection.opened (info)."""
        self._log.info(
            e.name,
            component="chat",
            connection_id=e.connection_id,
            user_id=e.user_id,
            session_id=e.session_id,
            client_ip=e.client_ip,
            user_agent=e.user_agent,
            resumed=e.resumed,
        )

    @handles(ConnectionClosed)
    def on_connection_closed(self, e: ConnectionClosed) -> None:
        """connection.closed (info; warning when closed by an error)."""
        method = self._log.warning if e.reason in _BAD_CLOSES else self._log.info
        method(
            e.name,
            component="chat",
            connection_id=e.connection_id,
            user_id=e.user_id,
            session_id=e.session_id,
            reason=e.reason,
            close_code=e.code,
            duration_ms=_ms(e.duration_s),
            messages=e.messages,
        )

    @handles(ConnectionFailed)
    def on_connection_failed(self, e: ConnectionFailed) -> None:
        """connection.failed (warning)."""
        self._log.warning(
            e.name,
            component="chat",
            reason=e.reason,
            status=e.status,
            client_ip=e.client_ip,
            user_agent=e.user_agent,
        )

    # --- messages ------------------------------------------------------------------------

    @handles(MessageReceived)
    def on_message_received(self, e: MessageReceived) -> None:
        """message.received (info; debug for pings); contents only with log_content."""
        fields: dict[str, Any] = {
            "component": "chat",
            "type": e.type,
            "connection_id": e.connection_id,
            "session_id": e.session_id,
            "user_id": e.user_id,
            "content_length": e.size_bytes,
            **self._cid(e.correlation_id),
        }
        content = getattr(e, "content", None)
        if self.settings.log_content and isinstance(content, str):
            fields["content"] = content
        (self._log.debug if e.type == "ping" else self._log.info)(e.name, **fields)

    @handles(MessageSent)
    def on_message_sent(self, e: MessageSent) -> None:
        """message.sent (info; debug for streamed deltas and pongs); quiet frames (answers to
        rejections counted in a summary) are not logged one by one."""
        if e.quiet:
            return
        method = self._log.debug if e.type in _QUIET_FRAMES else self._log.info
        method(
            e.name,
            component="chat",
            type=e.type,
            connection_id=e.connection_id,
            **self._cid(e.correlation_id),
        )

    @handles(FrameRejected)
    def on_frame_rejected(self, e: FrameRejected) -> None:
        """message.rejected (warning) with the error code SPEC §4 gives the client."""
        self._log.warning(
            e.name,
            component="chat",
            code=e.code,
            detail=e.detail,
            size_bytes=e.size_bytes,
            connection_id=e.connection_id,
            user_id=e.user_id,
            **self._cid(e.correlation_id),
        )

    @handles(MessageProcessed)
    def on_message_processed(self, e: MessageProcessed) -> None:
        """message.processed (info; warning when it failed)."""
        (self._log.info if e.ok else self._log.warning)(
            e.name,
            component="chat",
            type=e.type,
            ok=e.ok,
            duration_ms=_ms(e.duration_s),
            **self._cid(e.correlation_id),
        )

    @handles(ResponseCompleted)
    def on_response_completed(self, e: ResponseCompleted) -> None:
        """message.replied (debug), and performance.slow_response (warning) when slow."""
        fields = {
            "component": "chat",
            "session_id": e.session_id,
            "duration_ms": _ms(e.duration_s),
            "cached": e.cached,
            **self._cid(e.correlation_id),
        }
        self._log.debug(e.name, **fields)
        threshold = self.settings.slow_response_seconds
        if e.duration_s > threshold:
            self._log.warning("performance.slow_response", threshold_ms=_ms(threshold), **fields)

    @handles(BroadcastSent)
    def on_broadcast(self, e: BroadcastSent) -> None:
        """message.broadcast (info)."""
        self._log.info(e.name, component="chat", recipients=e.recipients)

    @handles(QuickActionUsed)
    def on_quick_action(self, e: QuickActionUsed) -> None:
        """message.quick_action (info)."""
        self._log.info(e.name, component="chat", action=e.action, **self._cid(e.correlation_id))

    @handles(ReplyCancelled)
    def on_reply_cancelled(self, e: ReplyCancelled) -> None:
        """message.cancelled (info): the visitor left mid-reply, which is no error."""
        self._log.info(
            e.name,
            component="chat",
            reason=e.reason,
            stored=e.stored,
            connection_id=e.connection_id,
            session_id=e.session_id,
            **self._cid(e.correlation_id),
        )

    @handles(MessageReplayed)
    def on_message_replayed(self, e: MessageReplayed) -> None:
        """message.replayed (info): an idempotent re-send answered from the store."""
        self._log.info(
            e.name,
            component="chat",
            connection_id=e.connection_id,
            session_id=e.session_id,
            **self._cid(e.correlation_id),
        )

    @handles(RejectionsSuppressed)
    def on_rejections_suppressed(self, e: RejectionsSuppressed) -> None:
        """message.rejected.suppressed (warning), once per summary, with the counts by code."""
        self._log.warning(
            e.name,
            component="chat",
            connection_id=e.connection_id,
            user_id=e.user_id,
            client_ip=e.client_ip,
            count=e.count,
            by_code=dict(e.by_code),
            interval_ms=_ms(e.interval_s),
        )

    # --- AI ------------------------------------------------------------------------------

    @handles(AIRequestStarted)
    def on_ai_started(self, e: AIRequestStarted) -> None:
        """ai.request.started (info)."""
        self._log.info(
            e.name,
            component="ai",
            provider=e.provider,
            model=e.model,
            context_messages=e.context_messages,
            **self._cid(e.correlation_id),
        )

    @handles(AIRequestCompleted)
    def on_ai_completed(self, e: AIRequestCompleted) -> None:
        """ai.request.completed (info) with tokens, cost and timings."""
        self._log.info(
            e.name,
            component="ai",
            provider=e.provider,
            model=e.model,
            input_tokens=e.input_tokens,
            output_tokens=e.output_tokens,
            estimated_usage=e.estimated_usage,
            cost_usd=e.cost_usd,
            priced=e.priced,
            cached=e.cached,
            duration_ms=_ms(e.duration_s),
            time_to_first_token_ms=_ms(e.time_to_first_token_s),
            **self._cid(e.correlation_id),
        )

    @handles(AIRequestFailed)
    def on_ai_failed(self, e: AIRequestFailed) -> None:
        """ai.request.failed: error for a provider failure; warning for a call refused at
        once (circuit open, budget spent); info when the visitor left (cancelled)."""
        if e.outcome == AIOutcome.CANCELLED:
            method = self._log.info
        elif e.outcome in _AI_REFUSALS:
            method = self._log.warning
        else:
            method = self._log.error
        method(
            e.name,
            component="ai",
            provider=e.provider,
            model=e.model,
            outcome=e.outcome,
            duration_ms=_ms(e.duration_s),
            **{"error.type": e.error_type, "error.message": e.detail},
            **self._cid(e.correlation_id),
        )

    @handles(AIUnpriced)
    def on_ai_unpriced(self, e: AIUnpriced) -> None:
        """ai.request.unpriced (warning), once per provider and model."""
        key = (e.provider, e.model)
        if key in self._unpriced or len(self._unpriced) >= _MAX_UNPRICED_MODELS:
            return
        self._unpriced.add(key)
        self._log.warning(
            e.name,
            component="ai",
            provider=e.provider,
            model=e.model,
            message=f"no price known for model {e.model!r}: its cost is counted as 0",
        )

    @handles(AIRequestRetried)
    def on_ai_retried(self, e: AIRequestRetried) -> None:
        """ai.request.retried (warning): the call failed before its first byte."""
        self._log.warning(
            e.name,
            component="ai",
            provider=e.provider,
            model=e.model,
            attempt=e.attempt,
            reason=e.reason,
            delay_ms=_ms(e.delay_s),
            **self._cid(e.correlation_id),
        )

    @handles(AICircuitChanged)
    def on_ai_circuit_changed(self, e: AICircuitChanged) -> None:
        """ai.circuit.changed: error when it opens, warning half open, info when closed."""
        if e.state == "open":
            method = self._log.error
        elif e.state == "closed":
            method = self._log.info
        else:
            method = self._log.warning
        method(
            e.name,
            component="ai",
            provider=e.provider,
            state=e.state,
            previous=e.previous,
            consecutive_failures=e.consecutive_failures,
            open_for_ms=_ms(e.open_for_s),
        )

    @handles(AIFallbackUsed)
    def on_ai_fallback(self, e: AIFallbackUsed) -> None:
        """ai.fallback.used (warning): the fallback answered instead of the provider."""
        self._log.warning(
            e.name,
            component="ai",
            provider=e.provider,
            fallback_model=e.fallback_model,
            reason=e.reason,
            **self._cid(e.correlation_id),
        )

    @handles(AIBudgetChanged)
    def on_ai_budget_changed(self, e: AIBudgetChanged) -> None:
        """ai.budget.changed: warning at 80%, error when exhausted, info on a new day."""
        if e.state == "exhausted":
            method = self._log.error
        elif e.state == "warning":
            method = self._log.warning
        else:
            method = self._log.info
        method(
            e.name,
            component="ai",
            state=e.state,
            spent_usd=e.spent_usd,
            budget_usd=e.budget_usd,
            day=e.day,
        )

    # --- cache, sessions, features -------------------------------------------------------

    @handles(CacheLookup)
    def on_cache_lookup(self, e: CacheLookup) -> None:
        """cache.lookup (debug)."""
        self._log.debug(e.name, component="cache", hit=e.hit, entries=e.entries)

    @handles(CacheEvicted)
    def on_cache_evicted(self, e: CacheEvicted) -> None:
        """cache.evicted (debug)."""
        self._log.debug(e.name, component="cache", count=e.count, entries=e.entries)

    @handles(SessionStarted)
    def on_session_started(self, e: SessionStarted) -> None:
        """session.started (info)."""
        self._log.info(
            e.name, component="chat", session_id=e.session_id, user_id=e.user_id, resumed=e.resumed
        )

    @handles(SessionEnded)
    def on_session_ended(self, e: SessionEnded) -> None:
        """session.ended (info)."""
        self._log.info(
            e.name,
            component="chat",
            session_id=e.session_id,
            user_id=e.user_id,
            duration_ms=_ms(e.duration_s),
            messages=e.messages,
        )

    @handles(FeatureUsed)
    def on_feature_used(self, e: FeatureUsed) -> None:
        """feature.used (debug)."""
        self._log.debug(e.name, component="chat", feature=e.feature)

    # --- errors and security -------------------------------------------------------------

    @handles(ErrorOccurred)
    def on_error(self, e: ErrorOccurred) -> None:
        """error.unhandled (error, with stack trace) or error.<type>."""
        fields: dict[str, Any] = {
            "error.category": e.type,
            "error.code": e.code,
            "detail": e.detail,
            **self._cid(e.correlation_id),
        }
        if e.exception is not None:
            self._log.error(
                "error.unhandled" if e.type == "system" else f"error.{_name(e.type)}",
                exc_info=e.exception,
                **fields,
            )
            return
        fields["error.type"] = e.type
        if e.type in _CLIENT_ERRORS:
            # The client's fault, not the service's: worth seeing, not worth paging for.
            self._log.warning(f"error.{_name(e.type)}", **fields)
        else:
            self._log.error(f"error.{_name(e.type)}", **fields)

    @handles(SecurityEvent)
    def on_security_event(self, e: SecurityEvent) -> None:
        """security.<type> (warning) with the client's IP and user agent."""
        self._log.warning(
            f"security.{_name(e.type)}",
            component="security",
            client_ip=e.client_ip,
            user_agent=e.user_agent,
            detail=e.detail,
            **({"user_id": e.user_id} if e.user_id else {}),
        )
