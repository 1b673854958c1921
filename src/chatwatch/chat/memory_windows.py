"""The ``limits`` package's moving-window storage, in process memory, on an injected clock.

Used instead of the package's own ``MemoryStorage``, whose expiry task, started again
after each hit, visits every key with a thread hop per key: measured at 60–95 % of a core
at 100–1000 hits/s. Here keys are kept in order of their last hit and expired ones are
dropped from the front as hits arrive, O(1) amortised. Only the moving window (the one
strategy ``chat.limits`` uses) is kept; the fixed-window counters are not.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from limits.aio.storage import MovingWindowSupport, Storage

from chatwatch.clock import Clock, SystemClock

__all__ = ["MemoryWindows"]


class _Window:
    __slots__ = ("expires_at", "hits")

    def __init__(self) -> None:
        self.hits: deque[float] = deque()  # oldest first
        self.expires_at = 0.0


class MemoryWindows(Storage, MovingWindowSupport):
    """Moving windows by key: each a deque of hit times, oldest first (see the module)."""

    STORAGE_SCHEME = None

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self._clock: Clock = clock or SystemClock()
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        """Nothing here fails on I/O."""
        return ()

    def _expire(self, now: float) -> None:
        windows = self._windows
        while windows:
            key, window = next(iter(windows.items()))
            if window.expires_at > now:
                return
            del windows[key]

    def _current(self, key: str, expiry: int, now: float) -> deque[float] | None:
        window = self._windows.get(key)
        if window is None:
            return None
        hits, cutoff = window.hits, now - expiry
        # The package counts a hit exactly ``expiry`` old as still inside the window.
        while hits and hits[0] < cutoff:
            hits.popleft()
        return hits

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Record ``amount`` hits now if the window has room for them."""
        if amount > limit:
            return False
        now = self._clock.time()
        self._expire(now)
        hits = self._current(key, expiry, now)
        if hits is not None and len(hits) + amount > limit:
            return False
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        else:
            self._windows.move_to_end(key)
        window.hits.extend([now] * amount)
        window.expires_at = now + expiry
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(the oldest hit still in the window, or now; the number of hits in it)."""
        now = self._clock.time()
        hits = self._current(key, expiry, now)
        if not hits:
            return now, 0
        return hits[0], len(hits)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Not kept: fixed-window counters are not used by ChatLimits."""
        raise NotImplementedError("MemoryWindows keeps moving windows only")

    async def get(self, key: str) -> int:
        """Not kept: fixed-window counters are not used by ChatLimits."""
        raise NotImplementedError("MemoryWindows keeps moving windows only")

    async def get_expiry(self, key: str) -> float:
        """When the key's window empties (now if there is none)."""
        window = self._windows.get(key)
        return window.expires_at if window is not None else self._clock.time()

    async def check(self) -> bool:
        """Always healthy."""
        return True

    async def reset(self) -> int | None:
        """Forget every window; the number forgotten."""
        count = len(self._windows)
        self._windows.clear()
        return count

    async def clear(self, key: str) -> None:
        """Forget one window."""
        self._windows.pop(key, None)
