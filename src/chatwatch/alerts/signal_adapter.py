"""The running service's signals for the alert engine: an adapter over ``observe.signals``.

This file is the only place the engine meets the metrics. It turns one
``Signals.read()`` into the engine's port (``StaticReading``): every series by name and
labels, with the count of events behind each rate (for a rule's ``min_samples``).
"""

from __future__ import annotations

from chatwatch.alerts.signals_port import Series, StaticReading
from chatwatch.observe.signals import SignalReading, Signals

__all__ = ["SignalsSource", "reading_of"]


def _samples(s: SignalReading) -> dict[str, float]:
    """How many events stand behind each rate or percentile of ``s``."""
    w = s.metrics.window
    lat = s.metrics.latencies
    return {
        "error_rate": float(s.handled_messages),
        "client_error_rate": float(s.received_frames),
        "connection_success_rate": float(w.connections_opened + w.connections_failed),
        "response_time_p95_seconds": float(lat.response.count),
        "ai_response_time_p95_seconds": float(lat.ai_duration.count),
        "cache_hit_rate": float(w.cache_hits + w.cache_misses),
        "ai_error_rate": float(s.ai_calls),
    }


def reading_of(s: SignalReading) -> StaticReading:
    """The engine's view of one signals reading."""
    samples = _samples(s)
    out = StaticReading()
    for sample in s.series():
        name = sample.name.value
        out.data.setdefault(name, []).append(
            Series(dict(sample.labels), sample.value, samples.get(name))
        )
    return out


class SignalsSource:
    """Reads ``Signals`` for the engine."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals

    def read(self) -> StaticReading:
        """Every signal, read now."""
        return reading_of(self.signals.read())
