"""Shared rate limits in process memory, on a fake clock (no sleeping), and the flood guard.

The Redis side of the same limits is in ``test_limits_redis.py``.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatwatch.chat.limits import (
    ChatLimits,
    ConnectionFloodGuard,
    LimitKind,
    LimitScope,
    Refusal,
    client_key,
    identity_digest,
    limits_uri,
)
from chatwatch.clock import FakeClock
from chatwatch.config import LimitsSettings
from chatwatch.vocabulary import SecurityEventType

SMALL = LimitsSettings(
    messages_per_minute=3,
    messages_per_minute_per_ip=5,
    guest_logins_per_minute=4,
    ai_requests_per_minute=2,
    ai_requests_per_minute_per_ip=3,
)


def limiter(settings: LimitsSettings = SMALL) -> tuple[ChatLimits, FakeClock]:
    clock = FakeClock()
    return ChatLimits(settings, clock=clock), clock


async def messages(limits: ChatLimits, user: str, ip: str, n: int) -> list[Refusal | None]:
    return [await limits.hit_message(user, ip) for _ in range(n)]


def test_defaults_are_the_spec_ones() -> None:
    """SPEC §2: 60 per user, 600 per IP, 60 guest logins per IP, AI 60 per user / 600 per IP."""
    s = LimitsSettings()
    assert (
        s.messages_per_minute,
        s.messages_per_minute_per_ip,
        s.connections_per_ip,
        s.guest_logins_per_minute,
        s.ai_requests_per_minute,
        s.ai_requests_per_minute_per_ip,
    ) == (60, 600, 50, 60, 60, 600)


async def test_user_limit_is_shared_by_all_their_sockets() -> None:
    """Regression (issue 8): 3 messages from each of 3 sockets of one user at 3/min: only the
    first 3 pass, and a 4th socket opened afterwards (a reconnect) gets no fresh allowance.
    Before, each socket had its own bucket, so every one of the 12 passed."""
    limits, clock = limiter()
    sockets = [ConnectionFloodGuard(SMALL.messages_per_minute, clock) for _ in range(4)]
    outcomes = []
    for guard in sockets:
        for _ in range(3):
            assert guard.take() is None  # each socket alone is well within its budget
            outcomes.append(await limits.hit_message("u1", "10.0.0.1"))
    assert [o is None for o in outcomes] == [True] * 3 + [False] * 9
    assert {(o.kind, o.scope) for o in outcomes if o} == {(LimitKind.MESSAGE, LimitScope.USER)}


async def test_ip_limit_counts_every_user_of_the_address() -> None:
    """6 users of one IP, one message each, at 5/min per IP: the 6th is refused for the IP;
    another IP and the users' own allowances are untouched."""
    limits, _ = limiter()
    outcomes = [await limits.hit_message(f"u{i}", "10.0.0.1") for i in range(6)]
    assert [o is None for o in outcomes] == [True] * 5 + [False]
    refusal = outcomes[-1]
    assert refusal is not None and refusal.scope is LimitScope.IP
    assert await limits.hit_message("u5", "10.0.0.2") is None


async def test_a_user_over_their_limit_costs_the_address_nothing() -> None:
    """One user hammering past their own limit (3/min) does not eat the IP's 5/min: a
    neighbour on the same IP still gets 2 messages after 20 refused attempts."""
    limits, _ = limiter()
    await messages(limits, "noisy", "10.0.0.1", 23)
    assert [o is None for o in await messages(limits, "quiet", "10.0.0.1", 3)] == [
        True,
        True,
        False,
    ]


async def test_window_slides_and_retry_after_is_exact() -> None:
    """At 3/min: hits at t=0, 10, 20 s; at t=30 s the refusal says 30 s (when the t=0 hit
    leaves); at t=60 s one more passes; refused tries do not push the wait out."""
    limits, clock = limiter()
    for _ in range(3):
        assert await limits.hit_message("u1", "10.0.0.1") is None
        clock.advance(10)
    refusal = await limits.hit_message("u1", "10.0.0.1")
    assert refusal is not None and refusal.retry_after_s == 30
    clock.advance(29)
    again = await limits.hit_message("u1", "10.0.0.1")
    assert again is not None and again.retry_after_s == 1
    clock.advance(1.001)
    assert await limits.hit_message("u1", "10.0.0.1") is None
    refused = await limits.hit_message("u1", "10.0.0.1")
    assert refused is not None and refused.retry_after_s == 10  # the t=10 s hit is next


