"""The JSON shapes of SPEC §7, built from one ``Reading`` of ``ChatMetrics``.

A count is ``{"total", "since_reset", "per_second"}``, a latency ``{"p50", "p95", "p99",
"count"}`` in seconds, a rate a fraction 0..1 — or null when nothing happened in the window
("no data", which alert rules neither fire nor resolve on). Every category carries
``window_seconds`` and ``reset_at``.
"""

from __future__ import annotations

import math
from typing import Any

from chatwatch.observe.metrics.recorder import ChatMetrics, Reading
from chatwatch.observe.metrics.runtime import read_process
from chatwatch.timefmt import format_time

__all__ = [
    "CATEGORIES",
    "all_categories",
    "category",
    "headline",
    "headline_of",
    "summary",
]

JSON = dict[str, Any]
CATEGORIES = ("connections", "messages", "ai", "users", "errors", "performance", "cache")


def _num(value: float, as_int: bool) -> float | int:
    if as_int:
        return round(value)
    return round(value, 9)


def _count(r: Reading, key: str, *, as_int: bool = True) -> JSON:
    return {
        "total": _num(r.totals.get(key, 0.0), as_int),
        "since_reset": _num(r.since_reset.get(key, 0.0), as_int),
        "per_second": round(r.per_second.get(key, 0.0), 6),
    }


def _ratio(part: float, whole: float) -> float | None:
    if whole <= 0:
        return None
    return round(min(1.0, max(0.0, part / whole)), 6)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _head(r: Reading) -> JSON:
    return {"window_seconds": r.window_seconds, "reset_at": format_time(r.reset_at)}


def connections(r: Reading) -> JSON:
    """The ``connections`` category."""
    g = r.window_growth
    opened, failed = g.get("connections.opened", 0.0), g.get("connections.failed", 0.0)
    return {
        **_head(r),
        "opened": _count(r, "connections.opened"),
        "closed": _count(r, "connections.closed"),
        "failed": _count(r, "connections.failed"),
        "reconnections": _count(r, "connections.reconnections"),
        "active": r.active_connections,
        "success_rate": _ratio(opened, opened + failed),
        "duration_seconds": r.latencies["connection_duration"].as_dict(),
    }


def messages(r: Reading) -> JSON:
    """The ``messages`` category."""
    g = r.window_growth
    return {
        **_head(r),
        "received": _count(r, "messages.received"),
        "sent": _count(r, "messages.sent"),
        "errors": _count(r, "messages.errors"),
        "broadcasts": _count(r, "messages.broadcasts"),
        "processing_seconds": r.latencies["processing"].as_dict(),
        "success_rate": _ratio(
            g.get("messages.processed_ok", 0.0), g.get("messages.processed", 0.0)
        ),
    }


def ai(r: Reading, models: list[str]) -> JSON:
    """The ``ai`` category, with usage by (capped) model label."""
    g = r.window_growth
    requests = g.get("ai.requests", 0.0)
    failed = g.get("ai.failed", 0.0)
    by_model = {
        m: {
            "requests": _count(r, f"ai.model.{m}.requests"),
            "tokens_input": _count(r, f"ai.model.{m}.tokens_input"),
            "tokens_output": _count(r, f"ai.model.{m}.tokens_output"),
            "cost_usd": _count(r, f"ai.model.{m}.cost_usd", as_int=False),
        }
        for m in models
    }
    return {
        **_head(r),
        "requests": _count(r, "ai.requests"),
        "failed": _count(r, "ai.failed"),
        "tokens_input": _count(r, "ai.tokens_input"),
        "tokens_output": _count(r, "ai.tokens_output"),
        "cost_usd": _count(r, "ai.cost_usd", as_int=False),
        "unpriced": _count(r, "ai.unpriced"),
        "cost_usd_24h": round(r.ai_cost_usd_24h, 9),
        "duration_seconds": r.latencies["ai_duration"].as_dict(),
        "time_to_first_token_seconds": r.latencies["ai_ttft"].as_dict(),
        "success_rate": None if requests <= 0 else _ratio(requests - failed, requests),
        "by_model": by_model,
    }


