"""Staying useful while the AI upstream fails: a retry policy and a circuit breaker.

``RetryPolicy`` decides whether (and how long to wait before) a failed attempt is tried
again: only failures the provider marked ``retryable`` (429, 5xx, refused connection,
all before the first byte), only while the whole-call deadline leaves room, and never
longer than a small cap when the upstream asks for a ``Retry-After``.

``CircuitBreaker`` stops calling an upstream that is known to be down::

    closed ──N consecutive failures──▶ open ──cool-off passed, next call──▶ half_open
      ▲                                  ▲                                     │
      └────────── the probe succeeded ───┼──────── the probe failed ───────────┘

In ``half_open`` exactly one call (the probe) reaches the upstream; every other call
fails fast until the probe's verdict. A call that ends without a verdict (the visitor
left: cancellation) frees the probe slot and counts neither way.

Hand-written rather than taken from PyPI: aiobreaker (last release 2021), purgatory and
pybreaker read the system clock themselves (no injected clock, so no test without
sleeping), and purgatory lets every concurrent call through while half-open.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from chatwatch.chat.providers.base import AIProviderError
from chatwatch.clock import Clock
from chatwatch.events import AICircuitChanged, EventBus

__all__ = ["CircuitBreaker", "CircuitState", "Permit", "RetryPolicy"]

# A retry that would leave the attempt less than this before the deadline cannot succeed.
_MIN_ATTEMPT_S = 0.5


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and after how long a failure before the first byte is tried again."""

    attempts: int = 1  # retries after the first try (0: never retry)
    base_delay: float = 0.25  # seconds before the first retry, jittered to 50-100 %
    max_retry_after: float = 5.0  # a longer Retry-After is not waited for: fail over now
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, retry: int, err: AIProviderError, remaining: float) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based), or None: do not retry.

        ``remaining`` is what is left of the whole-call deadline.
        """
        if not err.retryable or retry > self.attempts:
            return None
        # Jitter spreads the retries of many visitors hit by the same outage.
        backoff = self.base_delay * 2.0 ** (retry - 1) * (0.5 + 0.5 * self.rand())
        if err.retry_after is not None:
            if err.retry_after > self.max_retry_after:
                return None  # waiting that long would only delay the visitor's error/fallback
            wait = err.retry_after + backoff / 2
        else:
            wait = backoff
        if wait + _MIN_ATTEMPT_S > remaining:
            return None
        return wait


class CircuitState(StrEnum):
    """The breaker's state (the ``state`` of ``AICircuitChanged``)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(eq=False, slots=True)
class Permit:
    """Leave to make one call; hand it back with a verdict (or ``release`` without one)."""

    generation: int
    probe: bool
    settled: bool = False


class CircuitBreaker:
    """Counts consecutive failed calls; fails fast while open; probes once after a cool-off."""

    def __init__(
        self,
        *,
        failures: int,
        cooloff: float,
        clock: Clock,
        bus: EventBus | None = None,
        provider: str = "provider",
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        if cooloff < 0:
            raise ValueError("cooloff cannot be negative")
        self._threshold = failures
        self._cooloff = cooloff
        self._clock = clock
        self._bus = bus
        self._provider = provider
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        # Bumped on every transition: a verdict from a call admitted before it is stale.
        self._generation = 0

    @property
    def state(self) -> CircuitState:
        """The current state (open stays open until a call arrives after the cool-off)."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failed calls in a row, counted while closed."""
        return self._failures

    def retry_in(self) -> float:
        """Seconds until the next probe may start (0 unless open)."""
        if self._state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cooloff - self._clock.monotonic())

    def acquire(self) -> Permit | None:
        """Leave for one call, or None when it must fail fast (open, or a probe under way)."""
        if self._state is CircuitState.OPEN:
            if self.retry_in() > 0:
                return None
            self._change(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            if self._probing:
                return None
            self._probing = True
            return Permit(self._generation, probe=True)
        return Permit(self._generation, probe=False)

    def succeeded(self, permit: Permit) -> None:
        """The call behind ``permit`` got its reply."""
        if not self._settle(permit):
            return
        if permit.probe:
            self._probing = False
            self._change(CircuitState.CLOSED)
            self._failures = 0
        else:
            self._failures = 0

    def failed(self, permit: Permit) -> None:
        """The call behind ``permit`` failed at the upstream (error, timeout, bad reply)."""
        if not self._settle(permit):
            return
        self._failures += 1
        if permit.probe:
            self._probing = False
            self._open()
        elif self._failures >= self._threshold:
            self._open()

    def release(self, permit: Permit) -> None:
        """The call ended without a verdict (cancelled by the visitor leaving)."""
        if self._settle(permit) and permit.probe:
            self._probing = False

    def _settle(self, permit: Permit) -> bool:
        """True when this permit's verdict still counts (first report, current generation)."""
        if permit.settled:
            return False
        permit.settled = True
        return permit.generation == self._generation

    def _open(self) -> None:
        self._opened_at = self._clock.monotonic()
        self._change(CircuitState.OPEN)

    def _change(self, state: CircuitState) -> None:
        previous, self._state = self._state, state
        self._generation += 1
        if self._bus is not None:
            self._bus.emit(
                AICircuitChanged(
                    provider=self._provider,
                    state=state,
                    previous=previous,
                    consecutive_failures=self._failures,
                    open_for_s=self._cooloff if state is CircuitState.OPEN else 0.0,
                )
            )