async def test_retry_after_is_whole_seconds_at_least_one() -> None:
    """A refusal a fraction of a second before the slot frees still says 1 s, never 0."""
    limits, clock = limiter()
    await messages(limits, "u1", "10.0.0.1", 3)
    clock.advance(59.9)
    refusal = await limits.hit_message("u1", "10.0.0.1")
    assert refusal is not None and refusal.retry_after_s == 1


async def test_ai_limits_are_apart_from_message_limits() -> None:
    """AI calls have their own windows (2/min per user, 3/min per IP): spending the message
    allowance leaves the AI one whole, and the reverse."""
    limits, _ = limiter()
    await messages(limits, "u1", "10.0.0.1", 3)
    ai = [await limits.hit_ai("u1", "10.0.0.1") for _ in range(3)]
    assert [o is None for o in ai] == [True, True, False]
    assert ai[-1] is not None and (ai[-1].kind, ai[-1].scope) == (LimitKind.AI, LimitScope.USER)
    assert ai[-1].security_type is SecurityEventType.AI_SPEND_LIMITED
    other = [await limits.hit_ai("u2", "10.0.0.1") for _ in range(2)]
    assert other[0] is None and other[1] is not None and other[1].scope is LimitScope.IP


async def test_guest_logins_per_ip() -> None:
    """4 guest logins a minute per IP: the 5th from one address is refused, another passes."""
    limits, _ = limiter()
    outcomes = [await limits.hit_guest_login("192.0.2.7") for _ in range(5)]
    assert [o is None for o in outcomes] == [True] * 4 + [False]
    refusal = outcomes[-1]
    assert refusal is not None
    assert (refusal.kind, refusal.scope, refusal.security_type) == (
        LimitKind.GUEST_LOGIN,
        LimitScope.IP,
        SecurityEventType.GUEST_LOGIN_FLOOD,
    )
    assert await limits.hit_guest_login("192.0.2.8") is None


async def test_ipv6_addresses_count_per_64_network() -> None:
    """Rotating through one IPv6 /64 buys nothing; another /64 is another client."""
    limits, _ = limiter()
    outcomes = [await limits.hit_guest_login(f"2001:db8:1:2::{i:x}") for i in range(5)]
    assert [o is None for o in outcomes] == [True] * 4 + [False]
    assert await limits.hit_guest_login("2001:db8:1:3::1") is None


def test_client_key_forms() -> None:
    """IPv4 as is, IPv4-mapped IPv6 as its IPv4, IPv6 by /64, anything else capped."""
    assert client_key("192.0.2.1") == client_key("::ffff:192.0.2.1") == "v4:192.0.2.1"
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff:1") != client_key("2001:db9::1")
    assert client_key("unknown") == "raw:unknown"
    assert len(client_key("x" * 10_000)) == 104


def test_identity_digest_is_fixed_length_for_any_text() -> None:
    """Huge ids, odd characters and lone surrogates all become 24 hex digits."""
    for text in ("", "u1", "x" * 100_000, "🙂/LIMITER/:*?", "\ud800"):
        digest = identity_digest(text)
        assert len(digest) == 24 and all(c in "0123456789abcdef" for c in digest)
    assert identity_digest("a") != identity_digest("b")


