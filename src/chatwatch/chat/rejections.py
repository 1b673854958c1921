"""Which rejected frames are reported one by one, and which are only counted.

A client that floods a socket with bad frames would otherwise write three log records per
frame and push genuine records out of the log store. The first ``burst`` rejections of
each ``interval`` are reported individually (an operator sees what the client sent); the
rest are counted per error code and reported as one summary when the interval is over or
the connection closes. Every rejection still gets its error frame and is still counted in
the metrics (through the summary's counts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from chatwatch.clock import Clock

__all__ = ["RejectionSummary", "RejectionThrottle"]


@dataclass(frozen=True, slots=True)
class RejectionSummary:
    """Rejections counted but not reported one by one, by error code."""

    count: int
    by_code: tuple[tuple[str, int], ...]
    interval_s: float


class RejectionThrottle:
    """Per connection: report the first ``burst`` rejections an interval, count the rest."""

    def __init__(self, clock: Clock, *, burst: int = 10, interval: float = 60.0) -> None:
        self._clock = clock
        self._burst = burst
        self._interval = interval
        self._started = clock.monotonic()
        self._reported = 0
        self._suppressed: Counter[str] = Counter()

    def admit(self, code: str) -> tuple[bool, RejectionSummary | None]:
        """Whether to report this rejection individually, and a summary that is due."""
        due = None
        now = self._clock.monotonic()
        if now - self._started >= self._interval:
            due = self.flush()
            self._started = now
            self._reported = 0
        if self._reported < self._burst:
            self._reported += 1
            return True, due
        self._suppressed[code] += 1
        return False, due

    def flush(self) -> RejectionSummary | None:
        """The pending summary (None when nothing was suppressed); starts counting anew."""
        if not self._suppressed:
            return None
        summary = RejectionSummary(
            count=sum(self._suppressed.values()),
            by_code=tuple(sorted(self._suppressed.items())),
            interval_s=self._clock.monotonic() - self._started,
        )
        self._suppressed.clear()
        return summary
