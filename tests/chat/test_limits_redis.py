"""Shared rate limits in the real Redis: several limiters ("nodes") count together, keys
expire, and a Redis that is down, or hangs, costs the chat nothing.

Redis keeps the package's moving windows on the wall clock, so the one test that needs a
window to pass uses a 1 s window and sleeps; every other test asserts no timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from chatwatch.chat.limits import ChatLimits, LimitScope
from chatwatch.clock import FakeClock
from chatwatch.config import LimitsSettings
from chatwatch.events import EventBus, LimitsStorageChanged
from tests.fakes.services import require_redis, unused_tcp_port

pytestmark = pytest.mark.redis

SMALL = LimitsSettings(
    messages_per_minute=3,
    messages_per_minute_per_ip=5,
    guest_logins_per_minute=4,
    ai_requests_per_minute=2,
    ai_requests_per_minute_per_ip=3,
)


async def _close(client: object) -> None:
    # cast: the installed redis stubs predate aclose(); close() is deprecated.
    await cast(Any, client).aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[str, str]]:
    """A Redis URL and a key prefix of this test's own, deleted afterwards."""
    url = require_redis()
    prefix = f"chatwatch-test:{uuid.uuid4().hex}"
    yield url, prefix
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + ":*")]
        if keys:
            await client.delete(*keys)
    finally:
        await _close(client)


@contextlib.asynccontextmanager
async def nodes(
    url: str, prefix: str, n: int = 2, **kwargs: Any
) -> AsyncIterator[list[ChatLimits]]:
    """``n`` limiters sharing one Redis, as ``n`` nodes would (with a timeout generous
    enough that a busy test machine never sends them to the memory fallback)."""
    kwargs.setdefault("redis_timeout_s", 5.0)
    limiters = [ChatLimits(SMALL, url, key_prefix=prefix, **kwargs) for _ in range(n)]
    try:
        yield limiters
    finally:
        for limiter in limiters:
            await limiter.aclose()


async def test_two_nodes_share_a_users_limit(redis_prefix: tuple[str, str]) -> None:
    """Regression (issue 8): at 3/min per user, 2 messages through node A and 2 through
    node B: the 4th is refused wherever it lands (each node alone would allow 3)."""
    url, prefix = redis_prefix
    async with nodes(url, prefix) as (a, b):
        outcomes = [
            await a.hit_message("u1", "10.0.0.1"),
            await b.hit_message("u1", "10.0.0.1"),
            await a.hit_message("u1", "10.0.0.1"),
            await b.hit_message("u1", "10.0.0.1"),
        ]
        assert [o is None for o in outcomes] == [True, True, True, False]
        assert (a.backend, a.degraded, a.fallback_calls) == ("redis", False, 0)


async def test_ip_limit_across_users_and_nodes(redis_prefix: tuple[str, str]) -> None:
    """6 users of one IP spread over two nodes, at 5/min per IP: the 6th is refused (IP)."""
    url, prefix = redis_prefix
    async with nodes(url, prefix) as (a, b):
        outcomes = [await (a, b)[i % 2].hit_message(f"u{i}", "10.0.0.1") for i in range(6)]
        assert [o is None for o in outcomes] == [True] * 5 + [False]
        assert outcomes[-1] is not None and outcomes[-1].scope is LimitScope.IP
        assert await b.hit_message("u9", "10.0.0.2") is None


async def test_concurrent_hits_on_two_nodes_never_overshoot(
    redis_prefix: tuple[str, str],
) -> None:
    """100 simultaneous guest logins from one IP over two nodes, at 4/min: exactly 4 pass."""
    url, prefix = redis_prefix
    async with nodes(url, prefix) as (a, b):
        outcomes = await asyncio.gather(
            *((a, b)[i % 2].hit_guest_login("198.51.100.9") for i in range(100))
        )
        assert sum(o is None for o in outcomes) == 4
        assert a.fallback_calls == b.fallback_calls == 0


async def test_retry_after_is_within_the_window(redis_prefix: tuple[str, str]) -> None:
    """A refusal's Retry-After is whole seconds between 1 and the 60 s window."""
    url, prefix = redis_prefix
    async with nodes(url, prefix, n=1) as (a,):
        for _ in range(2):
            assert await a.hit_ai("u1", "10.0.0.1") is None
        refusal = await a.hit_ai("u1", "10.0.0.1")
        assert refusal is not None
        assert 1 <= refusal.retry_after_s <= 60


