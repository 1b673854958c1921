"""The in-memory moving-window storage, driven through the ``limits`` package's calls."""

from __future__ import annotations

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter

from chatwatch.chat.memory_windows import MemoryWindows
from chatwatch.clock import FakeClock


async def test_memory_windows_is_a_limits_storage() -> None:
    """The storage answers the package's moving-window calls directly."""
    clock = FakeClock()
    store = MemoryWindows(clock)
    assert [await store.acquire_entry("k", 2, 60) for _ in range(3)] == [True, True, False]
    assert await store.acquire_entry("k", 2, 60, amount=3) is False
    assert await store.get_moving_window("k", 2, 60) == (clock.time(), 2)
    assert await store.get_expiry("k") == clock.time() + 60
    clock.advance(60.5)
    assert await store.get_moving_window("k", 2, 60) == (clock.time(), 0)
    assert await store.check() is True
    await store.clear("k")
    assert await store.reset() == 0


async def test_the_packages_limiter_runs_on_it() -> None:
    """MovingWindowRateLimiter over it: 2 a minute, the window stats say when one frees."""
    clock = FakeClock()
    limiter = MovingWindowRateLimiter(MemoryWindows(clock))
    item = RateLimitItemPerMinute(2)
    assert [await limiter.hit(item, "k") for _ in range(3)] == [True, True, False]
    clock.advance(15)
    stats = await limiter.get_window_stats(item, "k")
    assert (stats.reset_time - clock.time(), stats.remaining) == (45, 0)


async def test_expired_keys_go_as_hits_arrive() -> None:
    """Keys whose window has passed are dropped by the next hit, whichever key it is for."""
    clock = FakeClock()
    store = MemoryWindows(clock)
    for i in range(100):
        await store.acquire_entry(f"k{i}", 5, 60)
        clock.advance(0.1)
    assert len(store) == 100
    clock.advance(55.05)  # now 65.05 s: k0..k50 are over 60 s old, k51..k99 are not
    await store.acquire_entry("new", 5, 60)
    assert len(store) == 49 + 1
