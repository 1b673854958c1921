"""Rate limits that all of a user's sockets, and every node, count together.

Per user and per client IP: chat messages, AI calls (the spend guard) and, per IP, guest
logins (SPEC §2). Reconnecting gives no fresh allowance: the count is keyed by user and
IP, not by socket.

The counting is the ``limits`` package's **moving window**: at most N hits in *any*
``window_s`` seconds, exactly. A fixed window lets 2N through around a boundary, and the
sliding-window counter is an estimate that admits up to ~2N in the worst case (all of the
previous window's hits at its end); for a cost guard the exact bound is worth its price,
one timestamp kept per hit for one window (a Redis list of at most N entries per key,
its TTL the window). The refusal's ``Retry-After`` is then exact too: when the oldest
hit leaves the window. Refused attempts are not recorded, so hammering does not extend
the wait.

With ``redis.url`` the windows live in Redis (the package's async Redis storage on the
redis-py client the project already uses), so all nodes share them; otherwise in this
process (``MemoryWindows``). While Redis is unreachable each check falls back to memory
(so the chat never fails or waits on it), Redis is left alone for ``redis_retry_s``, and
the outage is logged once and announced with ``LimitsStorageChanged``. At most
``redis_connections`` checks talk to Redis at once; one that cannot get its turn within
``redis_wait_s`` is counted in memory too (``busy_calls``) without calling it an outage.

``ConnectionFloodGuard`` is the other half: one socket's own budget, in memory and free
of I/O, checked before the shared limits so that a flood of frames (bad ones included)
is stopped locally and never reaches Redis.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, cast

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chatwatch.chat.memory_windows import MemoryWindows
from chatwatch.clock import Clock, SystemClock
from chatwatch.config import LimitsSettings
from chatwatch.events import EventBus, LimitsStorageChanged
from chatwatch.vocabulary import SecurityEventType

__all__ = [
    "ChatLimits",
    "ConnectionFloodGuard",
    "LimitExceeded",
    "LimitKind",
    "LimitScope",
    "Refusal",
    "client_key",
    "identity_digest",
    "limits_uri",
]

logger = logging.getLogger(__name__)

_REDIS_ERRORS = (StorageError, RedisError, OSError, asyncio.TimeoutError)


class _Unanswered(Enum):
    TOKEN = 0


_UNANSWERED = _Unanswered.TOKEN  # Redis gave no answer: count in memory


class LimitKind(StrEnum):
    """What is being counted."""

    MESSAGE = "message"
    AI = "ai"
    GUEST_LOGIN = "guest_login"
    FRAMES = "frames"  # any frame on one socket (ConnectionFloodGuard)


class LimitScope(StrEnum):
    """Whose allowance ran out."""

    USER = "user"
    IP = "ip"
    CONNECTION = "connection"


_WHAT = {
    LimitKind.MESSAGE: "messages",
    LimitKind.AI: "AI replies",
    LimitKind.GUEST_LOGIN: "guest logins",
    LimitKind.FRAMES: "frames",
}
_WHO = {
    LimitScope.USER: "for your account",
    LimitScope.IP: "from your address",
    LimitScope.CONNECTION: "on this connection",
}
_SECURITY_TYPES = {
    LimitKind.MESSAGE: SecurityEventType.RATE_LIMITED,
    LimitKind.AI: SecurityEventType.AI_SPEND_LIMITED,
    LimitKind.GUEST_LOGIN: SecurityEventType.GUEST_LOGIN_FLOOD,
    LimitKind.FRAMES: SecurityEventType.RATE_LIMITED,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A hit over its limit: which one, and when to try again."""

    kind: LimitKind
    scope: LimitScope
    amount: int
    window_s: int
    retry_after_s: int  # whole seconds, at least 1

    @property
    def limit(self) -> str:
        """The limit in words: ``60 messages per 60 s per user``."""
        return f"{self.amount} {_WHAT[self.kind]} per {self.window_s} s per {self.scope}"

    @property
    def message(self) -> str:
        """A short reason for the visitor (an error frame's ``message``, a 429's detail)."""
        per = "a minute" if self.window_s == 60 else f"in {self.window_s} s"
        return (
            f"more than {self.amount} {_WHAT[self.kind]} {per} {_WHO[self.scope]}; "
            f"try again in {self.retry_after_s} s"
        )

    @property
    def security_type(self) -> SecurityEventType:
        """The SecurityEvent type that reports this refusal."""
        return _SECURITY_TYPES[self.kind]


