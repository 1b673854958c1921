"""Sliding windows over an injected clock: rates from counter snapshots, percentiles from sketches.

Neither kind of window costs anything per event on the chat path beyond a list append:

* ``SnapshotRing`` keeps periodic snapshots of cumulative totals (read from the Prometheus
  counters that are incremented anyway), so the growth over the window is the difference
  between now and the snapshot taken one window ago, like Prometheus' own ``increase()``.
* ``LatencyWindow`` buffers raw observations in a list and folds them into a DDSketch per
  time bucket when ``fold()`` runs (every tick and before every read); the buckets still
  inside the window are merged for p50/p95/p99 with DDSketch's relative-error guarantee.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ddsketch import DDSketch

from chatwatch.clock import Clock

__all__ = [
    "RELATIVE_ACCURACY",
    "LatencySummary",
    "LatencyWindow",
    "SnapshotRing",
    "bucket_step",
    "exact_quantile",
]

# 1% relative accuracy per sketch: a reported percentile is within 1% of an observed value of
# the right rank, which leaves room under the 2% the JSON API promises.
RELATIVE_ACCURACY = 0.01
QUANTILES = (0.5, 0.95, 0.99)
# Below a microsecond a duration is noise; clamping keeps DDSketch's dense store small
# (a single 1e-300 would otherwise stretch it over tens of thousands of empty bins).
_SMALLEST = 1e-6
T = TypeVar("T")


def bucket_step(window: float, buckets: int = 30) -> float:
    """The width of one time bucket: the window in ``buckets`` parts, never under a second."""
    return max(1.0, window / buckets)


def exact_quantile(values: Iterable[float], q: float) -> float | None:
    """The observed value of rank ``floor(q * (n - 1))``: the rank definition DDSketch uses."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[math.floor(q * (len(ordered) - 1))]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Percentiles in seconds over a window (None when it is empty) and the count behind them."""

    p50: float | None
    p95: float | None
    p99: float | None
    count: int

    def as_dict(self) -> dict[str, float | int | None]:
        """The SPEC §7 latency object."""
        return {"p50": self.p50, "p95": self.p95, "p99": self.p99, "count": self.count}


class LatencyWindow:
    """Observations over the last ``window`` seconds, one DDSketch per time bucket."""

    def __init__(self, clock: Clock, window: float, *, buckets: int = 30) -> None:
        self._clock = clock
        self.window = window
        self._step = bucket_step(window, buckets)
        self._span = math.ceil(window / self._step)
        self._pending: list[float] = []
        # The hot path appends here; bound once so a listener pays one attribute call.
        self.add = self._pending.append
        self._buckets: deque[tuple[int, DDSketch]] = deque()
        self._closed_cache: tuple[int, DDSketch] | None = None

    def _index(self) -> int:
        return math.floor(self._clock.monotonic() / self._step)

    def fold(self) -> None:
        """Move buffered observations into the current bucket's sketch and drop old buckets."""
        idx = self._index()
        if self._pending:
            values = self._pending[:]
            # Clear in place: ``self.add`` is bound to this very list.
            del self._pending[: len(values)]
            if not self._buckets or self._buckets[-1][0] != idx:
                self._buckets.append((idx, DDSketch(RELATIVE_ACCURACY)))
            sketch = self._buckets[-1][1]
            for v in values:
                sketch.add(v if v >= _SMALLEST else 0.0)
        oldest = idx - self._span + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()

    def clear(self) -> None:
        """Forget every observation (a reset starts a new window)."""
        self._pending.clear()
        self._buckets.clear()
        self._closed_cache = None

    def merged(self) -> DDSketch:
        """One sketch of everything in the window."""
        self.fold()
        idx = self._index()
        # Buckets before the current one no longer change: merge them once per bucket step.
        if self._closed_cache is None or self._closed_cache[0] != idx:
            closed = DDSketch(RELATIVE_ACCURACY)
            for i, sketch in self._buckets:
                if i < idx:
                    closed.merge(sketch)
            self._closed_cache = (idx, closed)
        total = DDSketch(RELATIVE_ACCURACY)
        total.merge(self._closed_cache[1])
        if self._buckets and self._buckets[-1][0] == idx:
            total.merge(self._buckets[-1][1])
        return total

    def summary(self) -> LatencySummary:
        """p50, p95, p99 and count over the window."""
        sketch = self.merged()
        count = int(sketch.count)
        if count == 0:
            return LatencySummary(None, None, None, 0)
        lo, hi = sketch._min, sketch._max  # exact extremes: clamp the estimates to them
        p50, p95, p99 = (min(hi, max(lo, sketch.get_quantile_value(q) or 0.0)) for q in QUANTILES)
        return LatencySummary(p50, p95, p99, count)


class SnapshotRing(Generic[T]):
    """Timed snapshots of a cumulative value, enough to difference it over one window."""

    def __init__(self, clock: Clock, window: float, *, step: float | None = None) -> None:
        self._clock = clock
        self.window = window
        self._step = step if step is not None else bucket_step(window, 60)
        self._snaps: deque[tuple[float, T]] = deque()

    def restart(self, value: T) -> None:
        """Drop history and take ``value`` as the baseline from now on."""
        self._snaps.clear()
        self._snaps.append((self._clock.monotonic(), value))

    def record(self, value: T) -> None:
        """Keep a snapshot of ``value`` if none was taken in the current step."""
        now = self._clock.monotonic()
        if not self._snaps or now - self._snaps[-1][0] >= self._step:
            self._snaps.append((now, value))
        # Keep exactly one snapshot at or before the window's start: the baseline.
        edge = now - self.window
        while len(self._snaps) >= 2 and self._snaps[1][0] <= edge:
            self._snaps.popleft()

    def baseline(self) -> tuple[T, float] | None:
        """The snapshot a window ago (or the oldest, if younger) and the seconds since it."""
        now = self._clock.monotonic()
        edge = now - self.window
        base = None
        for snap in self._snaps:
            if snap[0] <= edge or base is None:
                base = snap
            else:
                break
        if base is None:
            return None
        return base[1], now - base[0]
