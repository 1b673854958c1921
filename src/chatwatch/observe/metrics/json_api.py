"""The JSON shapes of SPEC §7, built from one ``SignalReading`` (and the metrics reading in it).

A count is ``{"total", "since_reset", "per_second"}``, a latency ``{"p50", "p95", "p99",
"count"}`` in seconds, a rate a fraction 0..1 — or null when nothing happened in the window
("no data", which alert rules neither fire nor resolve on). Every category carries
``window_seconds`` and ``reset_at``. Rates that are alert signals are never computed here:
they are the signals' own (``chatwatch.observe.signals``), so the API, health, history and
alerts cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from chatwatch.observe.metrics.labels import AI_OUTCOMES
from chatwatch.observe.metrics.recorder import Reading
from chatwatch.observe.metrics.runtime import read_process
from chatwatch.observe.metrics.totals import ModelTotals, Totals
from chatwatch.timefmt import format_time

if TYPE_CHECKING:
    from chatwatch.observe.security import RecentSecurity
    from chatwatch.observe.signals import IntervalCounts, SignalReading

__all__ = [
    "CATEGORIES",
    "all_categories",
    "category",
    "headline",
    "history_item",
    "security",
    "summary",
]

JSON = dict[str, Any]
CATEGORIES = ("connections", "messages", "ai", "users", "errors", "performance", "cache")


def _num(value: float, as_int: bool) -> float | int:
    if as_int:
        return round(value)
    return round(value, 9)


def _count(r: Reading, get: Callable[[Totals], float], *, as_int: bool = True) -> JSON:
    return {
        "total": _num(get(r.totals), as_int),
        "since_reset": _num(get(r.since_reset), as_int),
        "per_second": round(get(r.per_second), 6),
    }


def _of_label(get: Callable[[Totals], Mapping[str, float]], key: str) -> Callable[[Totals], float]:
    """One label value's figure (0 where that value had not been seen yet)."""
    return lambda t: get(t).get(key, 0.0)


def _by_label(
    r: Reading, get: Callable[[Totals], Mapping[str, float]], keys: Iterable[str] = ()
) -> JSON:
    """A count object per label value: ``keys`` and every value bound since start."""
    names = dict.fromkeys([*keys, *get(r.totals)])
    return {k: _count(r, _of_label(get, k)) for k in names}


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _head(r: Reading) -> JSON:
    return {"window_seconds": r.window_seconds, "reset_at": format_time(r.reset_at)}


def connections(s: SignalReading) -> JSON:
    """The ``connections`` category."""
    r = s.metrics
    return {
        **_head(r),
        "opened": _count(r, lambda t: t.connections_opened),
        "closed": _count(r, lambda t: t.connections_closed),
        "failed": _count(r, lambda t: t.connections_failed),
        "reconnections": _count(r, lambda t: t.reconnections),
        "active": r.active_connections,
        "success_rate": _rate(s.connection_success_rate),
        "duration_seconds": r.latencies.connection_duration.as_dict(),
    }


def messages(s: SignalReading) -> JSON:
    """The ``messages`` category (a cancelled reply is counted, and is no error)."""
    r = s.metrics
    w = r.window
    handled_ok = w.messages_handled_ok
    return {
        **_head(r),
        "received": _count(r, lambda t: t.messages_received),
        "sent": _count(r, lambda t: t.messages_sent),
        "errors": _count(r, lambda t: t.message_errors),
        "broadcasts": _count(r, lambda t: t.broadcasts),
        "handled": _count(r, lambda t: t.messages_handled),
        "rejected": _count(r, lambda t: t.frames_rejected),
        "suppressed": _count(r, lambda t: t.rejections_suppressed),
        "cancelled": _count(r, lambda t: t.replies_cancelled),
        "replays": _count(r, lambda t: t.replays),
        "processing_seconds": r.latencies.processing.as_dict(),
        "success_rate": _rate(None if w.messages_handled <= 0 else handled_ok / w.messages_handled),
    }


def _model(r: Reading, model: str) -> JSON:
    def get(pick: Callable[[ModelTotals], float]) -> Callable[[Totals], float]:
        return lambda t: pick(t.ai_by_model.get(model, ModelTotals()))

    return {
        "requests": _count(r, get(lambda m: m.requests)),
        "tokens_input": _count(r, get(lambda m: m.tokens_input)),
        "tokens_output": _count(r, get(lambda m: m.tokens_output)),
        "cost_usd": _count(r, get(lambda m: m.cost_usd), as_int=False),
    }


def _budget(r: Reading) -> JSON | None:
    b = r.budget
    if b is None:
        return None
    return {
        "state": b.state,
        "day": b.day,
        "spent_usd": round(b.spent_usd, 9),
        "budget_usd": b.budget_usd,
        "used_ratio": round(b.used_ratio, 6),
    }


def ai(s: SignalReading) -> JSON:
    """The ``ai`` category, with usage by (capped) model label and calls by outcome."""
    r = s.metrics
    by_outcome = _by_label(r, lambda t: t.ai_by_outcome, AI_OUTCOMES)
    return {
        **_head(r),
        "requests": _count(r, lambda t: t.ai_requests),
        "failed": _count(r, lambda t: t.ai_failed),
        "cancelled": _count(r, lambda t: t.ai_cancelled),
        "budget_exceeded": _count(r, lambda t: t.ai_budget_refused),
        "retries": _count(r, lambda t: t.ai_retries),
        "fallbacks": _count(r, lambda t: t.ai_fallbacks),
        "tokens_input": _count(r, lambda t: t.ai_tokens_input),
        "tokens_output": _count(r, lambda t: t.ai_tokens_output),
        "cost_usd": _count(r, lambda t: t.ai_cost_usd, as_int=False),
        "unpriced": _count(r, lambda t: t.ai_unpriced),
        "cost_usd_24h": round(s.ai_cost_usd_24h, 9),
        "duration_seconds": r.latencies.ai_duration.as_dict(),
        "time_to_first_token_seconds": r.latencies.ai_ttft.as_dict(),
        "success_rate": None if s.ai_error_rate is None else _rate(1.0 - s.ai_error_rate),
        "error_rate": _rate(s.ai_error_rate),
        "by_outcome": by_outcome,
        "by_model": {m: _model(r, m) for m in r.model_labels},
        "circuit_state": dict(r.circuit),
        "budget": _budget(r),
    }


