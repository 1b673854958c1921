"""Runtime readings: event-loop lag, asyncio task count, process memory and CPU.

One background task wakes every ``interval`` seconds: how late it wakes is the loop lag (the
time a ready callback waited for the loop). On each wake it also ticks ``ChatMetrics`` (window
snapshots). Counting tasks and reading /proc are cheaper still, but are done only every
``sample_every`` seconds since nothing needs them fresher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import psutil

from chatwatch.clock import Clock
from chatwatch.observe.logs import get_logger
from chatwatch.observe.metrics.recorder import ChatMetrics

__all__ = ["RuntimeMonitor", "read_process"]

_PROCESS: psutil.Process | None = None
_log = get_logger("metrics")
# A wake later than this is worth a log record of its own (the gauge shows every lag).
_BLOCKED_LOOP_SECONDS = 0.25


def _process() -> psutil.Process:
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = psutil.Process()
        _PROCESS.cpu_percent(None)  # the first call only primes the CPU counter
    return _PROCESS


def read_process() -> tuple[int | None, float | None]:
    """This process's resident memory in bytes and CPU percent since the previous call."""
    try:
        proc = _process()
        with proc.oneshot():
            return int(proc.memory_info().rss), float(proc.cpu_percent(None))
    except psutil.Error:
        return None, None


class RuntimeMonitor:
    """Measures the event loop and the process; keeps ``ChatMetrics`` windows ticking."""

    def __init__(
        self,
        metrics: ChatMetrics,
        clock: Clock,
        *,
        interval: float = 0.5,
        sample_every: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self.sample_every = sample_every
        # The published lag is the worst of the last few wakes, so a stall stays visible
        # for a few seconds instead of being overwritten by the next quiet wake.
        self._lags: deque[float] = deque(maxlen=max(1, round(sample_every / interval)))
        self._task: asyncio.Task[None] | None = None
        self._last_sample: float | None = None

    def start(self) -> None:
        """Start the background task on the running loop."""
        if self._task is None or self._task.done():
            self.sample()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="chatwatch-runtime-monitor"
            )

    async def stop(self) -> None:
        """Stop the background task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def record_lag(self, lag: float) -> None:
        """Publish one lag measurement (seconds)."""
        self._lags.append(max(0.0, lag))
        worst = max(self._lags)
        self.metrics.runtime.loop_lag_seconds = worst
        self.metrics.i.event_loop_lag.set(worst)

    def sample(self) -> None:
        """Read task count, memory and CPU now."""
        readings = self.metrics.runtime
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # no running loop (called from a plain test)
            tasks = 0
        readings.asyncio_tasks = tasks
        self.metrics.i.asyncio_tasks.set(tasks)
        readings.rss_bytes, readings.cpu_percent = read_process()
        readings.sampled_at = self.clock.time()
        self._last_sample = self.clock.monotonic()

    def step(self, lag: float) -> None:
        """One wake of the monitor: lag, window tick and, when due, a process sample."""
        self.record_lag(lag)
        self.metrics.tick()
        last = self._last_sample
        if last is None or self.clock.monotonic() - last >= self.sample_every:
            self.sample()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Lag is physical: measure it on the loop's own clock, not the injected one.
            started = loop.time()
            await asyncio.sleep(self.interval)
            lag = loop.time() - started - self.interval
            if lag >= _BLOCKED_LOOP_SECONDS:
                _log.warning(
                    "performance.event_loop_blocked", component="metrics", duration_ms=lag * 1e3
                )
            try:
                self.step(lag)
            except Exception:  # a monitoring hiccup must never end the monitor
                _log.exception("error.runtime_monitor", component="metrics")
