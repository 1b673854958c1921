"""Signals: every SPEC §6 signal computed once, "no data" kept apart from 0, on a fake clock."""

from __future__ import annotations

import dataclasses

import pytest

from chatwatch.clock import FakeClock
from chatwatch.events import (
    CacheLookup,
    ConnectionFailed,
    ErrorOccurred,
    EventBus,
    FrameRejected,
    ReplyCancelled,
    ResponseCompleted,
    SecurityEvent,
)
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.signals import (
    LABELLED,
    IntervalCounter,
    SignalName,
    SignalReading,
    Signals,
    SignalSample,
)
from chatwatch.vocabulary import AIOutcome
from tests.observe import factory as f
from tests.observe.live import LiveChat

RATES = (
    SignalName.ERROR_RATE,
    SignalName.CLIENT_ERROR_RATE,
    SignalName.CONNECTION_SUCCESS_RATE,
    SignalName.CACHE_HIT_RATE,
    SignalName.AI_ERROR_RATE,
)


def run_for(metrics: ChatMetrics, clock: FakeClock, seconds: int) -> None:
    """Let ``seconds`` pass with the once-a-second tick the runtime monitor gives."""
    for _ in range(seconds):
        clock.advance(1)
        metrics.tick()


def failure(bus: EventBus, code: str = "internal") -> None:
    """One handled message that failed by the service's fault (``code``)."""
    bus.emit(f.received())
    bus.emit(ErrorOccurred("system", code, "store down", "corr"))
    bus.emit(f.processed(ok=False))


def test_every_signal_name_is_a_field_of_the_reading():
    """``value(name)`` reads a field per name: none may be missing."""
    names = {f.name for f in dataclasses.fields(SignalReading)}
    assert {s.value for s in SignalName} <= names


def test_rates_over_no_events_are_no_data_and_counts_are_zero(signals: Signals):
    """A fresh process: every rate and percentile is None; counts and gauges are 0."""
    reading = signals.read()
    for name in RATES:
        assert reading.value(name) is None, name
    assert reading.value("response_time_p95_seconds") is None
    assert reading.value("ai_response_time_p95_seconds") is None
    assert reading.value("messages_per_second") == 0.0
    assert reading.value("active_connections") == 0.0
    assert reading.value("auth_failures_per_minute") == 0.0
    assert reading.value("ai_cost_usd_24h") == 0.0
    assert reading.value("event_loop_lag_seconds") is None  # not measured yet


def test_each_signal_from_its_events(
    bus: EventBus, live: LiveChat, signals: Signals, clock: FakeClock
):
    """Each signal carries the figure its events imply."""
    live.open("c1", "u1")
    bus.emit(ConnectionFailed("auth_invalid", "10.0.0.1", "x", 401))
    for _ in range(3):
        bus.emit(f.received())
        bus.emit(f.processed())
    failure(bus)
    bus.emit(FrameRejected("invalid_json", "c1", "u1", None, "bad", 3))
    bus.emit(CacheLookup(hit=True, entries=1))
    bus.emit(CacheLookup(hit=False, entries=1))
    bus.emit(f.ai_done(duration=0.8, cost=0.5))
    bus.emit(f.ai_failed(AIOutcome.INVALID_REPLY))
    bus.emit(ResponseCompleted("corr", "s1", 1.5, False))
    bus.emit(SecurityEvent("auth_failed", "10.0.0.1", "ua", None, "bad token"))
    clock.advance(4)
    r = signals.read()
    assert r.error_rate == pytest.approx(1 / 4)  # 1 failure of 4 handled
    assert r.client_error_rate == pytest.approx(1 / 5)  # 1 bad frame of 5 received
    assert r.connection_success_rate == pytest.approx(1 / 2)
    assert r.cache_hit_rate == pytest.approx(1 / 2)
    assert r.ai_error_rate == pytest.approx(1 / 2)
    assert r.ai_response_time_p95_seconds == pytest.approx(0.8, rel=0.02)
    assert r.response_time_p95_seconds == pytest.approx(1.5, rel=0.02)
    assert r.ai_cost_usd_24h == pytest.approx(0.5)
    assert r.active_connections == 1
    assert r.messages_per_second == pytest.approx(4 / 4)
    assert r.auth_failures_per_minute == 1.0
    assert r.memory_rss_bytes is not None and r.memory_rss_bytes > 0
    assert (r.handled_messages, r.service_failures) == (4, 1)
    assert (r.received_frames, r.client_mistakes) == (5, 1)
    assert (r.ai_calls, r.ai_failed) == (2, 1)