class LimitExceeded(Exception):
    """Raised where a refusal must unwind a call (an AI call over its limit)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def _retry_after(seconds: float, window_s: int) -> int:
    if not math.isfinite(seconds):
        return window_s
    return min(window_s, max(1, math.ceil(seconds)))


# --- identities ----------------------------------------------------------------------


def identity_digest(text: str) -> str:
    """A fixed-length key part for any user id or address (24 hex digits)."""
    raw = text.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=12, person=b"chatwatch-lim").hexdigest()


def client_key(ip: str) -> str:
    """Who "one client IP" is: an IPv4 address (IPv4-mapped IPv6 included), or the /64
    network of an IPv6 address — one subscriber's share, so that rotating through it
    buys no fresh allowance. Anything else is taken as it is, capped at 100 characters."""
    return _client_key(ip.strip()[:100])


@functools.lru_cache(maxsize=4096)  # parsing is a fifth of a memory check's cost
def _client_key(text: str) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return "raw:" + text
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return f"v4:{addr.ipv4_mapped}"
        return f"v6:{int(addr) >> 64:016x}/64"
    return f"v4:{addr}"


# --- the shared limits ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: LimitKind
    scope: LimitScope
    item: RateLimitItem


def limits_uri(redis_url: str) -> str:
    """The ``limits`` storage URI for a redis://, rediss:// or unix:// URL."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class ChatLimits:
    """Per-user and per-IP limits for chat messages, AI calls and guest logins.

    Each ``hit_*`` records one hit and returns None, or returns a ``Refusal`` (and records
    nothing). Never raises for storage trouble: Redis failures fall back to memory.
    """

    def __init__(
        self,
        settings: LimitsSettings,
        redis_url: str | None = None,
        *,
        clock: Clock | None = None,
        bus: EventBus | None = None,
        key_prefix: str = "chatwatch:limits",
        window_s: int = 60,
        redis_timeout_s: float = 0.5,
        redis_retry_s: float = 5.0,
        redis_connections: int = 16,
        redis_wait_s: float | None = None,
    ) -> None:
        if window_s < 1:
            raise ValueError("window_s must be at least 1 s")
        self._clock: Clock = clock or SystemClock()
        self._bus = bus
        self.window_s = window_s
        self._redis_retry_s = redis_retry_s

        def rule(kind: LimitKind, scope: LimitScope, amount: int) -> _Rule:
            return _Rule(kind, scope, RateLimitItemPerSecond(amount, window_s))

        self._rules = {
            (LimitKind.MESSAGE, LimitScope.USER): rule(
                LimitKind.MESSAGE, LimitScope.USER, settings.messages_per_minute
            ),
            (LimitKind.MESSAGE, LimitScope.IP): rule(
                LimitKind.MESSAGE, LimitScope.IP, settings.messages_per_minute_per_ip
            ),
            (LimitKind.AI, LimitScope.USER): rule(
                LimitKind.AI, LimitScope.USER, settings.ai_requests_per_minute
            ),
            (LimitKind.AI, LimitScope.IP): rule(
                LimitKind.AI, LimitScope.IP, settings.ai_requests_per_minute_per_ip
            ),
            (LimitKind.GUEST_LOGIN, LimitScope.IP): rule(
                LimitKind.GUEST_LOGIN, LimitScope.IP, settings.guest_logins_per_minute
            ),
        }
        self.memory = MemoryWindows(self._clock)
        self._memory = MovingWindowRateLimiter(self.memory)
        self._wait_s = redis_timeout_s if redis_wait_s is None else redis_wait_s
        self._pool: ConnectionPool | None = None
        self._redis: MovingWindowRateLimiter | None = None
        # At most this many checks talk to Redis at once, each on a connection of its own
        # (reused: opening one costs ~5 ms). Waiting for a turn is bounded like the rest.
        self._turns = asyncio.Semaphore(redis_connections)
        if redis_url:
            self._pool = ConnectionPool.from_url(
                redis_url,
                max_connections=redis_connections,
                socket_timeout=redis_timeout_s,
                socket_connect_timeout=redis_timeout_s,
                # A limit check must fail fast; redis-py would retry each command 3 times.
                retry=Retry(NoBackoff(), 0),
            )
            storage = RedisStorage(
                limits_uri(redis_url),
                implementation="redispy",
                key_prefix=key_prefix,
                wrap_exceptions=True,
                connection_pool=cast(Any, self._pool),
            )
            self._redis = MovingWindowRateLimiter(storage)
        self._down_until = float("-inf")
        self._degraded = False
        # Bumped when an outage starts: a check that began before it cannot end it.
        self._generation = 0
        self._last_busy_warning = float("-inf")
        self.outages = 0
        self.fallback_calls = 0  # checks counted in memory instead of Redis (all time)
        self.busy_calls = 0  # of which: Redis answered too slowly for the checks arriving
        self._outage_fallbacks = 0

    # --- what the chat calls -------------------------------------------------------------

    @property
    def backend(self) -> str:
        """Where the counts live: ``redis`` or ``memory``."""
        return "redis" if self._redis is not None else "memory"

    @property
    def degraded(self) -> bool:
        """True while Redis is configured but unreachable (counting in memory)."""
        return self._degraded

    async def hit_message(self, user_id: str, client_ip: str) -> Refusal | None:
        """Count one chat message (or quick action) of ``user_id`` from ``client_ip``."""
        return await self._hit_user_then_ip(LimitKind.MESSAGE, user_id, client_ip)

    async def hit_ai(self, user_id: str, client_ip: str) -> Refusal | None:
        """Count one AI call, before making it (cache hits are not AI calls)."""
        return await self._hit_user_then_ip(LimitKind.AI, user_id, client_ip)

    async def hit_guest_login(self, client_ip: str) -> Refusal | None:
        """Count one guest login from ``client_ip``."""
        return await self._hit(
            self._rules[LimitKind.GUEST_LOGIN, LimitScope.IP], client_key(client_ip)
        )

    async def aclose(self) -> None:
        """Close the Redis connections."""
        if self._pool is not None:
            await self._pool.disconnect()

    # --- inside --------------------------------------------------------------------------

    async def _hit_user_then_ip(
        self, kind: LimitKind, user_id: str, client_ip: str
    ) -> Refusal | None:
        # The user's own limit first: one user hammering past it then costs the other users
        # behind the same address (an office, a NAT) nothing.
        refusal = await self._hit(self._rules[kind, LimitScope.USER], user_id)
        if refusal is not None:
            return refusal
        return await self._hit(self._rules[kind, LimitScope.IP], client_key(client_ip))

    async def _hit(self, rule: _Rule, identity: str) -> Refusal | None:
        ids = (rule.kind.value, rule.scope.value, identity_digest(identity))
        if self._redis is not None:
            answer = await self._hit_redis(self._redis, rule, ids)
            if answer is not _UNANSWERED:
                return answer
            self.fallback_calls += 1
            self._outage_fallbacks += 1
        if await self._memory.hit(rule.item, *ids):
            return None
        stats = await self._memory.get_window_stats(rule.item, *ids)
        return self._refusal(rule, stats.reset_time - self._clock.time())

    async def _hit_redis(
        self, redis: MovingWindowRateLimiter, rule: _Rule, ids: tuple[str, ...]
    ) -> Refusal | _Unanswered | None:
        if self._clock.monotonic() < self._down_until:
            return _UNANSWERED
        generation = self._generation
        try:
            async with asyncio.timeout(self._wait_s):
                await self._turns.acquire()
        except TimeoutError:
            self._busy()
            return _UNANSWERED
        try:
            admitted = await redis.hit(rule.item, *ids)
            stats = None if admitted else await redis.get_window_stats(rule.item, *ids)
        except _REDIS_ERRORS as exc:
            self._redis_failed(exc, generation)
            return _UNANSWERED
        finally:
            self._turns.release()
        self._redis_answered(generation)
        if stats is None:
            return None
        # The package's Redis windows are stamped with the wall clock.
        return self._refusal(rule, stats.reset_time - time.time())

    def _refusal(self, rule: _Rule, seconds: float) -> Refusal:
        return Refusal(
            kind=rule.kind,
            scope=rule.scope,
            amount=rule.item.amount,
            window_s=self.window_s,
            retry_after_s=_retry_after(seconds, self.window_s),
        )

    def _busy(self) -> None:
        # Not an outage: more checks arrive than Redis answers; this one counts in memory.
        self.busy_calls += 1
        now = self._clock.monotonic()
        if now - self._last_busy_warning >= 60.0:
            self._last_busy_warning = now
            logger.warning(
                "rate-limit checks waited %gs for a turn at redis; counting the late ones "
                "in this process (%d so far)",
                self._wait_s,
                self.busy_calls,
            )

    def _redis_failed(self, exc: BaseException, generation: int) -> None:
        if generation != self._generation:
            return  # began before the outage already declared: nothing new
        self._down_until = self._clock.monotonic() + self._redis_retry_s
        if self._degraded:
            return  # a retry during the outage failed too
        self._degraded = True
        self._generation += 1
        self.outages += 1
        self._outage_fallbacks = 0
        cause = exc.storage_error if isinstance(exc, StorageError) else exc
        error = f"{type(cause).__name__}: {cause}"[:300]
        logger.warning(
            "rate-limit storage redis unreachable (%s); counting limits in this process "
            "until it answers (retried every %gs)",
            error,
            self._redis_retry_s,
        )
        self._announce("degraded", error)

    def _redis_answered(self, generation: int) -> None:
        # Only a check that began during the outage (a retry) ends it; one that was
        # already under way when Redis failed says nothing about Redis now.
        if not self._degraded or generation != self._generation:
            return
        self._degraded = False
        logger.info(
            "rate-limit storage redis answers again; %d checks were counted in memory meanwhile",
            self._outage_fallbacks,
        )
        self._announce("recovered", "")

    def _announce(self, state: str, error: str) -> None:
        if self._bus is not None:
            self._bus.emit(
                LimitsStorageChanged(
                    state=state,
                    backend="redis",
                    error=error,
                    fallback_calls=self._outage_fallbacks,
                )
            )


