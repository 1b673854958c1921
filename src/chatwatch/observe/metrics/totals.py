"""Cumulative counts since start as typed fields: a misspelt figure is an AttributeError (and a
mypy error), never a silent zero read back from a string-keyed dict.

``ChatMetrics.totals()`` reads them from the Prometheus children; windows and resets keep
earlier ``Totals`` and subtract (``minus``), and rates divide the growth by its span
(``scaled``). Figures by label value (error type, model, …) are mappings keyed by the bounded
label values themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Self

__all__ = ["ModelTotals", "Totals"]


def _combine(a: Any, b: Any, op: Callable[[float, float], float]) -> Any:
    """``op`` applied figure by figure (a label value missing on one side counts as 0)."""
    if isinstance(a, int | float):
        return op(a, b)
    if isinstance(a, _Figures):
        return a._with(b, op)
    if isinstance(a, Mapping):
        out = {}
        for key in dict.fromkeys([*a, *b]):
            mine, other = a.get(key), b.get(key)
            sample = mine if mine is not None else other
            zero = sample._zero() if isinstance(sample, _Figures) else 0.0
            out[key] = _combine(
                zero if mine is None else mine, zero if other is None else other, op
            )
        return out
    raise TypeError(f"not a figure: {a!r}")


class _Figures:
    """Arithmetic over every field of a dataclass of figures."""

    def _with(self, other: Self, op: Callable[[float, float], float]) -> Self:
        values = {
            f.name: _combine(getattr(self, f.name), getattr(other, f.name), op)
            for f in fields(self)  # type: ignore[arg-type]
        }
        return type(self)(**values)

    def _zero(self) -> Self:
        return type(self)()

    def minus(self, earlier: Self) -> Self:
        """Growth since ``earlier``."""
        return self._with(earlier, lambda x, y: x - y)

    def plus(self, other: Self) -> Self:
        """Figure-by-figure sum."""
        return self._with(other, lambda x, y: x + y)

    def scaled(self, factor: float) -> Self:
        """Every figure times ``factor`` (per second: 1 / the span in seconds)."""
        return self._with(self, lambda x, _y: x * factor)


@dataclass(frozen=True, slots=True)
class ModelTotals(_Figures):
    """AI usage of one (capped) model label."""

    requests: float = 0.0
    tokens_input: float = 0.0
    tokens_output: float = 0.0
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Totals(_Figures):
    """Every count the JSON API, signals and history read, since the process started."""

    # connections
    connections_opened: float = 0.0
    connections_closed: float = 0.0
    connections_failed: float = 0.0
    reconnections: float = 0.0
    # frames and messages
    messages_received: float = 0.0  # valid client frames, every type
    messages_sent: float = 0.0
    message_errors: float = 0.0  # error frames, every code
    frames_rejected: float = 0.0  # bad client frames, announced one by one or in summaries
    client_mistakes: float = 0.0  # rejected frames whose code is the client's mistake
    rejections_suppressed: float = 0.0  # the part of frames_rejected counted in summaries
    messages_handled: float = 0.0  # accepted messages fully handled (stored, replied or failed)
    messages_handled_ok: float = 0.0
    service_failures: float = 0.0  # failures the service caused: internal, ai_unavailable
    replies_cancelled: float = 0.0  # the visitor left mid-reply: no error
    replays: float = 0.0
    broadcasts: float = 0.0
    # AI (provider calls; cache hits are no calls)
    ai_requests: float = 0.0  # every outcome
    ai_failed: float = 0.0  # error, timeout, invalid_reply, circuit_open
    ai_cancelled: float = 0.0
    ai_budget_refused: float = 0.0
    ai_tokens_input: float = 0.0
    ai_tokens_output: float = 0.0
    ai_cost_usd: float = 0.0
    ai_unpriced: float = 0.0
    ai_retries: float = 0.0
    ai_fallbacks: float = 0.0
    # cache
    cache_hits: float = 0.0
    cache_misses: float = 0.0
    cache_evictions: float = 0.0
    # errors and security
    errors: float = 0.0
    security_events: float = 0.0
    # sessions that ended, and the messages they held
    sessions_ended: float = 0.0
    session_messages: float = 0.0
    # by label value
    errors_by_type: Mapping[str, float] = field(default_factory=dict)
    message_errors_by_code: Mapping[str, float] = field(default_factory=dict)
    security_by_type: Mapping[str, float] = field(default_factory=dict)
    quick_actions: Mapping[str, float] = field(default_factory=dict)
    features: Mapping[str, float] = field(default_factory=dict)
    ai_by_outcome: Mapping[str, float] = field(default_factory=dict)
    ai_by_model: Mapping[str, ModelTotals] = field(default_factory=dict)
