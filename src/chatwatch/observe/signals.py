"""Every alert signal of SPEC §6, computed once, for the JSON API, health, history and alerts.

``Signals.read()`` takes one reading of the metrics windows and the security monitor and
returns a ``SignalReading``: typed attributes for code that knows what it wants
(``reading.error_rate``), ``value(name, labels)`` and ``series()`` for code that goes by name
(the alert engine). A rate over zero events is "no data" — ``None`` — which is not 0; a count
over a window without events is 0, which is data.

What the rates count (SPEC §7, amended):

* ``error_rate``: failures the service caused (error frames ``internal`` and
  ``ai_unavailable``, which include store failures) per handled message. A visitor leaving
  mid-reply (``ReplyCancelled``) is no failure; client mistakes are not counted here.
* ``client_error_rate``: the client's mistakes (``invalid_json``, ``invalid_frame``,
  ``message_too_large``, ``rate_limited``, by ``ErrorCode.is_client_mistake``) per received
  frame (valid or not). Never a reason to degrade health.
* ``ai_error_rate``: provider failures (error, timeout, invalid reply, circuit open) per AI
  call, cancelled calls and calls refused by the daily budget left out of both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from chatwatch.observe.metrics.recorder import ChatMetrics, Reading
from chatwatch.observe.metrics.runtime import read_process
from chatwatch.observe.metrics.totals import Totals

__all__ = [
    "LABELLED",
    "AuthFailureSource",
    "IntervalCounter",
    "IntervalCounts",
    "SignalName",
    "SignalReading",
    "SignalSample",
    "Signals",
    "ratio",
]


class SignalName(StrEnum):
    """The names rules use for signals (SPEC §6), plus ``client_error_rate``."""

    ERROR_RATE = "error_rate"
    CLIENT_ERROR_RATE = "client_error_rate"
    CONNECTION_SUCCESS_RATE = "connection_success_rate"
    RESPONSE_TIME_P95_SECONDS = "response_time_p95_seconds"
    AI_RESPONSE_TIME_P95_SECONDS = "ai_response_time_p95_seconds"
    CACHE_HIT_RATE = "cache_hit_rate"
    AI_COST_USD_24H = "ai_cost_usd_24h"
    AI_ERROR_RATE = "ai_error_rate"
    AUTH_FAILURES_PER_MINUTE = "auth_failures_per_minute"
    ACTIVE_CONNECTIONS = "active_connections"
    MESSAGES_PER_SECOND = "messages_per_second"
    EVENT_LOOP_LAG_SECONDS = "event_loop_lag_seconds"
    MEMORY_RSS_BYTES = "memory_rss_bytes"


# Signals that also come as series by label: the label name each is split by.
LABELLED: Mapping[SignalName, str] = {SignalName.AUTH_FAILURES_PER_MINUTE: "client_ip"}


class AuthFailureSource(Protocol):
    """Where authentication failures are counted (``SecurityMonitor``)."""

    def auth_failures_per_minute(self) -> float:
        """Failures over the last minute-long window, per minute."""
        ...

    def auth_failures_per_minute_by_ip(self) -> dict[str, float]:
        """The same per client IP (IPs with failures in the window)."""
        ...


def ratio(part: float, whole: float) -> float | None:
    """``part / whole`` clamped to 0..1, or None ("no data") when ``whole`` is 0."""
    if whole <= 0:
        return None
    return min(1.0, max(0.0, part / whole))


@dataclass(frozen=True, slots=True)
class SignalSample:
    """One signal's value, with its labels (empty for the unlabelled total)."""

    name: SignalName
    labels: Mapping[str, str]
    value: float | None


