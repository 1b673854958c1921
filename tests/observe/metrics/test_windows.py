"""Sliding-window arithmetic with an injected clock, and sketch percentiles against exact ones."""

from __future__ import annotations

import random

import pytest

from chatwatch.clock import FakeClock
from chatwatch.events import EventBus
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.metrics.windows import LatencyWindow, SnapshotRing, exact_quantile
from tests.observe import factory as f


def run_for(metrics: ChatMetrics, clock: FakeClock, seconds: int) -> None:
    """Let ``seconds`` pass with the once-a-second tick the runtime monitor would give."""
    for _ in range(seconds):
        clock.advance(1)
        metrics.tick()


def test_rate_counts_only_events_inside_the_window(
    bus: EventBus, metrics: ChatMetrics, clock: FakeClock
):
    """Events older than the 300 s window stop counting towards per_second."""
    for _ in range(30):
        bus.emit(f.received())
    run_for(metrics, clock, 200)
    for _ in range(60):
        bus.emit(f.received())
    run_for(metrics, clock, 150)  # the first 30 are now 350 s old
    r = metrics.read()
    assert r.window.messages_received == 60
    assert r.per_second.messages_received == pytest.approx(60 / 300)
    assert r.totals.messages_received == 90


def test_rate_of_a_young_process_is_over_its_age(
    bus: EventBus, metrics: ChatMetrics, clock: FakeClock
):
    """Before a whole window has passed, the rate is over the time since start."""
    run_for(metrics, clock, 20)
    for _ in range(10):
        bus.emit(f.received())
    r = metrics.read()
    assert r.per_second.messages_received == pytest.approx(10 / 20)


def test_a_gap_without_ticks_averages_over_the_gap(clock: FakeClock):
    """With no snapshot inside the window, the rate spans back to the last one, not inflated."""
    ring: SnapshotRing[int] = SnapshotRing(clock, window=60, step=1)
    ring.restart(0)
    clock.advance(600)
    assert ring.baseline() == (0, 600)  # growth 120 over 600 s: 0.2/s, not 120/60


def test_snapshot_ring_keeps_one_baseline_before_the_window(clock: FakeClock):
    """Old snapshots are pruned, but the one at the window's start is kept."""
    ring: SnapshotRing[int] = SnapshotRing(clock, window=10, step=1)
    ring.restart(0)
    for n in range(1, 101):
        clock.advance(1)
        ring.record(n)
    assert len(ring._snaps) <= 12
    assert ring.baseline() == (90, 10)


def test_latency_window_forgets_observations_older_than_the_window(clock: FakeClock):
    """Percentiles cover only the last window (to a bucket's width)."""
    w = LatencyWindow(clock, window=60, buckets=6)  # 10 s buckets
    for _ in range(100):
        w.add(5.0)
    w.fold()
    clock.advance(30)
    for _ in range(10):
        w.add(1.0)
    assert w.summary().count == 110
    clock.advance(40)  # the 5.0s are 70 s old now, the 1.0s 40 s
    s = w.summary()
    assert s.count == 10
    assert s.p50 == pytest.approx(1.0, rel=0.01)
    clock.advance(60)
    assert w.summary().count == 0
    assert w.summary().p99 is None


def test_empty_window_reports_null_percentiles(clock: FakeClock):
    """An empty window has count 0 and null p50/p95/p99."""
    assert LatencyWindow(clock, 300).summary().as_dict() == {
        "p50": None,
        "p95": None,
        "p99": None,
        "count": 0,
    }


def test_observations_are_readable_before_any_tick(clock: FakeClock):
    """A read folds what the hot path buffered, so nothing waits for the monitor."""
    w = LatencyWindow(clock, 300)
    w.add(0.2)
    s = w.summary()
    assert s.count == 1 and s.p50 == pytest.approx(0.2)


def test_sub_microsecond_and_negative_durations_count_as_zero(clock: FakeClock):
    """Noise below a microsecond cannot blow up the sketch's dense store."""
    w = LatencyWindow(clock, 300)
    for v in (1e-300, -0.5, 0.0):
        w.add(v)
    s = w.summary()
    assert s.count == 3 and s.p99 == 0.0


DISTRIBUTIONS = {
    "lognormal": lambda rng: rng.lognormvariate(-1.0, 1.2),
    "uniform": lambda rng: rng.uniform(0.001, 5.0),
    "exponential": lambda rng: rng.expovariate(4.0),
    "bimodal": lambda rng: rng.gauss(0.05, 0.005) if rng.random() < 0.9 else rng.gauss(3, 0.3),
}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_sketch_percentiles_are_within_two_percent_of_exact(clock: FakeClock, dist: str, seed: int):
    """p50/p95/p99 from merged per-bucket DDSketches are within 2% of the exact percentiles."""
    rng = random.Random(seed)
    w = LatencyWindow(clock, window=300)
    values = []
    for _ in range(20):  # spread over many buckets, so merging is exercised too
        for _ in range(500):
            v = abs(DISTRIBUTIONS[dist](rng))
            values.append(v)
            w.add(v)
        clock.advance(10)
        w.fold()
    s = w.summary()
    assert s.count == len(values)
    for q, got in ((0.5, s.p50), (0.95, s.p95), (0.99, s.p99)):
        exact = exact_quantile(values, q)
        assert exact is not None and got is not None
        assert abs(got - exact) <= 0.02 * exact, (q, got, exact)


def test_reset_starts_a_new_window(bus: EventBus, metrics: ChatMetrics, clock: FakeClock):
    """After reset: since_reset and window figures restart, totals do not."""
    for _ in range(5):
        bus.emit(f.processed(2.0))
        bus.emit(f.received())
    run_for(metrics, clock, 10)
    metrics.reset()
    run_for(metrics, clock, 10)
    bus.emit(f.processed(0.1))
    r = metrics.read()
    assert r.totals.messages_handled == 6
    assert r.since_reset.messages_handled == 1
    assert r.window.messages_received == 0
    assert r.latencies.processing.count == 1
    assert r.latencies.processing.p99 == pytest.approx(0.1)
    assert r.reset_at == clock.time() - 10


def test_messages_per_session_is_the_mean_since_reset(
    bus: EventBus, metrics: ChatMetrics, clock: FakeClock
):
    """Mean messages over sessions ended since the last reset; None before any."""
    assert metrics.read().messages_per_session is None
    bus.emit(f.session_ended("a", messages=2))
    bus.emit(f.session_ended("b", messages=6))
    assert metrics.read().messages_per_session == 4
    metrics.reset()
    bus.emit(f.session_ended("c", messages=1))
    assert metrics.read().messages_per_session == 1


def test_ai_cost_over_24_hours_forgets_older_spend(
    bus: EventBus, metrics: ChatMetrics, clock: FakeClock
):
    """``ai_cost_usd_24h`` counts the last day only, whatever the JSON window or resets."""
    bus.emit(f.ai_done(cost=3.0))
    for _ in range(13):
        clock.advance(3600)
        metrics.tick()
    bus.emit(f.ai_done(cost=1.5))
    metrics.reset()
    assert metrics.read().ai_cost_usd_24h == pytest.approx(4.5)
    for _ in range(12):
        clock.advance(3600)
        metrics.tick()
    assert metrics.read().ai_cost_usd_24h == pytest.approx(1.5)
