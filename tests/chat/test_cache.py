"""The AI response cache: keys, the in-memory LRU/TTL store and the Redis store."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from chatwatch.chat.cache import CachedReply, MemoryCache, RedisCache, cache_key, make_cache
from chatwatch.chat.providers.base import ChatTurn
from chatwatch.clock import FakeClock
from chatwatch.config import CacheSettings
from tests.fakes.services import require_redis, unused_tcp_port

REPLY = CachedReply(
    content="We offer strategy workshops.",
    model="gpt-4o-mini",
    input_tokens=30,
    output_tokens=7,
    quick_actions=("pricing", "book_consultation"),
    handoff=True,
)


async def _close(client: object) -> None:
    # cast: the installed types-redis stubs predate aclose(); close() is deprecated.
    await cast(Any, client).aclose()


def _reply(n: int) -> CachedReply:
    return CachedReply(f"answer {n}", "m", n, n)


# ---- keys -------------------------------------------------------------------------


def test_key_ignores_whitespace_and_case() -> None:
    """Texts differing only in spacing or case share a key."""
    a = [ChatTurn("user", "What  do you\n OFFER?")]
    b = [ChatTurn("user", "  what do you offer? ")]
    assert cache_key("gpt-4o-mini", a, None) == cache_key("gpt-4o-mini", b, None)


def test_key_depends_on_order_role_model_and_action() -> None:
    """Turn order, roles, the model and the quick action each change the key."""
    turns = [ChatTurn("user", "hi"), ChatTurn("assistant", "hello")]
    base = cache_key("m1", turns, None)
    assert cache_key("m1", list(reversed(turns)), None) != base
    assert cache_key("m1", [ChatTurn("user", "hi"), ChatTurn("user", "hello")], None) != base
    assert cache_key("m2", turns, None) != base
    assert cache_key("m1", turns, "pricing") != base
    assert cache_key("m1", turns, "PRICING") == cache_key("m1", turns, "pricing")


def test_key_keeps_turn_boundaries() -> None:
    """Splitting the same words differently across turns gives a different key."""
    one = [ChatTurn("user", "a b"), ChatTurn("user", "c")]
    two = [ChatTurn("user", "a"), ChatTurn("user", "b c")]
    assert cache_key("m", one, None) != cache_key("m", two, None)


def test_key_is_a_sha256_hex_digest() -> None:
    """Keys are 64 hex characters, safe for any store."""
    key = cache_key("m", [ChatTurn("user", "hi")], None)
    assert len(key) == 64
    int(key, 16)


def test_cached_reply_json_round_trip() -> None:
    """to_json/from_json preserve every field."""
    assert CachedReply.from_json(REPLY.to_json()) == REPLY
    assert CachedReply.from_json(REPLY.to_json().encode()) == REPLY


@pytest.mark.parametrize(
    "data",
    [
        "not json",
        "[]",
        '{"content": "x"}',
        '{"content": "x", "model": "m", "input_tokens": "1", "output_tokens": 2}',
        '{"content": "x", "model": "m", "input_tokens": 1, "output_tokens": 2, "handoff": "y"}',
    ],
)
def test_cached_reply_rejects_foreign_data(data: str) -> None:
    """Anything that is not a stored reply raises ValueError."""
    with pytest.raises(ValueError):
        CachedReply.from_json(data)


# ---- memory -----------------------------------------------------------------------


async def test_memory_lru_evicts_least_recently_used() -> None:
    """A read refreshes an entry, so the untouched one is evicted first."""
    evictions: list[int] = []
    cache = MemoryCache(2, 3600, FakeClock(), on_evict=evictions.append)
    await cache.set("a", _reply(1))
    await cache.set("b", _reply(2))
    assert await cache.get("a") == _reply(1)
    await cache.set("c", _reply(3))
    assert await cache.get("b") is None
    assert await cache.get("a") == _reply(1)
    assert await cache.get("c") == _reply(3)
    assert cache.entries == 2
    assert evictions == [1]


async def test_memory_eviction_callback_counts_every_eviction() -> None:
    """Each entry pushed out for room is reported to on_evict."""
    evictions: list[int] = []
    cache = MemoryCache(3, 3600, FakeClock(), on_evict=evictions.append)
    for n in range(5):
        await cache.set(f"k{n}", _reply(n))
    assert sum(evictions) == 2
    assert cache.entries == 3


async def test_memory_overwrite_is_not_an_eviction() -> None:
    """Setting an existing key replaces it without evicting anything."""
    evictions: list[int] = []
    cache = MemoryCache(1, 3600, FakeClock(), on_evict=evictions.append)
    await cache.set("k", _reply(1))
    await cache.set("k", _reply(2))
    assert await cache.get("k") == _reply(2)
    assert evictions == []


async def test_memory_ttl_expires_entries() -> None:
    """An entry is served until its TTL passes, then it is a miss and removed."""
    clock = FakeClock()
    cache = MemoryCache(10, 60, clock)
    await cache.set("k", REPLY)
    clock.advance(59.9)
    assert await cache.get("k") == REPLY
    clock.advance(0.2)
    assert await cache.get("k") is None
    assert cache.entries == 0


async def test_memory_expired_entries_pushed_out_are_not_evictions() -> None:
    """Dropping an already expired entry for room does not count as an eviction."""
    evictions: list[int] = []
    clock = FakeClock()
    cache = MemoryCache(1, 10, clock, on_evict=evictions.append)
    await cache.set("old", _reply(1))
    clock.advance(11)
    await cache.set("new", _reply(2))
    assert evictions == []
    assert await cache.get("new") == _reply(2)


@pytest.mark.parametrize(("max_entries", "ttl"), [(0, 3600.0), (100, 0.0)])
async def test_memory_disabled_stores_nothing(max_entries: int, ttl: float) -> None:
    """max_entries=0 or ttl=0 turns the cache into a permanent miss."""
    cache = MemoryCache(max_entries, ttl, FakeClock())
    await cache.set("k", REPLY)
    assert await cache.get("k") is None
    assert cache.entries == 0


async def test_make_cache_follows_settings() -> None:
    """Disabled settings give a store that keeps nothing; a Redis URL gives RedisCache."""
    clock = FakeClock()
    off = make_cache(CacheSettings(enabled=False), None, clock)
    await off.set("k", REPLY)
    assert await off.get("k") is None
    memory = make_cache(CacheSettings(), None, clock)
    await memory.set("k", REPLY)
    assert await memory.get("k") == REPLY
    remote = make_cache(CacheSettings(), f"redis://127.0.0.1:{unused_tcp_port()}/0", clock)
    assert isinstance(remote, RedisCache)
    await remote.aclose()


# ---- redis ------------------------------------------------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[str, str]]:
    """A Redis URL and a key prefix of this test's own, deleted afterwards."""
    url = require_redis()
    prefix = f"chatwatch-test:{uuid.uuid4().hex}:"
    yield url, prefix
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await _close(client)


