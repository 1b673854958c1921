"""The AI response cache: the same question in the same context gets the stored answer.

Two stores behind one protocol: ``MemoryCache`` (per process, LRU with a TTL) and
``RedisCache`` (shared by replicas). Neither may break a chat: the Redis store turns
every Redis failure into a miss or a skipped write.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chatwatch.chat.providers.base import ChatTurn
from chatwatch.clock import Clock, SystemClock
from chatwatch.config import CacheSettings

__all__ = [
    "CachedReply",
    "MemoryCache",
    "RedisCache",
    "ResponseCache",
    "cache_key",
    "make_cache",
]

logger = logging.getLogger(__name__)

OnEvict = Callable[[int], None]

# Bump when the key recipe or the stored JSON changes, so old entries are never misread.
_KEY_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class CachedReply:
    """A stored AI answer, enough to replay the ``ai_message`` frame."""

    content: str
    model: str
    input_tokens: int
    output_tokens: int
    quick_actions: tuple[str, ...] = ()
    handoff: bool = False

    def to_json(self) -> str:
        """Serialise to a JSON object."""
        return json.dumps(
            {
                "content": self.content,
                "model": self.model,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "quick_actions": list(self.quick_actions),
                "handoff": self.handoff,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> CachedReply:
        """Parse what ``to_json`` wrote; raise ValueError on anything else."""
        obj: Any = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("cached reply is not a JSON object")
        content, model = obj.get("content"), obj.get("model")
        tokens_in, tokens_out = obj.get("input_tokens"), obj.get("output_tokens")
        actions, handoff = obj.get("quick_actions", []), obj.get("handoff", False)
        if not (isinstance(content, str) and isinstance(model, str)):
            raise ValueError("cached reply lacks content or model")
        if not (_is_count(tokens_in) and _is_count(tokens_out)):
            raise ValueError("cached reply has bad token counts")
        if not (isinstance(actions, list) and all(isinstance(a, str) for a in actions)):
            raise ValueError("cached reply has bad quick actions")
        if not isinstance(handoff, bool):
            raise ValueError("cached reply has a bad handoff flag")
        return cls(content, model, tokens_in, tokens_out, tuple(actions), handoff)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def cache_key(model: str, turns: Sequence[ChatTurn], quick_action: str | None) -> str:
    """A hex sha256 of the model and the given turns (role + normalised text, in order)."""
    # JSON framing keeps turn boundaries unambiguous: ("a b", "c") never equals ("a", "b c").
    material = json.dumps(
        [
            _KEY_VERSION,
            model.strip(),
            [[t.role, _normalise(t.content)] for t in turns],
            _normalise(quick_action) if quick_action is not None else None,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class _Closable(Protocol):
    async def aclose(self) -> None: ...


class ResponseCache(Protocol):
    """Where replies are kept; implementations never raise on storage trouble."""

    on_evict: OnEvict | None  # called with the number of entries pushed out for room

    @property
    def entries(self) -> int:
        """How many replies are stored (best effort)."""
        ...

    async def get(self, key: str) -> CachedReply | None:
        """The stored reply, or None on a miss."""
        ...

    async def set(self, key: str, reply: CachedReply) -> None:
        """Store a reply."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """An in-process LRU with a TTL; ``max_entries=0`` or ``ttl=0`` stores nothing."""

    def __init__(
        self,
        max_entries: int,
        ttl: float,
        clock: Clock,
        on_evict: OnEvict | None = None,
    ) -> None:
        self._max = max(0, max_entries)
        self._ttl = max(0.0, ttl)
        self._clock = clock
        self.on_evict = on_evict
        # key -> (expires_at on the monotonic clock, reply); order = least recently used first
        self._data: OrderedDict[str, tuple[float, CachedReply]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether anything can be stored at all."""
        return self._max > 0 and self._ttl > 0

    @property
    def entries(self) -> int:
        """Stored replies, expired ones not yet swept included."""
        return len(self._data)

    async def get(self, key: str) -> CachedReply | None:
        """The stored reply if present and fresh; an expired one is dropped."""
        item = self._data.get(key)
        if item is None:
            return None
        expires_at, reply = item
        if self._clock.monotonic() >= expires_at:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return reply

    async def set(self, key: str, reply: CachedReply) -> None:
        """Store a reply, pushing out the least recently used ones beyond capacity."""
        if not self.enabled:
            return
        now = self._clock.monotonic()
        self._data[key] = (now + self._ttl, reply)
        self._data.move_to_end(key)
        evicted = 0
        while len(self._data) > self._max:
            _, (expires_at, _) = self._data.popitem(last=False)
            if expires_at > now:  # dropping an already-expired entry is not an eviction
                evicted += 1
        if evicted and self.on_evict is not None:
            self.on_evict(evicted)

    def clear(self) -> None:
        """Forget everything."""
        self._data.clear()

    async def aclose(self) -> None:
        """Nothing to release."""
        self._data.clear()


