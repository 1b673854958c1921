"""The consultant: cache in front of the provider, pricing, and every fact as an event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chatwatch.chat.cache import MemoryCache
from chatwatch.chat.consultant import Consultant
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
from chatwatch.chat.providers.builtin import BuiltinProvider
from chatwatch.clock import FakeClock
from chatwatch.config import AIPrice
from chatwatch.events import (
    AIRequestCompleted,
    AIRequestFailed,
    AIRequestStarted,
    AIUnpriced,
    CacheLookup,
    ErrorOccurred,
    Event,
    EventBus,
)

MODEL = "chatwatch-consultant"
QUESTION = [ChatTurn("user", "What services do you offer?")]


# --- test doubles of an external AI system ------------------------------------------------


class FailingProvider(AIProvider):
    """An upstream that answers with an error (e.g. HTTP 500) after one delta."""

    name = "failing"

    async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        yield TextDelta("Hel")
        raise AIProviderError("upstream returned HTTP 500")


class HangingProvider(AIProvider):
    """An upstream that sends one delta and then never another byte."""

    name = "hanging"

    async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        yield TextDelta("Hel")
        await asyncio.Event().wait()
        yield TextDelta("never")  # pragma: no cover - unreachable by design


class OwnTimeoutProvider(AIProvider):
    """An upstream client that detects its own timeout and says so."""

    name = "own-timeout"

    async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        raise AITimeout("no first byte within 0.1s")
        yield TextDelta("never")  # pragma: no cover - makes this an async generator


class TruncatedProvider(AIProvider):
    """An upstream whose stream ends without the final usage/completion item."""

    name = "truncated"

    async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        yield TextDelta("partial answer")


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def bus(events: list[Event]) -> EventBus:
    bus = EventBus()
    bus.subscribe_all(events.append)
    return bus


def consultant(
    provider: AIProvider,
    bus: EventBus,
    clock: FakeClock,
    *,
    cache: MemoryCache | None = None,
    prices: PriceBook | None = None,
    model: str = MODEL,
    timeout: float = 5.0,
) -> Consultant:
    return Consultant(
        provider, cache, prices or PriceBook(), bus, clock, model=model, timeout=timeout
    )


class Deltas:
    """Collects what the consultant streams to the client."""

    def __init__(self) -> None:
        self.items: list[str] = []

    async def __call__(self, text: str) -> None:
        self.items.append(text)


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# --- the happy path and the cache -------------------------------------------------------


async def test_first_call_asks_the_provider_and_reports_it(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """A cache miss emits CacheLookup(miss), AIRequestStarted, AIRequestCompleted, CacheStored."""
    cache = MemoryCache(100, 3600, clock)
    reply = await consultant(BuiltinProvider(), bus, clock, cache=cache).reply(
        QUESTION, "corr-1", Deltas()
    )
    started = AIRequestStarted(
        provider="builtin", model=MODEL, correlation_id="corr-1", context_messages=1
    )
    completed = [e for e in events if isinstance(e, AIRequestCompleted)]
    assert (
        ["CacheLookup", "AIRequestStarted", "AIRequestCompleted", "CacheStored"],
        CacheLookup(hit=False, entries=0),
        started,
    ) == (kinds(events), events[0], events[1])
    assert [("builtin", MODEL, "corr-1", False, reply.input_tokens, reply.output_tokens)] == [
        (e.provider, e.model, e.correlation_id, e.cached, e.input_tokens, e.output_tokens)
        for e in completed
    ]


async def test_first_reply_streams_its_content_and_counts_tokens(
    bus: EventBus, clock: FakeClock
) -> None:
    """The deltas joined are the reply's content; tokens are counted, cached is False."""
    deltas = Deltas()
    reply = await consultant(BuiltinProvider(), bus, clock).reply(QUESTION, "corr-1", deltas)
    assert (reply.content, False, MODEL, True, True) == (
        "".join(deltas.items),
        reply.cached,
        reply.model,
        reply.input_tokens > 0,
        reply.output_tokens > 0,
    )


async def test_first_reply_is_priced_from_the_price_book(bus: EventBus, clock: FakeClock) -> None:
    """With $1/$2 per Mtok for the model, the cost is input + 2 x output tokens over a million."""
    prices = PriceBook({MODEL: AIPrice(input_per_mtok=1.0, output_per_mtok=2.0)})
    reply = await consultant(BuiltinProvider(), bus, clock, prices=prices).reply(
        QUESTION, "corr-1", Deltas()
    )
    expected = (reply.input_tokens * 1.0 + reply.output_tokens * 2.0) / 1_000_000
    assert expected == pytest.approx(reply.cost_usd)


