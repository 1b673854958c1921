"""One AI reply: cache, budget, circuit breaker, provider stream with retry, fallback,
pricing — each fact an event.

A reply goes: cache hit? → today's budget left? → circuit closed (or this is the probe)?
→ the provider, retried once before its first byte on 429/5xx/refused connection →
priced and counted. When the primary cannot answer and nothing of its reply reached the
visitor, the configured fallback (the built-in consultant) answers instead; otherwise
``AIProviderError`` goes to the caller, who shows the visitor ``err.public_message``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chatwatch.chat.attempt import Answer, ClientGone, OnDelta, Outlet, call_once
from chatwatch.chat.budget import DailyBudget
from chatwatch.chat.cache import CachedReply, ResponseCache, cache_key
from chatwatch.chat.pricing import PriceBook
from chatwatch.chat.providers.base import (
    AIProvider,
    AIProviderError,
    AIRequest,
    ChatTurn,
)
from chatwatch.chat.resilience import CircuitBreaker, CircuitState, RetryPolicy
from chatwatch.clock import Clock
from chatwatch.correlation import traceparent
from chatwatch.events import (
    AIFallbackUsed,
    AIRequestCompleted,
    AIRequestFailed,
    AIRequestRetried,
    AIRequestStarted,
    AIUnpriced,
    CacheLookup,
    CacheStored,
    ErrorOccurred,
    EventBus,
)
from chatwatch.vocabulary import AIOutcome, ErrorCode, ErrorType

__all__ = ["Admit", "Consultant", "Reply"]

Admit = Callable[[], Awaitable[None]]

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Reply:
    """A finished reply, as the ``ai_message`` frame reports it."""

    content: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cached: bool
    latency_ms: float
    quick_actions: tuple[str, ...]
    handoff: bool
    estimated_usage: bool
    # Set when the fallback answered instead of the primary: why the primary did not.
    fallback: AIOutcome | None = None


class Consultant:
    """Answers a conversation through the provider, the cache in front of it."""

    def __init__(
        self,
        provider: AIProvider,
        cache: ResponseCache | None,
        prices: PriceBook,
        bus: EventBus,
        clock: Clock,
        *,
        model: str,
        timeout: float,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        fallback: AIProvider | None = None,
        budget: DailyBudget | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self._cache = cache
        self._prices = prices
        self._bus = bus
        self._clock = clock
        self._model = model
        self._timeout = timeout  # the whole call, retries and their waits included
        self._retry = retry
        self._breaker = breaker
        self._fallback = fallback
        self._budget = budget
        self._sleep = sleep
        self._unpriced_seen: set[str] = set()

    @property
    def circuit_state(self) -> CircuitState:
        """The primary provider's circuit: closed, open or half_open (closed if none)."""
        return CircuitState.CLOSED if self._breaker is None else self._breaker.state

    @property
    def budget(self) -> DailyBudget | None:
        """Today's AI budget, when one is configured."""
        return self._budget

    async def reply(
        self,
        turns: Sequence[ChatTurn],
        correlation_id: str,
        on_delta: OnDelta,
        quick_action: str | None = None,
        admit: Admit | None = None,
    ) -> Reply:
        """Stream a reply to ``turns`` through ``on_delta``; raise AIProviderError on failure.

        ``admit`` runs after a cache miss, before anything is spent: it raises to refuse the
        AI call (the per-user and per-IP AI limits), and a cache hit never calls it.
        """
        started = self._clock.monotonic()
        key = cache_key(self._model, turns, quick_action) if self._cache is not None else None
        if self._cache is not None and key is not None:
            hit = await self._cache.get(key)
            self._bus.emit(CacheLookup(hit=hit is not None, entries=self._cache.entries))
            if hit is not None:
                await on_delta(hit.content)
                return Reply(
                    content=hit.content,
                    model=hit.model,
                    input_tokens=hit.input_tokens,
                    output_tokens=hit.output_tokens,
                    cost_usd=0.0,  # nothing was spent: the answer came from the cache
                    cached=True,
                    latency_ms=(self._clock.monotonic() - started) * 1000,
                    quick_actions=hit.quick_actions,
                    handoff=hit.handoff,
                    estimated_usage=False,
                )
        if admit is not None:
            await admit()
        reply = await self._answer(turns, correlation_id, Outlet(on_delta), quick_action, started)
        # A fallback answer is a stop-gap: caching it would keep serving it after recovery.
        if self._cache is not None and key is not None and reply.fallback is None:
            await self._cache.set(
                key,
                CachedReply(
                    content=reply.content,
                    model=reply.model,
                    input_tokens=reply.input_tokens,
                    output_tokens=reply.output_tokens,
                    quick_actions=reply.quick_actions,
                    handoff=reply.handoff,
                ),
            )
            self._bus.emit(CacheStored(entries=self._cache.entries))
        return reply

    async def _answer(
        self,
        turns: Sequence[ChatTurn],
        correlation_id: str,
        out: Outlet,
        quick_action: str | None,
        started: float,
    ) -> Reply:
        try:
            return await self._primary(turns, correlation_id, out, quick_action, started)
        except AIProviderError as err:
            # Text already shown cannot be taken back: a second answer would follow it.
            if self._fallback is None or out.sent_text:
                self._report_unavailable(err, correlation_id)
                raise
            out.discard()
            try:
                return await self._fall_back(
                    self._fallback, err.reason, turns, correlation_id, out, quick_action, started
                )
            except AIProviderError:
                self._report_unavailable(err, correlation_id)
                raise err from None

    async def _primary(
        self,
        turns: Sequence[ChatTurn],
        correlation_id: str,
        out: Outlet,
        quick_action: str | None,
        started: float,
    ) -> Reply:
        provider = self.provider
        if self._budget is not None and not await self._budget.allows():
            raise self._refused(
                AIOutcome.BUDGET_EXCEEDED,
                f"daily AI budget of ${self._budget.limit_usd:g} spent for {self._budget.day}"
                f" (${self._budget.spent_usd:.4f})",
                correlation_id,
                started,
            )
        permit = None
        if self._breaker is not None:
            permit = self._breaker.acquire()
            if permit is None:
                raise self._refused(
                    AIOutcome.CIRCUIT_OPEN,
                    f"circuit {self._breaker.state}: no call to {provider.name} "
                    f"(next probe in {self._breaker.retry_in():.1f}s)",
                    correlation_id,
                    started,
                )
        self._bus.emit(
            AIRequestStarted(
                provider=provider.name,
                model=self._model,
                correlation_id=correlation_id,
                context_messages=len(turns),
            )
        )
        try:
            answer = await self._attempts(
                provider, turns, correlation_id, out, quick_action, started
            )
        except AIProviderError as err:
            if self._breaker is not None and permit is not None:
                self._breaker.failed(permit)
            self._emit_failed(provider.name, self._model, correlation_id, err, started)
            raise
        except BaseException as gone:
            # The visitor left (cancellation) or their socket broke: no verdict on the upstream.
            if self._breaker is not None and permit is not None:
                self._breaker.release(permit)
            if isinstance(gone, asyncio.CancelledError | ClientGone):
                # The call's trail ends with what became of it (counted as cancelled).
                cancelled = AIProviderError("the visitor left", reason=AIOutcome.CANCELLED)
                self._emit_failed(provider.name, self._model, correlation_id, cancelled, started)
            raise
        if self._breaker is not None and permit is not None:
            self._breaker.succeeded(permit)
        completion = answer.completion
        cost, priced = self._prices.cost(
            provider.name, completion.model, completion.input_tokens, completion.output_tokens
        )
        if not priced:
            first = completion.model not in self._unpriced_seen
            if first and len(self._unpriced_seen) < 1000:
                self._unpriced_seen.add(completion.model)
            self._bus.emit(
                AIUnpriced(provider=provider.name, model=completion.model, first_time=first)
            )
        if self._budget is not None:
            self._budget.spend(cost)
        return self._completed(provider.name, correlation_id, answer, cost, priced, started)

    async def _fall_back(
        self,
        fallback: AIProvider,
        reason: AIOutcome,
        turns: Sequence[ChatTurn],
        correlation_id: str,
        out: Outlet,
        quick_action: str | None,
        started: float,
    ) -> Reply:
        self._bus.emit(
            AIFallbackUsed(
                provider=self.provider.name,
                fallback_model=fallback.model,
                correlation_id=correlation_id,
                reason=reason,
            )
        )
        self._bus.emit(
            AIRequestStarted(
                provider=fallback.name,
                model=fallback.model,
                correlation_id=correlation_id,
                context_messages=len(turns),
            )
        )
        try:
            answer = await call_once(
                fallback,
                self._request(turns, correlation_id, quick_action, self._deadline()),
                out,
                self._clock,
                started,
                self._timeout,
            )
        except AIProviderError as err:
            self._emit_failed(fallback.name, fallback.model, correlation_id, err, started)
            raise
        # The fallback runs here and costs nothing; it is not held to the daily budget.
        reply = self._completed(fallback.name, correlation_id, answer, 0.0, True, started)
        return dataclasses.replace(reply, fallback=reason)

    async def _attempts(
        self,
        provider: AIProvider,
        turns: Sequence[ChatTurn],
        correlation_id: str,
        out: Outlet,
        quick_action: str | None,
        started: float,
    ) -> Answer:
        """Call the provider, trying again on a retryable failure before any text was sent."""
        deadline = self._deadline()
        loop = asyncio.get_running_loop()
        retry = 0
        while True:
            request = self._request(turns, correlation_id, quick_action, deadline)
            try:
                return await call_once(provider, request, out, self._clock, started, self._timeout)
            except AIProviderError as err:
                if out.sent_text or self._retry is None:
                    raise
                retry += 1
                delay = self._retry.delay(retry, err, deadline - loop.time())
                if delay is None:
                    raise
                out.discard()
                self._bus.emit(
                    AIRequestRetried(
                        provider=provider.name,
                        model=self._model,
                        correlation_id=correlation_id,
                        attempt=retry + 1,
                        reason=err.detail,
                        delay_s=delay,
                    )
                )
                await self._sleep(delay)

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._timeout

    def _request(
        self,
        turns: Sequence[ChatTurn],
        correlation_id: str,
        quick_action: str | None,
        deadline: float,
    ) -> AIRequest:
        return AIRequest(
            turns=turns,
            correlation_id=correlation_id,
            headers={
                "X-Correlation-ID": correlation_id,
                "traceparent": traceparent(correlation_id),
            },
            quick_action=quick_action,
            deadline=deadline,
        )

    def _refused(
        self, reason: AIOutcome, detail: str, correlation_id: str, started: float
    ) -> AIProviderError:
        """A call not even attempted (budget spent, circuit open), reported as failed."""
        err = AIProviderError(detail, reason=reason)
        self._emit_failed(self.provider.name, self._model, correlation_id, err, started)
        return err

    def _emit_failed(
        self, provider: str, model: str, correlation_id: str, err: AIProviderError, started: float
    ) -> None:
        self._bus.emit(
            AIRequestFailed(
                provider=provider,
                model=model,
                correlation_id=correlation_id,
                outcome=err.reason,
                error_type=type(err).__name__,
                detail=err.detail,
                duration_s=self._clock.monotonic() - started,
            )
        )

    def _report_unavailable(self, err: AIProviderError, correlation_id: str) -> None:
        """The visitor gets an ``ai_unavailable`` error frame for this one."""
        self._bus.emit(
            ErrorOccurred(
                type=ErrorType.TIMEOUT
                if err.reason is AIOutcome.TIMEOUT
                else ErrorType.AI_PROVIDER,
                code=ErrorCode.AI_UNAVAILABLE,
                detail=err.detail,
                correlation_id=correlation_id,
            )
        )

    def _completed(
        self,
        provider: str,
        correlation_id: str,
        answer: Answer,
        cost: float,
        priced: bool,
        started: float,
    ) -> Reply:
        completion = answer.completion
        duration = self._clock.monotonic() - started
        self._bus.emit(
            AIRequestCompleted(
                provider=provider,
                model=completion.model,
                correlation_id=correlation_id,
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                cost_usd=cost,
                priced=priced,
                duration_s=duration,
                time_to_first_token_s=answer.first_token_s,
                cached=False,
                estimated_usage=completion.estimated_usage,
            )
        )
        return Reply(
            content=completion.content,
            model=completion.model,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cost_usd=cost,
            cached=False,
            latency_ms=duration * 1000,
            quick_actions=completion.quick_actions,
            handoff=completion.handoff,
            estimated_usage=completion.estimated_usage,
        )