async def test_keys_expire_after_their_window() -> None:
    """1,000 users' windows are dropped once a window has passed with no hit of theirs."""
    limits, clock = limiter()
    for i in range(1000):
        await limits.hit_message(f"user-{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(limits.memory) == 2000  # a user window and an IP window each
    clock.advance(61)
    await limits.hit_message("late", "10.9.9.9")
    assert len(limits.memory) == 2


async def test_concurrent_hits_never_overshoot() -> None:
    """100 hits of one user at once, at 3/min: exactly 3 pass."""
    limits, _ = limiter()
    outcomes = await asyncio.gather(*(limits.hit_message("u1", "10.0.0.1") for _ in range(100)))
    assert sum(o is None for o in outcomes) == 3


def test_refusal_words() -> None:
    """The visitor's message names the limit, whose it is, and when to retry."""
    refusal = Refusal(LimitKind.MESSAGE, LimitScope.USER, 60, 60, 12)
    assert refusal.message == "more than 60 messages a minute for your account; try again in 12 s"
    assert refusal.limit == "60 messages per 60 s per user"
    assert refusal.security_type is SecurityEventType.RATE_LIMITED


def test_limits_uri() -> None:
    """redis://, rediss:// and unix:// map to the package's async Redis schemes."""
    assert limits_uri("redis://h:1/0") == "async+redis://h:1/0"
    assert limits_uri("rediss://h:1/0") == "async+rediss://h:1/0"
    assert limits_uri("unix:///run/redis.sock") == "async+redis+unix:///run/redis.sock"


def test_window_must_be_positive() -> None:
    """A zero window is a programming error, said at once."""
    with pytest.raises(ValueError, match="window_s"):
        ChatLimits(SMALL, window_s=0)


# ---- the per-socket flood guard -------------------------------------------------------


def takes(guard: ConnectionFloodGuard, n: int) -> list[bool]:
    return [guard.take() is None for _ in range(n)]


def test_guard_bursts_to_its_budget_then_refuses() -> None:
    """5/min allows a burst of 5; the 6th at the same instant is refused for the connection."""
    guard = ConnectionFloodGuard(5, FakeClock())
    assert takes(guard, 5) == [True] * 5
    refusal = guard.take()
    assert refusal is not None
    assert (refusal.kind, refusal.scope, refusal.retry_after_s) == (
        LimitKind.FRAMES,
        LimitScope.CONNECTION,
        12,
    )


def test_guard_refills_and_refusals_cost_nothing() -> None:
    """At 60/min an empty guard passes one frame 1 s later, however often it was refused."""
    clock = FakeClock()
    guard = ConnectionFloodGuard(60, clock)
    takes(guard, 60)
    assert takes(guard, 50) == [False] * 50
    clock.advance(1.0)
    assert takes(guard, 2) == [True, False]


def test_guard_refill_is_capped() -> None:
    """After an idle hour a 3/min guard holds 3 tokens, not 180."""
    clock = FakeClock()
    guard = ConnectionFloodGuard(3, clock)
    takes(guard, 3)
    clock.advance(3600)
    assert takes(guard, 4) == [True, True, True, False]


def _moving_window_admits(times: list[float], limit: int) -> list[float]:
    """The hits a moving window of ``limit`` per 60 s lets through (a plain reference)."""
    admitted: list[float] = []
    for t in times:
        if sum(1 for a in admitted if a >= t - 60) < limit:
            admitted.append(t)
    return admitted


@settings(max_examples=200, deadline=None)
@example(limit=1, gaps=[157, 1, 59_999])  # float rounding at exactly one refill
@given(
    limit=st.integers(1, 8),
    # Milliseconds: small gaps make bursts; the sampled ones land on window edges.
    gaps=st.lists(
        st.one_of(st.integers(0, 3_000), st.sampled_from([15_000, 30_000, 59_999, 60_001])),
        min_size=1,
        max_size=60,
    ),
)
def test_guard_never_refuses_a_socket_within_the_user_limit(limit: int, gaps: list[int]) -> None:
    """Any frames that fit a moving window of N a minute also fit a guard of N a minute."""
    clock = FakeClock()
    times, t = [], 0.0
    for gap in gaps:
        t += gap / 1000
        times.append(t)
    guard = ConnectionFloodGuard(limit, clock)
    start = clock.monotonic()
    for when in _moving_window_admits(times, limit):
        clock.advance(start + when - clock.monotonic())
        assert guard.take() is None