async def test_every_key_has_a_ttl_and_a_bounded_name(redis_prefix: tuple[str, str]) -> None:
    """After messages, AI calls and guest logins with a 10 kB user id, every key under the
    prefix expires within the window and no key carries the raw id or address."""
    url, prefix = redis_prefix
    huge_user = "u" * 10_000
    async with nodes(url, prefix, n=1) as (a,):
        await a.hit_message(huge_user, "203.0.113.5")
        await a.hit_ai(huge_user, "203.0.113.5")
        await a.hit_guest_login("203.0.113.5")
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key.decode() async for key in client.scan_iter(match=prefix + ":*")]
        ttls = [await client.ttl(key) for key in keys]
    finally:
        await _close(client)
    assert len(keys) == 5  # message user + IP, AI user + IP, guest login IP
    assert all(0 < ttl <= 60 for ttl in ttls), ttls
    assert all(len(key) < len(prefix) + 100 for key in keys), keys
    assert not any("uuuu" in key or "203.0.113" in key for key in keys)


async def test_a_passed_window_admits_again(redis_prefix: tuple[str, str]) -> None:
    """With a 1 s window (the package stamps Redis windows with the wall clock): 3 pass,
    the 4th is refused, and after the window one more passes."""
    url, prefix = redis_prefix
    async with nodes(url, prefix, n=1, window_s=1) as (a,):
        outcomes = [await a.hit_message("u1", "10.0.0.1") for _ in range(4)]
        assert [o is None for o in outcomes] == [True, True, True, False]
        assert outcomes[-1] is not None and outcomes[-1].retry_after_s == 1
        await asyncio.sleep(1.1)
        assert await a.hit_message("u1", "10.0.0.1") is None


async def test_redis_down_falls_back_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    """With nothing listening at the Redis address, checks never raise, the limit still
    holds (in memory), the outage is logged and announced once, and fallbacks are counted;
    Redis is tried again after the retry interval, without a second warning."""
    caplog.set_level(logging.INFO, logger="chatwatch.chat.limits")
    clock, bus, seen = FakeClock(), EventBus(), []
    bus.subscribe(LimitsStorageChanged, seen.append)
    url = f"redis://127.0.0.1:{unused_tcp_port()}/0"
    limits = ChatLimits(SMALL, url, clock=clock, bus=bus, redis_retry_s=5)
    try:
        outcomes = [await limits.hit_message("u1", "10.0.0.1") for _ in range(4)]
        assert [o is None for o in outcomes] == [True, True, True, False]
        clock.advance(6)
        assert await limits.hit_guest_login("10.0.0.1") is None
    finally:
        await limits.aclose()
    assert limits.degraded and limits.outages == 1
    assert limits.fallback_calls == 3 * 2 + 1 + 1  # user + IP per passing message
    assert [(e.state, e.backend) for e in seen] == [("degraded", "redis")]
    assert "ConnectionError" in seen[0].error
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "redis unreachable" in warnings[0].getMessage()


class _Proxy:
    """A TCP proxy to Redis on loopback that can refuse new connections, cut all of them
    (and be restored on the same port), swallow requests, or hold Redis's answers."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.mute = False
        self.flowing = asyncio.Event()  # cleared: Redis's answers wait
        self.flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop_listening(self) -> None:
        """Refuse new connections; the open ones go on."""
        assert self._server is not None
        self._server.close()

    async def stop(self) -> None:
        """Refuse new connections and drop the open ones."""
        self.stop_listening()
        for writer in list(self._writers):
            writer.close()
        assert self._server is not None
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.update((writer, up_writer))

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event | None
        ) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if gate is not None:
                        await gate.wait()
                    if not self.mute:
                        dst.write(data)
                        await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, None), pipe(up_reader, writer, self.flowing))
        self._writers.difference_update((writer, up_writer))


def _redis_port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def test_redis_outage_and_recovery(
    redis_prefix: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis reached through a proxy: cut it and a check falls back (one warning, one
    ``degraded`` event); restore it and, after the retry interval, checks are counted in
    Redis again (one info record, one ``recovered`` event with the fallback count)."""
    url, prefix = redis_prefix
    caplog.set_level(logging.INFO, logger="chatwatch.chat.limits")
    proxy = _Proxy(_redis_port(url))
    await proxy.start()
    clock, bus, seen = FakeClock(), EventBus(), []
    bus.subscribe(LimitsStorageChanged, seen.append)
    via = f"redis://127.0.0.1:{proxy.port}/{url.rsplit('/', 1)[1]}"
    limits = ChatLimits(
        SMALL, via, clock=clock, bus=bus, key_prefix=prefix, redis_retry_s=5, redis_timeout_s=5
    )
    try:
        assert await limits.hit_guest_login("192.0.2.1") is None
        await proxy.stop()
        assert await limits.hit_guest_login("192.0.2.1") is None
        assert await limits.hit_guest_login("192.0.2.1") is None
        await proxy.start()
        clock.advance(6)
        assert await limits.hit_guest_login("192.0.2.1") is None
        assert not limits.degraded
    finally:
        await limits.aclose()
        with contextlib.suppress(Exception):
            await proxy.stop()
    assert [e.state for e in seen] == ["degraded", "recovered"]
    assert seen[1].fallback_calls == 2 and limits.fallback_calls == 2
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.INFO]


