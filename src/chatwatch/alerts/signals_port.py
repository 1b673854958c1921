"""The narrow port the alert engine reads signals through, and the catalogue of signals.

The engine knows signals only by name (SPEC §6). A ``SignalSource`` hands it one
``SignalReading`` per evaluation; a reading answers ``series(name)`` with every label set
of that signal and its value. ``value is None`` means "no data" (a rate over zero events):
a rule neither fires nor resolves on it. ``samples`` is how many events stand behind a
rate or percentile, so a rule's ``min_samples`` can treat a thin window as no data too.

A signal of kind ``count`` is a count over a window: a label set that was seen before and
is absent now counted zero events, and zero is data (a per-IP auth-failure alert resolves
when that IP's count falls to 0). For ``rate`` and ``gauge`` signals absence is no data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

__all__ = [
    "SIGNALS",
    "WATCHDOG_SIGNAL",
    "Series",
    "SignalKind",
    "SignalReading",
    "SignalSource",
    "SignalSpec",
    "StaticReading",
]

WATCHDOG_SIGNAL = "watchdog"


class SignalKind(StrEnum):
    """How to read a missing label set: a ``count`` is then 0, anything else no data."""

    RATE = "rate"
    COUNT = "count"
    GAUGE = "gauge"


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One signal of SPEC §6: its kind, the labels it may be split by, and a description."""

    name: str
    kind: SignalKind
    help: str
    labels: tuple[str, ...] = ()


SIGNALS: Mapping[str, SignalSpec] = {
    s.name: s
    for s in (
        SignalSpec("error_rate", SignalKind.RATE, "failed messages per handled message"),
        SignalSpec("client_error_rate", SignalKind.RATE, "client mistakes per received frame"),
        SignalSpec(
            "connection_success_rate", SignalKind.RATE, "accepted per attempted connections"
        ),
        SignalSpec("response_time_p95_seconds", SignalKind.RATE, "user message → reply, P95"),
        SignalSpec("ai_response_time_p95_seconds", SignalKind.RATE, "AI call duration, P95"),
        SignalSpec("cache_hit_rate", SignalKind.RATE, "AI cache hits per look-up"),
        SignalSpec(
            "ai_cost_usd_24h",
            SignalKind.COUNT,
            "AI spend over the last 24 h, USD (also per user_id, the top 50)",
            ("user_id",),
        ),
        SignalSpec("ai_error_rate", SignalKind.RATE, "failed AI calls per AI call"),
        SignalSpec(
            "auth_failures_per_minute",
            SignalKind.COUNT,
            "authentication failures per minute (also per client_ip)",
            ("client_ip",),
        ),
        SignalSpec("active_connections", SignalKind.GAUGE, "open WebSocket connections"),
        SignalSpec("messages_per_second", SignalKind.COUNT, "received messages per second"),
        SignalSpec("event_loop_lag_seconds", SignalKind.GAUGE, "event loop lag"),
        SignalSpec("memory_rss_bytes", SignalKind.GAUGE, "resident memory of the process"),
        # The watcher watched (issue 9): see ``alerts.watcher``.
        SignalSpec(
            "alert_outbox_backlog",
            SignalKind.GAUGE,
            "notifications queued or being sent for more than 5 minutes",
        ),
        SignalSpec(
            "log_records_dropped_per_minute",
            SignalKind.GAUGE,
            "log records that never reached the log store, over the last minute",
        ),
        SignalSpec("data_dir_free_bytes", SignalKind.GAUGE, "free space in server.data_dir"),
        SignalSpec(WATCHDOG_SIGNAL, SignalKind.GAUGE, "always 1: the dead-man's switch"),
    )
}


class Series(NamedTuple):
    """One label set of a signal: its value (None: no data) and the events behind it."""

    labels: Mapping[str, str]
    value: float | None
    samples: float | None = None


class SignalReading(Protocol):
    """Every signal read at one instant."""

    def series(self, signal: str) -> Sequence[Series]:
        """All label sets of ``signal`` (the unlabelled total has empty labels)."""
        ...


class SignalSource(Protocol):
    """Something that can be read for signals (the running service, or a test's fake)."""

    def read(self) -> SignalReading:
        """A reading taken now."""
        ...


@dataclass(slots=True)
class StaticReading:
    """A reading held in a dict: what adapters build and tests hand to the engine."""

    data: dict[str, list[Series]] = field(default_factory=dict)

    def series(self, signal: str) -> Sequence[Series]:
        """All label sets of ``signal``."""
        return self.data.get(signal, ())

    def set(
        self,
        signal: str,
        value: float | None,
        samples: float | None = None,
        **labels: str,
    ) -> StaticReading:
        """Set (replace) one label set's value; returns self for chaining."""
        rows = self.data.setdefault(signal, [])
        rows[:] = [s for s in rows if dict(s.labels) != labels]
        rows.append(Series(labels, value, samples))
        return self
