"""Chat events become log records of the SPEC §5 families, with their fields and levels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chatwatch.config import LoggingSettings
from chatwatch.events import (
    AIBudgetChanged,
    AICircuitChanged,
    AIFallbackUsed,
    AIRequestFailed,
    AIRequestRetried,
    AIRequestStarted,
    AIUnpriced,
    ConnectionFailed,
    ErrorOccurred,
    EventBus,
    FrameRejected,
    MessageReceived,
    MessageReplayed,
    MessageSent,
    RejectionsSuppressed,
    ReplyCancelled,
    ResponseCompleted,
    SecurityEvent,
    attach,
)
from chatwatch.observe.context import bind_message
from chatwatch.observe.logs.records import EventLogger
from tests.observe import factory
from tests.observe.logcapture import Captured, capture_logging


@pytest.fixture
def cap(bus: EventBus) -> Iterator[Captured]:
    """Logging captured at DEBUG, an EventLogger attached to the test's bus."""
    with capture_logging(level="DEBUG") as captured:
        attach(bus, EventLogger(LoggingSettings(slow_response_seconds=2.0)))
        yield captured


def only(cap: Captured, name: str) -> dict[str, Any]:
    """The single record named ``name``."""
    (record,) = cap.events(name)
    return record


def test_connection_opened_carries_identity(bus: EventBus, cap: Captured) -> None:
    """connection.opened is info with connection, user, session, IP and user agent."""
    bus.emit(factory.opened("c-9", "u-9", "s-9"))
    record = only(cap, "connection.opened")
    assert record["level"] == "info"
    assert (record["connection_id"], record["user_id"], record["session_id"]) == (
        "c-9",
        "u-9",
        "s-9",
    )
    assert (record["client_ip"], record["user_agent"]) == ("127.0.0.1", "pytest")


def test_connection_closed_by_error_is_a_warning(bus: EventBus, cap: Captured) -> None:
    """connection.closed is a warning when the reason is an error, with duration_ms."""
    bus.emit(factory.closed(reason="error", duration=1.5))
    record = only(cap, "connection.closed")
    assert record["level"] == "warning"
    assert record["duration_ms"] == 1500.0


def test_connection_failed_is_a_warning_with_client(bus: EventBus, cap: Captured) -> None:
    """connection.failed names the reason, status, IP and user agent."""
    bus.emit(ConnectionFailed("auth_invalid", "198.51.100.4", "curl/8", 401))
    record = only(cap, "connection.failed")
    assert record["level"] == "warning"
    assert (record["reason"], record["status"], record["client_ip"]) == (
        "auth_invalid",
        401,
        "198.51.100.4",
    )


def test_message_received_logs_length_not_content(bus: EventBus, cap: Captured) -> None:
    """message.received records the content length and never a content field by default."""
    bus.emit(factory.received())
    record = only(cap, "message.received")
    assert record["content_length"] == 10
    assert "content" not in record
    assert record["correlation_id"] == "corr"


@dataclass(frozen=True, slots=True)
class _ReceivedWithContent(MessageReceived):
    content: str = ""


def test_content_is_logged_only_with_log_content() -> None:
    """A message's text is logged only when logging.log_content is on."""
    event = _ReceivedWithContent("message", "c", "s", "u", "id", 5, content="hello")
    with capture_logging() as off:
        EventLogger(LoggingSettings()).on_message_received(event)
    with capture_logging() as on:
        EventLogger(LoggingSettings(log_content=True)).on_message_received(event)
    assert "content" not in off.lines()[0]
    assert on.lines()[0]["content"] == "hello"


def test_streamed_deltas_are_debug_and_replies_info(bus: EventBus, cap: Captured) -> None:
    """ai_delta frames are debug records, the final ai_message an info one."""
    bus.emit(MessageSent("ai_delta", "c1", "corr"))
    bus.emit(MessageSent("ai_message", "c1", "corr"))
    levels = [r["level"] for r in cap.events("message.sent")]
    assert levels == ["debug", "info"]


def test_frame_rejected_is_a_warning_with_code(bus: EventBus, cap: Captured) -> None:
    """message.rejected carries the SPEC error code and the frame size."""
    bus.emit(FrameRejected("message_too_large", "c1", "u1", "corr-x", "too big", 99999))
    record = only(cap, "message.rejected")
    assert (record["level"], record["code"], record["size_bytes"]) == (
        "warning",
        "message_too_large",
        99999,
    )


def test_ai_request_records_carry_provider_model_and_timings(bus: EventBus, cap: Captured) -> None:
    """ai.request.started/completed are info with provider, model, tokens, cost, duration_ms."""
    bus.emit(AIRequestStarted("openai", "gpt-4o-mini", "corr", 3))
    bus.emit(factory.ai_done(duration=0.25, ttft=0.05))
    started = only(cap, "ai.request.started")
    done = only(cap, "ai.request.completed")
    assert (started["component"], started["provider"], started["model"]) == (
        "ai",
        "openai",
        "gpt-4o-mini",
    )
    assert (done["input_tokens"], done["output_tokens"], done["cost_usd"]) == (10, 20, 0.001)
    assert (done["duration_ms"], done["time_to_first_token_ms"]) == (250.0, 50.0)