# --- one socket ----------------------------------------------------------------------


class ConnectionFloodGuard:
    """One socket's own frame budget: a token bucket of ``per_minute`` frames, bursts up to
    that many, in memory and without I/O.

    Check it for every frame but pings, bad ones included, before the shared limits. With
    ``per_minute`` at the per-user message limit it never refuses a socket that keeps
    within that limit: any sequence with at most N hits in every minute also fits a bucket
    of N tokens refilled at N a minute. So it only bites on floods, and those stop here
    instead of costing a Redis round trip each.
    """

    def __init__(self, per_minute: int, clock: Clock) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._tokens = float(per_minute)
        self._clock = clock
        self._last = clock.monotonic()

    def take(self) -> Refusal | None:
        """Spend one token: None, or a Refusal when the bucket is empty (nothing spent)."""
        now = self._clock.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        # The epsilon absorbs float rounding, so a frame exactly one refill after the last
        # one is not refused for lacking 1e-12 of a token.
        if self._tokens >= 1.0 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1.0)
            return None
        return Refusal(
            kind=LimitKind.FRAMES,
            scope=LimitScope.CONNECTION,
            amount=int(self._capacity),
            window_s=60,
            retry_after_s=_retry_after((1.0 - self._tokens) / self._rate, 60),
        )