async def test_identical_second_call_is_a_cache_hit(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """The same question again: cached=True, cost 0, one CacheLookup(hit) and no AI events."""
    cache = MemoryCache(100, 3600, clock)
    prices = PriceBook({MODEL: AIPrice(input_per_mtok=1.0, output_per_mtok=2.0)})
    c = consultant(BuiltinProvider(), bus, clock, cache=cache, prices=prices)
    first = await c.reply(QUESTION, "corr-1", Deltas())
    events.clear()
    deltas = Deltas()
    second = await c.reply(QUESTION, "corr-2", deltas)
    assert (
        [CacheLookup(hit=True, entries=1)],
        True,
        0.0,
        first.content,
        [first.content],
        (first.input_tokens, first.output_tokens, first.model),
    ) == (
        events,
        second.cached,
        second.cost_usd,
        second.content,
        deltas.items,
        (second.input_tokens, second.output_tokens, second.model),
    )
    assert first.cost_usd > 0  # the first call did cost something, so the 0 means something


async def test_different_question_is_a_miss(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """Another question after a cached one still goes to the provider."""
    cache = MemoryCache(100, 3600, clock)
    c = consultant(BuiltinProvider(), bus, clock, cache=cache)
    await c.reply(QUESTION, "corr-1", Deltas())
    events.clear()
    reply = await c.reply([ChatTurn("user", "How do I book a consultation?")], "c2", Deltas())
    assert (
        reply.cached,
        kinds(events),
    ) == (False, ["CacheLookup", "AIRequestStarted", "AIRequestCompleted", "CacheStored"])


async def test_quick_action_is_cached_apart_from_text(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """The same turns with and without a quick action are two cache entries (two AI calls)."""
    cache = MemoryCache(100, 3600, clock)
    c = consultant(BuiltinProvider(), bus, clock, cache=cache)
    a = await c.reply([], "c1", Deltas(), quick_action="pricing")
    b = await c.reply([], "c2", Deltas())
    again = await c.reply([], "c3", Deltas(), quick_action="pricing")
    assert (
        [a.cached, b.cached, again.cached],
        sum(isinstance(e, AIRequestStarted) for e in events),
    ) == ([False, False, True], 2)


async def test_cache_entry_expires_with_the_ttl(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """After the cache TTL passes on the fake clock, the same question asks the provider again."""
    cache = MemoryCache(100, 60, clock)
    c = consultant(BuiltinProvider(), bus, clock, cache=cache)
    await c.reply(QUESTION, "corr-1", Deltas())
    clock.advance(61)
    again = await c.reply(QUESTION, "corr-2", Deltas())
    assert (again.cached, sum(isinstance(e, AIRequestStarted) for e in events)) == (False, 2)


async def test_without_cache_there_is_no_lookup(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """With no cache configured, two identical calls are two AI requests and no CacheLookup."""
    c = consultant(BuiltinProvider(), bus, clock, cache=None)
    await c.reply(QUESTION, "corr-1", Deltas())
    second = await c.reply(QUESTION, "corr-2", Deltas())
    assert (
        second.cached,
        kinds(events),
    ) == (False, ["AIRequestStarted", "AIRequestCompleted"] * 2)


async def test_unpriced_model_costs_zero_and_warns_once(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """A model priced nowhere costs 0, is reported unpriced each call, first_time only once."""
    model = "mystery-model-that-no-table-knows"
    c = consultant(BuiltinProvider(model), bus, clock, model=model)
    first = await c.reply(QUESTION, "corr-1", Deltas())
    await c.reply(QUESTION, "corr-2", Deltas())
    unpriced = [e for e in events if isinstance(e, AIUnpriced)]
    completed = [e for e in events if isinstance(e, AIRequestCompleted)]
    assert (
        0.0,
        [AIUnpriced("builtin", model, True), AIUnpriced("builtin", model, False)],
        [False, False],
    ) == (first.cost_usd, unpriced, [e.priced for e in completed])


# --- failures ---------------------------------------------------------------------------


async def test_provider_error_is_reported_and_reraised(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """An upstream HTTP 500 emits AIRequestFailed(error) + ErrorOccurred(ai_provider), re-raises."""
    c = consultant(FailingProvider(), bus, clock)
    with pytest.raises(AIProviderError, match="HTTP 500") as info:
        await c.reply(QUESTION, "corr-1", Deltas())
    failed = [e for e in events if isinstance(e, AIRequestFailed)]
    errors = [e for e in events if isinstance(e, ErrorOccurred)]
    assert (
        isinstance(info.value, AITimeout),
        kinds(events),
        [(e.provider, e.model, e.correlation_id, e.outcome, e.error_type) for e in failed],
        [(e.type, e.code, e.correlation_id) for e in errors],
    ) == (
        False,
        ["AIRequestStarted", "AIRequestFailed", "ErrorOccurred"],
        [("failing", MODEL, "corr-1", "error", "AIProviderError")],
        [("ai_provider", "ai_unavailable", "corr-1")],
    )


async def test_failed_reply_is_not_cached(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """After a provider error the cache holds nothing, so a retry is a miss, not a bad hit."""
    cache = MemoryCache(100, 3600, clock)
    c = consultant(FailingProvider(), bus, clock, cache=cache)
    with pytest.raises(AIProviderError):
        await c.reply(QUESTION, "corr-1", Deltas())
    with pytest.raises(AIProviderError):
        await c.reply(QUESTION, "corr-2", Deltas())
    assert (
        cache.entries,
        [e.hit for e in events if isinstance(e, CacheLookup)],
    ) == (0, [False, False])


async def test_hanging_provider_times_out(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """A provider stalling after one delta (ignoring the deadline) ends in AITimeout soon after
    the 0.3 s consultant timeout (its 1 s grace included)."""
    deltas = Deltas()
    c = consultant(HangingProvider(), bus, clock, timeout=0.3)
    with pytest.raises(AITimeout):
        await asyncio.wait_for(c.reply(QUESTION, "corr-1", deltas), timeout=10)
    failed = [e for e in events if isinstance(e, AIRequestFailed)]
    errors = [e for e in events if isinstance(e, ErrorOccurred)]
    assert (
        deltas.items,
        kinds(events),
        [(e.provider, e.outcome, e.correlation_id) for e in failed],
        [(e.type, e.code, e.correlation_id) for e in errors],
    ) == (
        ["Hel"],
        ["AIRequestStarted", "AIRequestFailed", "ErrorOccurred"],
        [("hanging", "timeout", "corr-1")],
        [("timeout", "ai_unavailable", "corr-1")],
    )


async def test_provider_own_timeout_is_a_timeout(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """An AITimeout raised by the provider itself is outcome timeout, error type timeout."""
    c = consultant(OwnTimeoutProvider(), bus, clock)
    with pytest.raises(AITimeout):
        await c.reply(QUESTION, "corr-1", Deltas())
    assert (
        [e.outcome for e in events if isinstance(e, AIRequestFailed)],
        [e.type for e in events if isinstance(e, ErrorOccurred)],
    ) == (["timeout"], ["timeout"])


async def test_stream_without_completion_is_an_error(
    bus: EventBus, events: list[Event], clock: FakeClock
) -> None:
    """A stream that ends without its Completion item is an AIProviderError with events."""
    c = consultant(TruncatedProvider(), bus, clock)
    with pytest.raises(AIProviderError):
        await c.reply(QUESTION, "corr-1", Deltas())
    assert kinds(events) == ["AIRequestStarted", "AIRequestFailed", "ErrorOccurred"]


async def test_request_carries_correlation_headers(bus: EventBus, clock: FakeClock) -> None:
    """The provider gets X-Correlation-ID and a W3C traceparent whose trace id is the corr id."""
    seen: list[AIRequest] = []

    class RecordingProvider(AIProvider):
        name = "recording"

        async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
            seen.append(request)
            yield Completion(content="ok", model=MODEL, input_tokens=1, output_tokens=1)

    corr = "0123456789abcdef0123456789abcdef"
    await consultant(RecordingProvider(), bus, clock).reply(QUESTION, corr, Deltas())
    headers = seen[0].headers
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (corr, "00", corr, 16, "01", list(QUESTION)) == (
        headers["X-Correlation-ID"],
        version,
        trace_id,
        len(span_id),
        flags,
        list(seen[0].turns),
    )