def test_ai_failure_is_an_error_with_error_fields(bus: EventBus, cap: Captured) -> None:
    """ai.request.failed is an error with error.type and error.message."""
    bus.emit(AIRequestFailed("openai", "m", "corr", "timeout", "ReadTimeout", "no reply", 30.0))
    record = only(cap, "ai.request.failed")
    assert record["level"] == "error"
    assert (record["error.type"], record["error.message"], record["outcome"]) == (
        "ReadTimeout",
        "no reply",
        "timeout",
    )


def test_unpriced_model_is_warned_once(bus: EventBus, cap: Captured) -> None:
    """ai.request.unpriced is a warning logged once per model."""
    for _ in range(3):
        bus.emit(AIUnpriced("openai", "mystery-1", first_time=False))
    bus.emit(AIUnpriced("openai", "mystery-2", first_time=True))
    records = cap.events("ai.request.unpriced")
    assert [r["model"] for r in records] == ["mystery-1", "mystery-2"]
    assert all(r["level"] == "warning" for r in records)


def test_security_event_name_has_its_type(bus: EventBus, cap: Captured) -> None:
    """A SecurityEvent is logged as security.<type> with client IP and user agent."""
    bus.emit(SecurityEvent("auth_failed", "203.0.113.5", "evil-bot/1", None, "bad token"))
    record = only(cap, "security.auth_failed")
    assert (record["level"], record["component"]) == ("warning", "security")
    assert (record["client_ip"], record["user_agent"]) == ("203.0.113.5", "evil-bot/1")


def test_odd_security_type_is_made_a_safe_name(bus: EventBus, cap: Captured) -> None:
    """A security type with odd characters still gives a plain event name."""
    bus.emit(SecurityEvent("Weird Type!\n", "ip", "ua", None, ""))
    assert only(cap, "security.weird_type")["level"] == "warning"


def test_slow_response_is_a_performance_warning(bus: EventBus, cap: Captured) -> None:
    """A reply slower than slow_response_seconds gives performance.slow_response."""
    bus.emit(ResponseCompleted("fast", "s1", 1.9, False))
    bus.emit(ResponseCompleted("slow", "s1", 2.5, False))
    record = only(cap, "performance.slow_response")
    assert (record["correlation_id"], record["duration_ms"], record["threshold_ms"]) == (
        "slow",
        2500.0,
        2000.0,
    )


def test_error_with_exception_has_stack_trace(bus: EventBus, cap: Captured) -> None:
    """error.unhandled carries the exception's type and stack trace."""
    try:
        raise RuntimeError("store exploded")
    except RuntimeError as exc:
        bus.emit(ErrorOccurred("system", "internal", "could not store", "corr-e", exc))
    record = only(cap, "error.unhandled")
    assert record["level"] == "error"
    assert record["error.type"] == "RuntimeError"
    assert "store exploded" in record["error.stack_trace"]
    assert record["correlation_id"] == "corr-e"


def test_client_errors_are_not_error_level(bus: EventBus, cap: Captured) -> None:
    """A validation error is error.validation at warning; a timeout is error.timeout at error."""
    bus.emit(ErrorOccurred("validation", "invalid_json", "bad json"))
    bus.emit(ErrorOccurred("timeout", "ai_unavailable", "upstream slow"))
    assert only(cap, "error.validation")["level"] == "warning"
    assert only(cap, "error.timeout")["level"] == "error"


def test_event_correlation_id_wins_over_context(bus: EventBus, cap: Captured) -> None:
    """An event's own correlation id is recorded even when another is bound."""
    bind_message("context-id")
    bus.emit(MessageSent("ack", "c1", "event-id"))
    bus.emit(MessageSent("pong", "c1", None))
    first, second = cap.events("message.sent")
    assert first["correlation_id"] == "event-id"
    assert second["correlation_id"] == "context-id"


# --- the events added for cancellation, replays, suppression and AI resilience --------------


def test_client_closed_connection_is_info(bus: EventBus, cap: Captured) -> None:
    """A visitor closing the socket is the normal end of a chat: connection.closed at info."""
    bus.emit(factory.closed(reason="client_closed"))
    assert only(cap, "connection.closed")["level"] == "info"


