"""The per-connection token bucket, driven by a fake clock (no sleeping)."""

from __future__ import annotations

from chatwatch.chat.ratelimit import TokenBucket
from chatwatch.clock import FakeClock


def takes(bucket: TokenBucket, n: int) -> list[bool]:
    return [bucket.take() for _ in range(n)]


def test_burst_up_to_the_limit_then_refused() -> None:
    """5/min allows a burst of 5 at once; the 6th and 7th at the same instant are refused."""
    bucket = TokenBucket(5, FakeClock())
    assert takes(bucket, 7) == [True] * 5 + [False, False]


def test_refills_one_token_per_interval() -> None:
    """At 60/min, an empty bucket gives one more message after 1 s and not before."""
    clock = FakeClock()
    bucket = TokenBucket(60, clock)
    takes(bucket, 60)
    clock.advance(0.5)
    refused_early = bucket.take()
    clock.advance(0.5)
    assert (refused_early, bucket.take(), bucket.take()) == (False, True, False)


def test_refill_is_capped_at_the_burst_size() -> None:
    """After an idle hour a 3/min bucket holds 3 tokens, not 180."""
    clock = FakeClock()
    bucket = TokenBucket(3, clock)
    takes(bucket, 3)
    clock.advance(3600)
    assert takes(bucket, 4) == [True, True, True, False]


def test_sustained_rate_is_the_limit() -> None:
    """Trying every 0.25 s for a simulated minute, 60/min lets the burst 60 + 60 refills pass."""
    clock = FakeClock()
    bucket = TokenBucket(60, clock)
    allowed = 0
    for _ in range(240):
        allowed += bucket.take()
        clock.advance(0.25)
    allowed += bucket.take()  # at t = 60 s exactly
    assert allowed == 60 + 60


def test_refused_attempts_do_not_consume_tokens() -> None:
    """Hammering an empty bucket does not delay the next token: 1 s later at 60/min one passes."""
    clock = FakeClock()
    bucket = TokenBucket(60, clock)
    takes(bucket, 60)
    assert takes(bucket, 50) == [False] * 50
    clock.advance(1.0)
    assert bucket.take() is True


def test_buckets_are_independent() -> None:
    """Two connections' buckets on one clock do not share tokens."""
    clock = FakeClock()
    a, b = TokenBucket(2, clock), TokenBucket(2, clock)
    assert (takes(a, 3), takes(b, 3)) == ([True, True, False], [True, True, False])
