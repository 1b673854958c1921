"""Health: each named check, and the overall status as the worst of them."""

from __future__ import annotations

import asyncio

from chatwatch.clock import FakeClock
from chatwatch.events import EventBus
from chatwatch.observe.health import HealthChecker
from chatwatch.observe.metrics.recorder import ChatMetrics
from tests.observe import factory as f


async def up() -> bool:
    """A store that answers."""
    return True


async def down() -> bool:
    """A store that does not."""
    return False


async def hangs() -> bool:
    """A store that never answers."""
    await asyncio.sleep(3600)
    return True


async def test_all_well_is_healthy(metrics: ChatMetrics):
    """Store up, no AI calls, no lag, low memory: healthy, with every check shown."""
    body = await HealthChecker(up, metrics, memory_percent=lambda: 30.0).check()
    assert body["status"] == "healthy"
    assert set(body["checks"]) == {"store", "ai_provider", "event_loop", "memory"}
    assert all(c["status"] == "healthy" and c["detail"] for c in body["checks"].values())


async def test_store_down_is_unhealthy(metrics: ChatMetrics):
    """A store that answers False is unhealthy."""
    body = await HealthChecker(down, metrics, memory_percent=lambda: 30.0).check()
    assert body["status"] == "unhealthy"
    assert body["checks"]["store"]["status"] == "unhealthy"


async def test_store_that_hangs_times_out_unhealthy(metrics: ChatMetrics):
    """A hanging ping is cut off by the timeout and counts as down."""
    from chatwatch.observe.health import HealthThresholds

    checker = HealthChecker(
        hangs, metrics, thresholds=HealthThresholds(store_timeout=0.05), memory_percent=lambda: 1.0
    )
    assert (await checker.check())["checks"]["store"]["status"] == "unhealthy"


async def test_ai_error_rate_degrades_then_fails(bus: EventBus, metrics: ChatMetrics):
    """1 failure in 5 AI calls is degraded; 3 in 5 is unhealthy."""
    checker = HealthChecker(up, metrics, memory_percent=lambda: 30.0)
    for _ in range(4):
        bus.emit(f.ai_done())
    bus.emit(f.ai_failed())
    body = await checker.check()
    assert body["checks"]["ai_provider"]["status"] == "degraded"
    assert body["checks"]["ai_provider"]["error_rate"] == 0.2
    assert body["status"] == "degraded"
    for _ in range(5):
        bus.emit(f.ai_failed("timeout"))
    assert (await checker.check())["checks"]["ai_provider"]["status"] == "unhealthy"


async def test_loop_lag_and_memory_thresholds(metrics: ChatMetrics, clock: FakeClock):
    """Lag over 100 ms degrades, over 1 s fails; system memory over 97% fails."""
    checker = HealthChecker(up, metrics, memory_percent=lambda: 98.0)
    metrics.runtime.loop_lag_seconds = 0.2
    body = await checker.check()
    assert body["checks"]["event_loop"]["status"] == "degraded"
    assert body["checks"]["memory"]["status"] == "unhealthy"
    assert body["status"] == "unhealthy"
    metrics.runtime.loop_lag_seconds = 2.0
    assert (await checker.check())["checks"]["event_loop"]["status"] == "unhealthy"
