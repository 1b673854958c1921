"""Health: named checks, each healthy, degraded or unhealthy; the worst one is the status.

Checks: ``store`` (the database answers), ``ai_provider`` (recent AI error rate over the metrics
window), ``event_loop`` (lag), ``memory`` (process RSS and system memory in use). Each check
shows what it saw, so an operator reads why, not only that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil

from chatwatch.clock import Clock, SystemClock
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.metrics.runtime import read_process
from chatwatch.timefmt import format_time as iso_time

__all__ = ["HEALTHY", "HealthChecker", "HealthThresholds"]

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """Where each check turns degraded and unhealthy."""

    ai_error_rate_degraded: float = 0.10
    ai_error_rate_unhealthy: float = 0.50
    loop_lag_degraded: float = 0.10
    loop_lag_unhealthy: float = 1.0
    memory_percent_degraded: float = 90.0
    memory_percent_unhealthy: float = 97.0
    rss_bytes_degraded: int | None = None
    store_timeout: float = 2.0


def _level(value: float, degraded: float, unhealthy: float) -> str:
    if value >= unhealthy:
        return UNHEALTHY
    if value >= degraded:
        return DEGRADED
    return HEALTHY


class HealthChecker:
    """Runs the checks on demand; each is cheap (the store ping is bounded by a timeout)."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[bool]],
        metrics: ChatMetrics,
        *,
        thresholds: HealthThresholds | None = None,
        clock: Clock | None = None,
        memory_percent: Callable[[], float] | None = None,
    ) -> None:
        self._ping = ping
        self._metrics = metrics
        self.t = thresholds or HealthThresholds()
        self._clock = clock or metrics.clock
        self._memory_percent = memory_percent or (lambda: float(psutil.virtual_memory().percent))

    async def check(self) -> dict[str, Any]:
        """``{"status", "checked_at", "checks": {name: {"status", "detail", ...}}}``."""
        checks = {
            "store": await self._store(),
            "ai_provider": self._ai(),
            "event_loop": self._loop(),
            "memory": self._memory(),
        }
        status = max((c["status"] for c in checks.values()), key=_RANK.__getitem__)
        return {"status": status, "checked_at": iso_time(self._clock.time()), "checks": checks}

    async def status(self) -> str:
        """Only the overall status."""
        return str((await self.check())["status"])

    async def _store(self) -> dict[str, Any]:
        started = SystemClock().monotonic()
        try:
            async with asyncio.timeout(self.t.store_timeout):
                ok = await self._ping()
        except Exception:
            ok = False
        took = SystemClock().monotonic() - started
        return {
            "status": HEALTHY if ok else UNHEALTHY,
            "detail": "the database answers" if ok else "the database does not answer",
            "latency_seconds": round(took, 6),
        }

    def _ai(self) -> dict[str, Any]:
        r = self._metrics.read()
        requests = r.window_growth.get("ai.requests", 0.0)
        failed = r.window_growth.get("ai.failed", 0.0)
        if requests <= 0:
            return {
                "status": HEALTHY,
                "detail": "no AI calls in the window",
                "error_rate": None,
                "requests": 0,
            }
        rate = failed / requests
        status = _level(rate, self.t.ai_error_rate_degraded, self.t.ai_error_rate_unhealthy)
        return {
            "status": status,
            "detail": f"{int(failed)} of {int(requests)} AI calls failed in the last "
            f"{int(r.window_seconds)} s",
            "error_rate": round(rate, 6),
            "requests": int(requests),
        }

    def _loop(self) -> dict[str, Any]:
        lag = self._metrics.runtime.loop_lag_seconds
        if lag is None:
            return {"status": HEALTHY, "detail": "not measured yet", "lag_seconds": None}
        status = _level(lag, self.t.loop_lag_degraded, self.t.loop_lag_unhealthy)
        return {
            "status": status,
            "detail": f"the event loop wakes tasks {lag * 1e3:.1f} ms late",
            "lag_seconds": round(lag, 6),
        }

    def _memory(self) -> dict[str, Any]:
        rss = self._metrics.runtime.rss_bytes
        if rss is None:
            rss, _ = read_process()
        percent = self._memory_percent()
        status = _level(percent, self.t.memory_percent_degraded, self.t.memory_percent_unhealthy)
        limit = self.t.rss_bytes_degraded
        if limit is not None and rss is not None and rss >= limit and status == HEALTHY:
            status = DEGRADED
        return {
            "status": status,
            "detail": f"system memory {percent:.0f}% in use",
            "rss_bytes": rss,
            "system_percent": round(percent, 1),
        }
