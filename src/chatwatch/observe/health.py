"""Health: named checks, each healthy, degraded or unhealthy; the worst one is the status.

Checks: ``store`` (the database answers), ``error_rate`` (failures the service caused per
handled message over the metrics window), ``ai_provider`` (AI error rate over the window, and
the circuit breaker), ``event_loop`` (lag), ``memory`` (process RSS and system memory in use).
Every figure comes from one ``SignalReading``, so health says what the API and the alerts say.
Each check shows what it saw, so an operator reads why, not only that.

Client mistakes (bad frames, rate limiting) never degrade health, and a rate is only judged
once the window holds enough events: one failure of two messages is not an outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psutil

from chatwatch.clock import Clock, SystemClock
from chatwatch.observe.signals import SignalReading, Signals
from chatwatch.timefmt import format_time as iso_time

__all__ = ["DEGRADED", "HEALTHY", "UNHEALTHY", "HealthChecker", "HealthThresholds"]

HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"
_RANK = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """Where each check turns degraded and unhealthy (rates: strictly above the mark)."""

    error_rate_degraded: float = 0.05
    error_rate_unhealthy: float = 0.25
    # Handled messages the window must hold before the error rate is judged
    # (``metrics.health_min_messages``).
    min_messages: int = 20
    ai_error_rate_degraded: float = 0.10
    ai_error_rate_unhealthy: float = 0.50
    ai_min_calls: int = 5
    loop_lag_degraded: float = 0.10
    loop_lag_unhealthy: float = 1.0
    memory_percent_degraded: float = 90.0
    memory_percent_unhealthy: float = 97.0
    rss_bytes_degraded: int | None = None
    store_timeout: float = 2.0


def _at_least(value: float, degraded: float, unhealthy: float) -> str:
    if value >= unhealthy:
        return UNHEALTHY
    if value >= degraded:
        return DEGRADED
    return HEALTHY


def _above(value: float, degraded: float, unhealthy: float) -> str:
    if value > unhealthy:
        return UNHEALTHY
    if value > degraded:
        return DEGRADED
    return HEALTHY


def _worst(*statuses: str) -> str:
    return max(statuses, key=_RANK.__getitem__)


class HealthChecker:
    """Runs the checks on demand; each is cheap (the store ping is bounded by a timeout)."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[bool]],
        signals: Signals,
        *,
        thresholds: HealthThresholds | None = None,
        clock: Clock | None = None,
        memory_percent: Callable[[], float] | None = None,
    ) -> None:
        self._ping = ping
        self._signals = signals
        self.t = thresholds or HealthThresholds()
        self._clock = clock or signals.clock
        self._memory_percent = memory_percent or (lambda: float(psutil.virtual_memory().percent))

    async def check(self, reading: SignalReading | None = None) -> dict[str, Any]:
        """``{"status", "checked_at", "checks": {name: {"status", "detail", ...}}}``."""
        s = reading if reading is not None else self._signals.read()
        checks = {
            "store": await self._store(),
            "error_rate": self._errors(s),
            "ai_provider": self._ai(s),
            "event_loop": self._loop(s),
            "memory": self._memory(s),
        }
        status = _worst(*(c["status"] for c in checks.values()))
        return {"status": status, "checked_at": iso_time(self._clock.time()), "checks": checks}

    async def status(self, reading: SignalReading | None = None) -> str:
        """Only the overall status."""
        return str((await self.check(reading))["status"])

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

    def _errors(self, s: SignalReading) -> dict[str, Any]:
        handled, failures, rate = s.handled_messages, s.service_failures, s.error_rate
        window = f"the last {s.window_seconds:g} s"
        if rate is None:
            status, detail = HEALTHY, f"no messages handled in {window}"
        elif handled < self.t.min_messages:
            status = HEALTHY
            detail = (
                f"{failures} of {handled} messages failed in {window}: too few to judge "
                f"(at least {self.t.min_messages})"
            )
        else:
            status = _above(rate, self.t.error_rate_degraded, self.t.error_rate_unhealthy)
            detail = f"{failures} of {handled} messages failed by the service's fault in {window}"
        return {
            "status": status,
            "detail": detail,
            "error_rate": None if rate is None else round(rate, 6),
            "failures": failures,
            "handled_messages": handled,
            "min_messages": self.t.min_messages,
            # Shown, never judged: the client's mistakes are not the service's health.
            "client_error_rate": (
                None if s.client_error_rate is None else round(s.client_error_rate, 6)
            ),
        }

    def _ai(self, s: SignalReading) -> dict[str, Any]:
        calls, failed, rate = s.ai_calls, s.ai_failed, s.ai_error_rate
        window = f"the last {s.window_seconds:g} s"
        if rate is None:
            status, detail = HEALTHY, f"no AI calls in {window}"
        elif calls < self.t.ai_min_calls:
            status = HEALTHY
            detail = (
                f"{failed} of {calls} AI calls failed in {window}: too few to judge "
                f"(at least {self.t.ai_min_calls})"
            )
        else:
            status = _above(rate, self.t.ai_error_rate_degraded, self.t.ai_error_rate_unhealthy)
            detail = f"{failed} of {calls} AI calls failed in {window}"
        not_closed = {p: st for p, st in s.ai_circuit.items() if st != "closed"}
        if not_closed:
            status = _worst(status, DEGRADED)
            states = ", ".join(
                f"{p} {st.replace('_', ' ')}" for p, st in sorted(not_closed.items())
            )
            detail = f"circuit breaker not closed ({states}); {detail}"
        return {
            "status": status,
            "detail": detail,
            "error_rate": None if rate is None else round(rate, 6),
            "requests": calls,
            "failed": failed,
            "circuit": dict(s.ai_circuit),
        }

    def _loop(self, s: SignalReading) -> dict[str, Any]:
        lag = s.event_loop_lag_seconds
        if lag is None:
            return {"status": HEALTHY, "detail": "not measured yet", "lag_seconds": None}
        status = _at_least(lag, self.t.loop_lag_degraded, self.t.loop_lag_unhealthy)
        return {
            "status": status,
            "detail": f"the event loop wakes tasks {lag * 1e3:.1f} ms late",
            "lag_seconds": round(lag, 6),
        }

    def _memory(self, s: SignalReading) -> dict[str, Any]:
        rss = s.memory_rss_bytes
        percent = self._memory_percent()
        status = _at_least(percent, self.t.memory_percent_degraded, self.t.memory_percent_unhealthy)
        limit = self.t.rss_bytes_degraded
        if limit is not None and rss is not None and rss >= limit and status == HEALTHY:
            status = DEGRADED
        return {
            "status": status,
            "detail": f"system memory {percent:.0f}% in use",
            "rss_bytes": rss,
            "system_percent": round(percent, 1),
        }
