"""A token bucket: the per-connection message rate limit."""

from __future__ import annotations

from chatwatch.clock import Clock

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``per_minute`` events a minute, with bursts up to that many."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._tokens = float(per_minute)
        self._clock = clock
        self._last = clock.monotonic()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty."""
        now = self._clock.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