def _named_totals(r: Reading, prefix: str) -> dict[str, int]:
    cut = len(prefix) + 1
    return {k[cut:]: round(v) for k, v in r.totals.items() if k.startswith(prefix + ".")}


def users(r: Reading) -> JSON:
    """The ``users`` category."""
    mps = r.messages_per_session
    return {
        **_head(r),
        "active_users": r.active_users,
        "active_sessions": r.active_sessions,
        "session_duration_seconds": r.latencies["session_duration"].as_dict(),
        "messages_per_session": None if mps is None else round(mps, 6),
        "quick_actions": _named_totals(r, "users.quick_action"),
        "features": _named_totals(r, "users.feature"),
    }


def _error_rate(r: Reading) -> float | None:
    g = r.window_growth
    handled = g.get("messages.received", 0.0) + g.get("messages.rejected", 0.0)
    return _ratio(g.get("messages.errors", 0.0), handled)


def errors(r: Reading) -> JSON:
    """The ``errors`` category: by SPEC §7 type; the rate is error frames per handled frame."""
    types = [k[len("errors.type.") :] for k in r.totals if k.startswith("errors.type.")]
    return {
        **_head(r),
        "total": _count(r, "errors.total"),
        "by_type": {t: _count(r, f"errors.type.{t}") for t in types},
        "error_rate": _error_rate(r),
    }


def performance(r: Reading) -> JSON:
    """The ``performance`` category (process figures from the runtime monitor)."""
    rt = r.runtime
    rss, cpu = rt.rss_bytes, rt.cpu_percent
    if rss is None:  # the monitor has not sampled yet: read the process directly
        rss, cpu = read_process()
    return {
        **_head(r),
        "response_seconds": r.latencies["response"].as_dict(),
        "throughput_per_second": round(r.per_second.get("messages.processed", 0.0), 6),
        "memory_rss_bytes": rss,
        "cpu_percent": _finite(cpu),
        "event_loop_lag_seconds": _finite(rt.loop_lag_seconds),
        "asyncio_tasks": rt.asyncio_tasks,
    }


def cache(r: Reading) -> JSON:
    """The ``cache`` category."""
    g = r.window_growth
    hits, misses = g.get("cache.hits", 0.0), g.get("cache.misses", 0.0)
    return {
        **_head(r),
        "hits": _count(r, "cache.hits"),
        "misses": _count(r, "cache.misses"),
        "evictions": _count(r, "cache.evictions"),
        "hit_rate": _ratio(hits, hits + misses),
        "entries": r.cache_entries,
    }


def category(name: str, r: Reading, models: list[str]) -> JSON:
    """One category object by name."""
    if name == "ai":
        return ai(r, models)
    builders = {
        "connections": connections,
        "messages": messages,
        "users": users,
        "errors": errors,
        "performance": performance,
        "cache": cache,
    }
    return builders[name](r)


def all_categories(r: Reading, models: list[str]) -> JSON:
    """``{"connections": …, …, "cache": …}``."""
    return {name: category(name, r, models) for name in CATEGORIES}


def headline(r: Reading, active_alerts: int) -> JSON:
    """The headline figures: a history item's keys (besides ``timestamp``)."""
    return {
        "active_connections": r.active_connections,
        "active_users": r.active_users,
        "messages_per_second": round(r.per_second.get("messages.received", 0.0), 6),
        "error_rate": _error_rate(r),
        "response_p95_seconds": r.latencies["response"].p95,
        "ai_p95_seconds": r.latencies["ai_duration"].p95,
        "ai_cost_usd_24h": round(r.ai_cost_usd_24h, 9),
        "cache_hit_rate": cache(r)["hit_rate"],
        "active_alerts": active_alerts,
    }


def summary(r: Reading, status: str, active_alerts: int) -> JSON:
    """``metrics/summary``: health status plus the headline figures."""
    return {"status": status, **headline(r, active_alerts), **_head(r)}


def headline_of(metrics: ChatMetrics, active_alerts: int = 0) -> JSON:
    """The headline figures read now: what ``MetricsHistory`` stores every interval."""
    return headline(metrics.read(), active_alerts)