def test_service_failures_are_internal_and_ai_unavailable_only(bus: EventBus, signals: Signals):
    """Store (internal) and AI (ai_unavailable) failures count; client codes never do."""
    failure(bus, "internal")
    failure(bus, "ai_unavailable")
    for code in ("invalid_json", "invalid_frame", "message_too_large", "rate_limited"):
        bus.emit(ErrorOccurred("validation", code, "bad"))
    bus.emit(f.received())
    bus.emit(f.processed())
    r = signals.read()
    assert (r.service_failures, r.handled_messages) == (2, 3)
    assert r.error_rate == pytest.approx(2 / 3)


def test_cancellation_is_not_an_error(bus: EventBus, signals: Signals):
    """A visitor leaving mid-reply moves no rate: neither error_rate nor ai_error_rate.

    Tried: a ReplyCancelled and an AIRequestFailed(outcome=cancelled) after one handled
    message; the AI call used to be counted as a provider error.
    """
    bus.emit(f.received())
    bus.emit(f.processed())
    bus.emit(ReplyCancelled("c1", "s1", "corr", "client_closed", stored=False))
    bus.emit(f.ai_failed(AIOutcome.CANCELLED))
    bus.emit(f.ai_failed(AIOutcome.BUDGET_EXCEEDED))
    r = signals.read()
    assert r.error_rate == 0.0
    assert r.ai_error_rate is None  # no call that could fail was judged
    assert r.ai_calls == 0


def test_rates_return_to_no_data_when_the_window_empties(
    bus: EventBus, metrics: ChatMetrics, signals: Signals, clock: FakeClock
):
    """Events older than the window stop counting: the rate is None again, not 0."""
    failure(bus)
    run_for(metrics, clock, 100)
    assert signals.read().error_rate == 1.0
    run_for(metrics, clock, 301)
    r = signals.read()
    assert r.error_rate is None
    assert r.messages_per_second == 0.0
    assert r.metrics.totals.service_failures == 1  # the total remains


def test_auth_failures_per_ip_are_a_labelled_series(
    bus: EventBus, signals: Signals, clock: FakeClock
):
    """Per-IP values come by label; an IP without failures in the window reads 0 (data)."""
    for _ in range(3):
        bus.emit(SecurityEvent("auth_failed", "10.0.0.1", "ua", None, "bad"))
    bus.emit(SecurityEvent("auth_failed", "10.0.0.2", "ua", None, "bad"))
    r = signals.read()
    assert r.value("auth_failures_per_minute") == 4.0
    assert r.value("auth_failures_per_minute", {"client_ip": "10.0.0.1"}) == 3.0
    assert r.value("auth_failures_per_minute", {"client_ip": "192.0.2.9"}) == 0.0
    labelled = [s for s in r.series("auth_failures_per_minute") if s.labels]
    assert labelled == [
        SignalSample(SignalName.AUTH_FAILURES_PER_MINUTE, {"client_ip": "10.0.0.1"}, 3.0),
        SignalSample(SignalName.AUTH_FAILURES_PER_MINUTE, {"client_ip": "10.0.0.2"}, 1.0),
    ]
    clock.advance(61)
    later = signals.read()
    assert later.value("auth_failures_per_minute", {"client_ip": "10.0.0.1"}) == 0.0
    assert [s for s in later.series("auth_failures_per_minute") if s.labels] == []


def test_series_lists_every_signal_once_unlabelled(signals: Signals):
    """``series()`` gives each signal's total first: what an alert engine iterates."""
    names = [s.name for s in signals.read().series() if not s.labels]
    assert names == list(SignalName)
    assert set(LABELLED) == {SignalName.AUTH_FAILURES_PER_MINUTE}


def test_unknown_signal_or_label_is_a_key_error(signals: Signals):
    """A misspelt signal name, or a label the signal has no series by, is an error, not None."""
    r = signals.read()
    with pytest.raises(KeyError, match="unknown signal"):
        r.value("eror_rate")
    with pytest.raises(KeyError, match="no series"):
        r.value("error_rate", {"client_ip": "10.0.0.1"})


def test_interval_counts_sum_to_the_totals(
    bus: EventBus, metrics: ChatMetrics, signals: Signals, clock: FakeClock
):
    """Per-interval handled messages and failures add up, whatever resets happen between."""
    counter = IntervalCounter(metrics)
    failure(bus)
    bus.emit(f.received())
    bus.emit(f.processed())
    clock.advance(60)
    first = counter.take(signals.read().metrics.totals)
    metrics.reset()
    failure(bus)
    bus.emit(FrameRejected("rate_limited", "c1", "u1", None, "slow", 3))
    clock.advance(60)
    second = counter.take(signals.read().metrics.totals)
    assert (first.handled_messages, first.service_failures, first.seconds) == (2, 1, 60)
    assert (second.handled_messages, second.service_failures) == (1, 1)
    assert (second.received_frames, second.client_mistakes) == (2, 1)
    assert second.as_dict()["handled_messages"] == 1