@dataclass(frozen=True, slots=True)
class SignalReading:
    """Every signal at one instant, and the window counts behind the rates."""

    metrics: Reading  # the metrics reading the signals were computed from
    at: float
    window_seconds: float
    error_rate: float | None
    client_error_rate: float | None
    connection_success_rate: float | None
    response_time_p95_seconds: float | None
    ai_response_time_p95_seconds: float | None
    cache_hit_rate: float | None
    ai_cost_usd_24h: float
    ai_error_rate: float | None
    auth_failures_per_minute: float
    active_connections: int
    messages_per_second: float
    event_loop_lag_seconds: float | None
    memory_rss_bytes: int | None
    auth_failures_per_minute_by_ip: Mapping[str, float] = field(default_factory=dict)
    # The counts over the window behind the rates (what health shows and judges by).
    handled_messages: int = 0
    service_failures: int = 0
    received_frames: int = 0
    client_mistakes: int = 0
    ai_calls: int = 0
    ai_failed: int = 0
    # provider label -> closed | half_open | open, as the breaker last said
    ai_circuit: Mapping[str, str] = field(default_factory=dict)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The signal ``name`` (for ``labels``, if given): None is "no data".

        A labelled read of a series with no events in the window is 0, not None: a per-IP
        count that fell to 0 is data (it resolves that IP's alert).
        """
        signal = _signal(name)
        if labels:
            label = LABELLED.get(signal)
            if label is None or set(labels) != {label}:
                raise KeyError(f"signal {signal} has no series labelled {sorted(labels)}")
            return self.auth_failures_per_minute_by_ip.get(labels[label], 0.0)
        value: float | int | None = getattr(self, signal.value)
        return None if value is None else float(value)

    def series(self, name: str | None = None) -> Iterator[SignalSample]:
        """Each signal's unlabelled value, then each labelled series (per client IP …)."""
        names = [_signal(name)] if name is not None else list(SignalName)
        for signal in names:
            yield SignalSample(signal, {}, self.value(signal))
            label = LABELLED.get(signal)
            if label is not None:
                for ip, v in sorted(self.auth_failures_per_minute_by_ip.items()):
                    yield SignalSample(signal, {label: ip}, v)


def _signal(name: str) -> SignalName:
    try:
        return SignalName(name)
    except ValueError:
        known = ", ".join(SignalName)
        raise KeyError(f"unknown signal {name!r}; known: {known}") from None


class Signals:
    """Reads the signals off the metrics windows and the security monitor."""

    def __init__(self, metrics: ChatMetrics, auth: AuthFailureSource) -> None:
        self.metrics = metrics
        self.auth = auth
        self.clock = metrics.clock

    def read(self) -> SignalReading:
        """Every signal now (one metrics read behind all of them)."""
        return self.of(self.metrics.read())

    def of(self, r: Reading) -> SignalReading:
        """The signals of one metrics reading."""
        w = r.window
        received = w.messages_received + w.frames_rejected
        ai_calls = w.ai_requests - w.ai_cancelled - w.ai_budget_refused
        rss = r.runtime.rss_bytes
        if rss is None:  # the runtime monitor has not sampled yet: read the process directly
            rss, _ = read_process()
        return SignalReading(
            metrics=r,
            at=r.at,
            window_seconds=r.window_seconds,
            error_rate=ratio(w.service_failures, w.messages_handled),
            client_error_rate=ratio(w.client_mistakes, received),
            connection_success_rate=ratio(
                w.connections_opened, w.connections_opened + w.connections_failed
            ),
            response_time_p95_seconds=r.latencies.response.p95,
            ai_response_time_p95_seconds=r.latencies.ai_duration.p95,
            cache_hit_rate=ratio(w.cache_hits, w.cache_hits + w.cache_misses),
            ai_cost_usd_24h=r.ai_cost_usd_24h,
            ai_error_rate=ratio(w.ai_failed, ai_calls),
            auth_failures_per_minute=self.auth.auth_failures_per_minute(),
            auth_failures_per_minute_by_ip=self.auth.auth_failures_per_minute_by_ip(),
            active_connections=r.active_connections,
            messages_per_second=r.per_second.messages_received,
            event_loop_lag_seconds=r.runtime.loop_lag_seconds,
            memory_rss_bytes=rss,
            handled_messages=round(w.messages_handled),
            service_failures=round(w.service_failures),
            received_frames=round(received),
            client_mistakes=round(w.client_mistakes),
            ai_calls=round(max(0.0, ai_calls)),
            ai_failed=round(w.ai_failed),
            ai_circuit=r.circuit,
        )


@dataclass(frozen=True, slots=True)
class IntervalCounts:
    """Counts over one history interval: what an SLO burn-rate engine sums."""

    seconds: float
    handled_messages: int
    service_failures: int
    received_frames: int
    client_mistakes: int
    ai_calls: int
    ai_failed: int

    def as_dict(self) -> dict[str, float | int]:
        """The ``interval`` object of a history item."""
        return {
            "seconds": round(self.seconds, 3),
            "handled_messages": self.handled_messages,
            "service_failures": self.service_failures,
            "received_frames": self.received_frames,
            "client_mistakes": self.client_mistakes,
            "ai_calls": self.ai_calls,
            "ai_failed": self.ai_failed,
        }


class IntervalCounter:
    """Counts since the previous ``take`` (the first covers the time since it was built)."""

    def __init__(self, metrics: ChatMetrics) -> None:
        self._clock = metrics.clock
        self._last: Totals = metrics.totals()
        self._last_at = self._clock.monotonic()

    def take(self, totals: Totals) -> IntervalCounts:
        """The growth from the previous take to ``totals`` (cumulative, so resets are moot)."""
        now = self._clock.monotonic()
        g = totals.minus(self._last)
        span = now - self._last_at
        self._last, self._last_at = totals, now
        ai_calls = g.ai_requests - g.ai_cancelled - g.ai_budget_refused
        return IntervalCounts(
            seconds=span,
            handled_messages=round(g.messages_handled),
            service_failures=round(g.service_failures),
            received_frames=round(g.messages_received + g.frames_rejected),
            client_mistakes=round(g.client_mistakes),
            ai_calls=round(ai_calls),
            ai_failed=round(g.ai_failed),
        )