def test_reply_cancelled_is_info_not_an_error(bus: EventBus, cap: Captured) -> None:
    """message.cancelled is info with the reason and whether the reply was still stored."""
    bus.emit(ReplyCancelled("c1", "s1", "corr-c", "client_closed", stored=True))
    record = only(cap, "message.cancelled")
    assert (record["level"], record["reason"], record["stored"]) == ("info", "client_closed", True)
    assert record["correlation_id"] == "corr-c"
    assert not [r for r in cap.lines() if r["level"] in ("error", "critical")]


def test_cancelled_ai_call_is_info_and_refusals_warnings(bus: EventBus, cap: Captured) -> None:
    """ai.request.failed: cancelled is info, circuit_open/budget_exceeded warnings, else error.

    Tried: outcome=cancelled, which used to be logged as an error.
    """
    for outcome in ("cancelled", "circuit_open", "budget_exceeded", "invalid_reply"):
        bus.emit(AIRequestFailed("openai", "m", "corr", outcome, "X", "detail", 0.1))
    levels = {r["outcome"]: r["level"] for r in cap.events("ai.request.failed")}
    assert levels == {
        "cancelled": "info",
        "circuit_open": "warning",
        "budget_exceeded": "warning",
        "invalid_reply": "error",
    }


def test_quiet_error_frames_are_not_logged_one_by_one(bus: EventBus, cap: Captured) -> None:
    """An error frame answering a rejection that is only counted (``quiet``) gets no record.

    Tried: 50 quiet error frames, as a bad-frame flood past the connection's limit sends.
    """
    for _ in range(50):
        bus.emit(MessageSent("error", "c1", "corr", quiet=True))
    bus.emit(MessageSent("error", "c1", "corr"))
    assert len(cap.events("message.sent")) == 1


def test_message_replayed_is_info(bus: EventBus, cap: Captured) -> None:
    """message.replayed is info with the connection and session."""
    bus.emit(MessageReplayed("c1", "s1", "corr-r"))
    record = only(cap, "message.replayed")
    assert (record["level"], record["session_id"], record["correlation_id"]) == (
        "info",
        "s1",
        "corr-r",
    )


def test_suppressed_rejections_are_one_warning_with_counts(bus: EventBus, cap: Captured) -> None:
    """message.rejected.suppressed is one warning per summary, with the counts by code."""
    by_code = (("invalid_json", 40), ("rate_limited", 2))
    bus.emit(RejectionsSuppressed("c1", "u1", "10.0.0.7", 42, by_code, 10.0))
    record = only(cap, "message.rejected.suppressed")
    assert record["level"] == "warning"
    assert (record["count"], record["by_code"], record["client_ip"]) == (
        42,
        {"invalid_json": 40, "rate_limited": 2},
        "10.0.0.7",
    )
    assert record["interval_ms"] == 10000.0


def test_ai_retry_and_fallback_are_warnings(bus: EventBus, cap: Captured) -> None:
    """ai.request.retried and ai.fallback.used are warnings with the reason."""
    bus.emit(AIRequestRetried("openai", "m", "corr", 2, "http 503", 0.25))
    bus.emit(AIFallbackUsed("openai", "builtin", "corr", "timeout"))
    retried = only(cap, "ai.request.retried")
    fallback = only(cap, "ai.fallback.used")
    assert (retried["level"], retried["attempt"], retried["delay_ms"]) == ("warning", 2, 250.0)
    assert (fallback["level"], fallback["reason"], fallback["fallback_model"]) == (
        "warning",
        "timeout",
        "builtin",
    )


def test_circuit_open_is_an_error_half_open_warning_closed_info(
    bus: EventBus, cap: Captured
) -> None:
    """ai.circuit.changed is logged at error when it opens, then warning, then info."""
    bus.emit(AICircuitChanged("openai", "open", "closed", 5, 30.0))
    bus.emit(AICircuitChanged("openai", "half_open", "open", 5, 0.0))
    bus.emit(AICircuitChanged("openai", "closed", "half_open", 0, 0.0))
    records = cap.events("ai.circuit.changed")
    assert [(r["state"], r["level"]) for r in records] == [
        ("open", "error"),
        ("half_open", "warning"),
        ("closed", "info"),
    ]
    assert records[0]["open_for_ms"] == 30000.0 and records[0]["consecutive_failures"] == 5


def test_budget_levels(bus: EventBus, cap: Captured) -> None:
    """ai.budget.changed: warning at 80%, error when exhausted, info on a new day."""
    bus.emit(AIBudgetChanged("warning", 8.0, 10.0, "2027-01-15"))
    bus.emit(AIBudgetChanged("exhausted", 10.0, 10.0, "2027-01-15"))
    bus.emit(AIBudgetChanged("reset", 0.0, 10.0, "2027-01-16"))
    records = cap.events("ai.budget.changed")
    assert [(r["state"], r["level"]) for r in records] == [
        ("warning", "warning"),
        ("exhausted", "error"),
        ("reset", "info"),
    ]
    assert records[1]["spent_usd"] == 10.0 and records[1]["day"] == "2027-01-15"