class RedisCache:
    """Replies in Redis as JSON under ``prefix + key``, expiring through ``SET … EX``.

    ``entries`` is an estimate: the count from the last ``refresh_entries()`` (a SCAN over
    the prefix, meant for a periodic metrics job) plus the keys this process wrote since.
    Redis drops entries itself (TTL, maxmemory), so ``on_evict`` is never called here.

    After a Redis failure the cache stays out of the way for ``retry_after`` seconds, so a
    dead or slow Redis costs the chat nothing but misses; warnings are rate-limited.
    """

    def __init__(
        self,
        url: str,
        ttl: float,
        prefix: str = "chatwatch:cache:",
        *,
        clock: Clock | None = None,
        socket_timeout: float = 0.5,
        retry_after: float = 5.0,
        warn_every: float = 60.0,
        on_evict: OnEvict | None = None,
    ) -> None:
        self._ttl = ttl
        self._prefix = prefix
        self._clock: Clock = clock or SystemClock()
        self._retry_after = retry_after
        self._warn_every = warn_every
        self.on_evict = on_evict
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # A cache must fail fast; redis-py would otherwise retry each command 3 times.
            retry=Retry(NoBackoff(), 0),
        )
        self._known = 0
        self._written_since_refresh = 0
        self._down_until = float("-inf")
        self._last_warning = float("-inf")

    @property
    def enabled(self) -> bool:
        """Whether anything can be stored at all."""
        # SET EX needs at least one whole second.
        return self._ttl >= 1

    @property
    def entries(self) -> int:
        """Estimated entries under the prefix (see the class docstring)."""
        return self._known + self._written_since_refresh

    def _available(self) -> bool:
        return self._clock.monotonic() >= self._down_until

    def _failed(self, action: str, exc: Exception) -> None:
        now = self._clock.monotonic()
        self._down_until = now + self._retry_after
        if now - self._last_warning >= self._warn_every:
            self._last_warning = now
            logger.warning(
                "redis cache %s failed (%s: %s); serving without the cache for %gs",
                action,
                type(exc).__name__,
                exc,
                self._retry_after,
            )

    async def get(self, key: str) -> CachedReply | None:
        """The stored reply, or None on a miss or any Redis trouble."""
        if not self._available():
            return None
        try:
            raw = await self._redis.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            self._failed("get", exc)
            return None
        if raw is None:
            return None
        try:
            return CachedReply.from_json(raw)
        except ValueError:
            return None  # written by something else, or an older format: a miss

    async def set(self, key: str, reply: CachedReply) -> None:
        """Store a reply with the TTL; a Redis failure only skips the write."""
        if not self.enabled or not self._available():
            return
        try:
            await self._redis.set(self._prefix + key, reply.to_json(), ex=int(self._ttl))
        except (RedisError, OSError) as exc:
            self._failed("set", exc)
            return
        self._written_since_refresh += 1

    async def refresh_entries(self) -> int:
        """Count the keys under the prefix with SCAN; keep the last count on failure."""
        if not self._available():
            return self.entries
        count = 0
        try:
            async for _ in self._redis.scan_iter(match=self._prefix + "*", count=1000):
                count += 1
        except (RedisError, OSError) as exc:
            self._failed("scan", exc)
            return self.entries
        self._known, self._written_since_refresh = count, 0
        return count

    async def aclose(self) -> None:
        """Close the Redis connections."""
        # cast: the installed types-redis stubs predate aclose(); close() is deprecated.
        await cast(_Closable, self._redis).aclose()


def make_cache(
    settings: CacheSettings,
    redis_url: str | None,
    clock: Clock,
    on_evict: OnEvict | None = None,
) -> ResponseCache:
    """The cache the settings ask for: Redis when a URL is set, else in memory."""
    if not settings.enabled:
        return MemoryCache(0, 0.0, clock, on_evict)
    if redis_url:
        return RedisCache(redis_url, settings.ttl, clock=clock, on_evict=on_evict)
    return MemoryCache(settings.max_entries, settings.ttl, clock, on_evict)