def users(s: SignalReading) -> JSON:
    """The ``users`` category."""
    r = s.metrics
    mps = r.messages_per_session
    return {
        **_head(r),
        "active_users": r.active_users,
        "active_sessions": r.active_sessions,
        "session_duration_seconds": r.latencies.session_duration.as_dict(),
        "messages_per_session": None if mps is None else round(mps, 6),
        "quick_actions": {k: round(v) for k, v in r.totals.quick_actions.items()},
        "features": {k: round(v) for k, v in r.totals.features.items()},
    }


def errors(s: SignalReading) -> JSON:
    """The ``errors`` category: by SPEC §7 type, the service's failures and the client's
    mistakes counted apart, each with its own rate."""
    r = s.metrics
    return {
        **_head(r),
        "total": _count(r, lambda t: t.errors),
        "by_type": _by_label(r, lambda t: t.errors_by_type),
        "by_code": _by_label(r, lambda t: t.message_errors_by_code),
        "service_failures": _count(r, lambda t: t.service_failures),
        "client_errors": _count(r, lambda t: t.client_mistakes),
        "error_rate": _rate(s.error_rate),
        "client_error_rate": _rate(s.client_error_rate),
    }


def performance(s: SignalReading) -> JSON:
    """The ``performance`` category (process figures from the runtime monitor)."""
    r = s.metrics
    rt = r.runtime
    cpu = rt.cpu_percent
    if rt.rss_bytes is None:  # the monitor has not sampled yet: read the process directly
        _, cpu = read_process()
    return {
        **_head(r),
        "response_seconds": r.latencies.response.as_dict(),
        "throughput_per_second": round(r.per_second.messages_handled, 6),
        "memory_rss_bytes": s.memory_rss_bytes,
        "cpu_percent": _finite(cpu),
        "event_loop_lag_seconds": _finite(s.event_loop_lag_seconds),
        "asyncio_tasks": rt.asyncio_tasks,
    }


def cache(s: SignalReading) -> JSON:
    """The ``cache`` category."""
    r = s.metrics
    return {
        **_head(r),
        "hits": _count(r, lambda t: t.cache_hits),
        "misses": _count(r, lambda t: t.cache_misses),
        "evictions": _count(r, lambda t: t.cache_evictions),
        "hit_rate": _rate(s.cache_hit_rate),
        "entries": r.cache_entries,
    }


_BUILDERS: dict[str, Callable[[SignalReading], JSON]] = {
    "connections": connections,
    "messages": messages,
    "ai": ai,
    "users": users,
    "errors": errors,
    "performance": performance,
    "cache": cache,
}


def category(name: str, s: SignalReading) -> JSON:
    """One category object by name."""
    return _BUILDERS[name](s)


def all_categories(s: SignalReading) -> JSON:
    """``{"connections": …, …, "cache": …}``."""
    return {name: category(name, s) for name in CATEGORIES}


def headline(s: SignalReading, active_alerts: int) -> JSON:
    """The headline figures: a history item's keys (besides ``timestamp``)."""
    r = s.metrics
    return {
        "active_connections": s.active_connections,
        "active_users": r.active_users,
        "messages_per_second": round(s.messages_per_second, 6),
        "error_rate": _rate(s.error_rate),
        "client_error_rate": _rate(s.client_error_rate),
        "response_p95_seconds": s.response_time_p95_seconds,
        "ai_p95_seconds": s.ai_response_time_p95_seconds,
        "ai_error_rate": _rate(s.ai_error_rate),
        "ai_cost_usd_24h": round(s.ai_cost_usd_24h, 9),
        "cache_hit_rate": _rate(s.cache_hit_rate),
        "active_alerts": active_alerts,
    }


def summary(s: SignalReading, status: str, active_alerts: int) -> JSON:
    """``metrics/summary``: health status plus the headline figures."""
    return {"status": status, **headline(s, active_alerts), **_head(s.metrics)}


def history_item(s: SignalReading, interval: IntervalCounts, active_alerts: int = 0) -> JSON:
    """What ``MetricsHistory`` stores each interval: the headline figures, and the counts of
    the interval itself (so a later SLO burn-rate engine can sum them across items)."""
    return {**headline(s, active_alerts), "interval": interval.as_dict()}


def security(s: SignalReading, recent: RecentSecurity) -> JSON:
    """The security summary: events by type as count objects over the metrics window, and
    the last minute's per-IP figures under ``recent`` with that window's own length."""
    r = s.metrics
    return {
        **_head(r),
        "by_type": _by_label(r, lambda t: t.security_by_type),
        "recent": {
            "window_seconds": recent.window_seconds,
            "auth_failures": recent.auth_failures,
            "auth_failures_per_minute": round(s.auth_failures_per_minute, 6),
            "top_ips": [
                {"client_ip": ip.client_ip, "events": ip.events, "auth_failures": ip.auth_failures}
                for ip in recent.top_ips
            ],
            "tracked_ips": recent.tracked_ips,
        },
    }
