"""The runtime monitor: lag, tasks, memory and CPU readings, and its background task."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from chatwatch.clock import FakeClock
from chatwatch.events import EventBus
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.metrics.runtime import RuntimeMonitor, read_process
from tests.observe import factory as f


def test_lag_shows_the_worst_recent_wake(registry: CollectorRegistry, metrics: ChatMetrics):
    """A stall stays visible for a few wakes, then quiet wakes replace it."""
    monitor = RuntimeMonitor(metrics, metrics.clock, interval=1.0, sample_every=3.0)
    monitor.record_lag(0.4)
    monitor.record_lag(0.001)
    assert registry.get_sample_value("chat_event_loop_lag_seconds") == 0.4
    for _ in range(3):
        monitor.record_lag(0.002)
    assert registry.get_sample_value("chat_event_loop_lag_seconds") == 0.002
    monitor.record_lag(-0.01)  # the loop's clock never reports early wakes as negative lag
    assert metrics.runtime.loop_lag_seconds == 0.002


async def test_sample_reads_tasks_memory_and_cpu(registry: CollectorRegistry, metrics: ChatMetrics):
    """A sample counts running tasks and reads this process's RSS."""
    monitor = RuntimeMonitor(metrics, metrics.clock)
    monitor.sample()
    assert metrics.runtime.asyncio_tasks is not None and metrics.runtime.asyncio_tasks >= 1
    assert registry.get_sample_value("chat_asyncio_tasks") == metrics.runtime.asyncio_tasks
    assert metrics.runtime.rss_bytes is not None and metrics.runtime.rss_bytes > 10_000_000
    rss, cpu = read_process()
    assert rss and cpu is not None and cpu >= 0


def test_step_ticks_the_windows_and_samples_when_due(
    bus: EventBus, metrics: ChatMetrics, clock: FakeClock
):
    """Each wake ticks the metrics windows; process samples come every sample_every seconds."""
    monitor = RuntimeMonitor(metrics, clock, interval=1.0, sample_every=5.0)
    monitor.step(0.0)
    first = metrics.runtime.sampled_at
    bus.emit(f.processed(0.3))
    clock.advance(1)
    monitor.step(0.0)
    assert metrics.latency.processing._pending == []  # folded by the tick
    assert metrics.runtime.sampled_at == first
    clock.advance(5)
    monitor.step(0.0)
    assert metrics.runtime.sampled_at == clock.time()


async def test_background_task_measures_lag_and_stops(metrics: ChatMetrics):
    """Started on a loop, the monitor measures a deliberate stall; stop() ends it."""
    monitor = RuntimeMonitor(metrics, metrics.clock, interval=0.01)
    monitor.start()
    await asyncio.sleep(0.005)
    time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop is what this test measures
    for _ in range(100):
        await asyncio.sleep(0.01)
        lag = metrics.runtime.loop_lag_seconds
        if lag is not None and lag >= 0.1:
            break
    await monitor.stop()
    assert metrics.runtime.loop_lag_seconds is not None
    assert metrics.runtime.loop_lag_seconds >= 0.1
    assert all(t.get_name() != "chatwatch-runtime-monitor" for t in asyncio.all_tasks())
