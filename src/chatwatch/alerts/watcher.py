"""The watcher is watched: signals about alerting and logging themselves, beside the chat's.

``WatcherSource`` wraps the service's signal source and adds three series:

* ``alert_outbox_backlog``: notifications queued or being sent for longer than
  ``BACKLOG_AGE`` (a channel that keeps failing, or a dispatcher that stopped);
* ``log_records_dropped_per_minute``: growth of ``chat_log_records_dropped_total`` over the
  last minute (records the log store never got);
* ``data_dir_free_bytes``: free space where ``server.data_dir`` lives.

The backlog needs a database query, so it is taken in ``refresh()`` (the engine awaits it
before each reading); the others are read in ``read()``. A probe that fails gives no data
for its signal, never a failed evaluation.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from chatwatch.alerts.signals_port import SIGNALS, SignalReading, SignalSource, StaticReading
from chatwatch.clock import Clock
from chatwatch.observe.logs.pipeline import get_logger

__all__ = [
    "BACKLOG_AGE",
    "DroppedPerMinute",
    "WatcherSource",
    "disk_free",
]

BACKLOG_AGE = 300.0  # a notification waiting longer than this counts as backlog
_MINUTE = 60.0
_log = get_logger("alerts")


def disk_free(path: Path) -> Callable[[], float | None]:
    """A probe of the free bytes on ``path``'s file system (None when it cannot be read)."""

    def probe() -> float | None:
        try:
            return float(shutil.disk_usage(path).free)
        except OSError:
            return None

    return probe


class DroppedPerMinute:
    """How much a cumulative counter grew over the last minute, from samples at each read."""

    def __init__(self, total: Callable[[], float], clock: Clock) -> None:
        self.total = total
        self.clock = clock
        self._samples: deque[tuple[float, float]] = deque()

    def read(self) -> float:
        """The growth since the newest sample at least a minute old (or the first sample)."""
        now, total = self.clock.monotonic(), self.total()
        self._samples.append((now, total))
        # Keep one sample at or before the minute's start as the baseline.
        while len(self._samples) > 1 and self._samples[1][0] <= now - _MINUTE:
            self._samples.popleft()
        base = self._samples[0][1]
        return max(0.0, total - base)


class WatcherSource:
    """The wrapped source's reading plus the watcher's own signals."""

    def __init__(
        self,
        inner: SignalSource,
        clock: Clock,
        *,
        outbox_backlog: Callable[[float], Awaitable[int]] | None = None,
        dropped: DroppedPerMinute | None = None,
        free_bytes: Callable[[], float | None] | None = None,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.outbox_backlog = outbox_backlog
        self.dropped = dropped
        self.free_bytes = free_bytes
        self._backlog: float | None = None

    async def refresh(self) -> None:
        """Count the outbox backlog (awaited by the engine before each reading)."""
        if self.outbox_backlog is None:
            return
        try:
            self._backlog = float(await self.outbox_backlog(self.clock.time() - BACKLOG_AGE))
        except Exception:
            self._backlog = None
            _log.exception("error.alert_outbox_backlog")

    def read(self) -> SignalReading:
        """The inner reading with ``alert_outbox_backlog``, ``log_records_dropped_per_minute``
        and ``data_dir_free_bytes`` set (those without a probe are absent: no data)."""
        inner = self.inner.read()
        out = inner if isinstance(inner, StaticReading) else _copy(inner)
        if self.outbox_backlog is not None:
            out.set("alert_outbox_backlog", self._backlog)
        if self.dropped is not None:
            out.set("log_records_dropped_per_minute", self.dropped.read())
        if self.free_bytes is not None:
            out.set("data_dir_free_bytes", self.free_bytes())
        return out


def _copy(reading: SignalReading) -> StaticReading:
    """A reading of another shape as a ``StaticReading`` (only the catalogue's signals)."""
    out = StaticReading()
    for name in SIGNALS:
        rows = list(reading.series(name))
        if rows:
            out.data[name] = rows
    return out