@pytest.mark.redis
async def test_redis_round_trip_with_ttl(redis_prefix: tuple[str, str]) -> None:
    """A reply stored in Redis reads back equal, under the prefix, with the TTL set."""
    url, prefix = redis_prefix
    cache = RedisCache(url, ttl=120, prefix=prefix)
    client = aioredis.Redis.from_url(url)
    try:
        assert await cache.get("k") is None
        await cache.set("k", REPLY)
        assert await cache.get("k") == REPLY
        assert 0 < await client.ttl(prefix + "k") <= 120
        assert await cache.refresh_entries() == 1
        assert cache.entries == 1
    finally:
        await cache.aclose()
        await _close(client)


@pytest.mark.redis
async def test_redis_foreign_value_is_a_miss(redis_prefix: tuple[str, str]) -> None:
    """A value that is not a stored reply reads as a miss instead of raising."""
    url, prefix = redis_prefix
    client = aioredis.Redis.from_url(url)
    cache = RedisCache(url, ttl=120, prefix=prefix)
    try:
        await client.set(prefix + "k", b"\xff not json", ex=60)
        assert await cache.get("k") is None
    finally:
        await cache.aclose()
        await _close(client)


async def test_redis_unreachable_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    """With Redis down, get misses, set is skipped, and the warning is rate-limited."""
    clock = FakeClock()
    url = f"redis://127.0.0.1:{unused_tcp_port()}/0"
    cache = RedisCache(url, ttl=60, clock=clock, retry_after=5, warn_every=60)
    caplog.set_level(logging.WARNING, logger="chatwatch.chat.cache")
    try:
        assert await cache.get("k") is None
        await cache.set("k", REPLY)
        clock.advance(10)  # past retry_after: Redis is tried (and fails) again
        assert await cache.get("k") is None
        assert len(caplog.records) == 1
        assert "redis cache" in caplog.records[0].getMessage()
        clock.advance(60)
        assert await cache.get("k") is None
        assert len(caplog.records) == 2
        assert cache.entries == 0
        assert await cache.refresh_entries() == 0
    finally:
        await cache.aclose()


async def test_hung_redis_costs_one_socket_timeout() -> None:
    """A Redis that accepts but never answers costs one short socket timeout, then a miss."""
    connections: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", ttl=60, socket_timeout=0.3, retry_after=0)
    try:
        async with asyncio.timeout(5):  # without a socket timeout the get would hang here
            assert await cache.get("k") is None
    finally:
        await cache.aclose()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()
