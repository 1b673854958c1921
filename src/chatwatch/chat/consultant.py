"""One AI reply: cache look-up, provider stream, timing, pricing — each fact an event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chatwatch.chat.cache import CachedReply, ResponseCache, cache_key
from chatwatch.chat.pricing import PriceBook
from chatwatch.chat.providers.base import (
    AIProvider,
    AIProviderError,
    AIRequest,
    AITimeout,
    ChatTurn,
    Completion,
    TextDelta,
)
from chatwatch.clock import Clock
from chatwatch.correlation import traceparent
from chatwatch.events import (
    AIRequestCompleted,
    AIRequestFailed,
    AIRequestStarted,
    AIUnpriced,
    CacheLookup,
    CacheStored,
    ErrorOccurred,
    EventBus,
)

__all__ = ["Consultant", "Reply"]

OnDelta = Callable[[str], Awaitable[None]]


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
    ) -> None:
        self.provider = provider
        self._cache = cache
        self._prices = prices
        self._bus = bus
        self._clock = clock
        self._model = model
        self._timeout = timeout
        self._unpriced_seen: set[str] = set()

    async def reply(
        self,
        turns: Sequence[ChatTurn],
        correlation_id: str,
        on_delta: OnDelta,
        quick_action: str | None = None,
    ) -> Reply:
        """Stream a reply to ``turns`` through ``on_delta``; raise AIProviderError on failure."""
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
        reply = await self._call(turns, correlation_id, on_delta, quick_action, started)
        if self._cache is not None and key is not None:
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

    async def _call(
        self,
        turns: Sequence[ChatTurn],
        correlation_id: str,
        on_delta: OnDelta,
        quick_action: str | None,
        started: float,
    ) -> Reply:
        provider = self.provider
        self._bus.emit(
            AIRequestStarted(
                provider=provider.name,
                model=self._model,
                correlation_id=correlation_id,
                context_messages=len(turns),
            )
        )
        request = AIRequest(
            turns=turns,
            correlation_id=correlation_id,
            headers={
                "X-Correlation-ID": correlation_id,
                "traceparent": traceparent(correlation_id),
            },
            quick_action=quick_action,
        )
        first_token: float | None = None
        completion: Completion | None = None
        try:
            # A safety net over the provider's own timeout: no reply may hang a socket.
            async with asyncio.timeout(self._timeout):
                async for item in provider.stream(request):
                    if isinstance(item, TextDelta):
                        if first_token is None:
                            first_token = self._clock.monotonic() - started
                        if item.text:
                            await on_delta(item.text)
                    else:
                        completion = item
            if completion is None:
                raise AIProviderError("the provider ended without a completion")
        except (AIProviderError, TimeoutError) as err:
            timed_out = isinstance(err, AITimeout | TimeoutError)
            outcome = "timeout" if timed_out else "error"
            detail = str(err) or ("timed out" if timed_out else "provider error")
            self._bus.emit(
                AIRequestFailed(
                    provider=provider.name,
                    model=self._model,
                    correlation_id=correlation_id,
                    outcome=outcome,
                    error_type=type(err).__name__,
                    detail=detail,
                    duration_s=self._clock.monotonic() - started,
                )
            )
            self._bus.emit(
                ErrorOccurred(
                    type="timeout" if timed_out else "ai_provider",
                    code="ai_unavailable",
                    detail=detail,
                    correlation_id=correlation_id,
                )
            )
            if isinstance(err, AIProviderError):
                raise
            raise AITimeout(f"no complete reply within {self._timeout:g}s") from None
        duration = self._clock.monotonic() - started
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
        self._bus.emit(
            AIRequestCompleted(
                provider=provider.name,
                model=completion.model,
                correlation_id=correlation_id,
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                cost_usd=cost,
                priced=priced,
                duration_s=duration,
                time_to_first_token_s=first_token,
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