async def test_a_hanging_redis_costs_one_timeout_per_retry_interval(
    redis_prefix: tuple[str, str],
) -> None:
    """A Redis that accepts but never answers: the first check waits for the socket
    timeout (0.2 s) and falls back; the next 20 skip Redis and do not wait at all."""
    url, prefix = redis_prefix
    proxy = _Proxy(_redis_port(url))
    await proxy.start()
    proxy.mute = True
    via = f"redis://127.0.0.1:{proxy.port}/0"
    limits = ChatLimits(
        SMALL, via, clock=FakeClock(), key_prefix=prefix, redis_timeout_s=0.2, redis_retry_s=5
    )
    try:
        started = time.perf_counter()
        assert await limits.hit_guest_login("192.0.2.1") is None
        outcomes = [await limits.hit_guest_login("192.0.2.1") for _ in range(20)]
        elapsed = time.perf_counter() - started
    finally:
        await limits.aclose()
        await proxy.stop()
    assert [o is None for o in outcomes] == [True] * 3 + [False] * 17
    assert limits.degraded
    assert elapsed < 5.0  # generous: one 0.2 s timeout, not 21


async def test_a_check_begun_before_the_outage_does_not_end_it(
    redis_prefix: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: check A is waiting on Redis when check B fails (the proxy refuses B's
    new connection): the outage starts. A's late success must not end it — before, it
    did, and a burst of checks flapped between degraded and recovered with a warning each.
    Only a check begun after the retry interval ends it."""
    url, prefix = redis_prefix
    caplog.set_level(logging.INFO, logger="chatwatch.chat.limits")
    proxy = _Proxy(_redis_port(url))
    await proxy.start()
    clock, bus, seen = FakeClock(), EventBus(), []
    bus.subscribe(LimitsStorageChanged, seen.append)
    via = f"redis://127.0.0.1:{proxy.port}/{url.rsplit('/', 1)[1]}"
    limits = ChatLimits(
        SMALL, via, clock=clock, bus=bus, key_prefix=prefix, redis_timeout_s=5, redis_retry_s=5
    )
    try:
        assert await limits.hit_guest_login("192.0.2.1") is None  # opens one connection
        proxy.flowing.clear()
        a = asyncio.create_task(limits.hit_guest_login("192.0.2.1"))
        await asyncio.sleep(0.1)  # A has sent its request on the one connection
        proxy.stop_listening()
        assert await limits.hit_guest_login("192.0.2.2") is None  # B: refused, in memory
        proxy.flowing.set()
        assert await a is None
        assert limits.degraded
        await proxy.start()
        clock.advance(6)
        assert await limits.hit_guest_login("192.0.2.3") is None
        assert not limits.degraded
    finally:
        proxy.flowing.set()
        await limits.aclose()
        with contextlib.suppress(Exception):
            await proxy.stop()
    assert [e.state for e in seen] == ["degraded", "recovered"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]


async def test_more_checks_than_redis_turns_is_not_an_outage(
    redis_prefix: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: 3,000 checks at once through one Redis connection, each allowed 20 ms to
    get its turn: the late ones are counted in memory (``busy_calls``), none raises, and no
    outage is declared. Before (a blocking pool), "No connection available" was taken for
    an outage, and in-flight successes ended it again: 16 warnings in one burst."""
    url, prefix = redis_prefix
    caplog.set_level(logging.INFO, logger="chatwatch.chat.limits")
    limits = ChatLimits(
        LimitsSettings(guest_logins_per_minute=10_000),
        url,
        key_prefix=prefix,
        redis_connections=1,
        redis_timeout_s=5,
        redis_wait_s=0.02,
    )
    try:
        outcomes = await asyncio.gather(
            *(limits.hit_guest_login(f"198.51.100.{i % 250}") for i in range(3000))
        )
    finally:
        await limits.aclose()
    assert outcomes == [None] * 3000
    assert (limits.outages, limits.degraded) == (0, False)
    assert limits.busy_calls > 0 and limits.fallback_calls == limits.busy_calls
    assert len(caplog.records) == 1 and "waited" in caplog.records[0].getMessage()
