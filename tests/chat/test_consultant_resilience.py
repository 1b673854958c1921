"""The consultant while the AI upstream fails: retry, circuit breaker, fallback, daily
budget and invalid replies — against the fake OpenAI upstream on loopback, on a fake clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chatwatch.chat.budget import DailyBudget
from chatwatch.chat.cache import MemoryCache
from chatwatch.chat.consultant import Consultant
from chatwatch.chat.pricing import PriceBook
from chatwatch.chat.providers.base import (
    AIProvider,
    AIProviderError,
    AIRequest,
    ChatTurn,
    Completion,
    TextDelta,
)
from chatwatch.chat.providers.builtin import BuiltinProvider
from chatwatch.chat.providers.openai import OpenAIProvider
from chatwatch.chat.resilience import CircuitBreaker, CircuitState, RetryPolicy
from chatwatch.clock import FakeClock
from chatwatch.config import AIPrice
from chatwatch.events import (
    AIBudgetChanged,
    AICircuitChanged,
    AIFallbackUsed,
    AIRequestCompleted,
    AIRequestFailed,
    AIRequestRetried,
    AIRequestStarted,
    ErrorOccurred,
    Event,
    EventBus,
)
from chatwatch.vocabulary import AIOutcome
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.fakes.services import unused_tcp_port

MODEL = "m"
QUESTION = [ChatTurn("user", "What services do you offer?")]
UNAVAILABLE = "The AI consultant is not available right now. Please try again in a moment."


class Deltas:
    """Collects what the consultant streams to the visitor."""

    def __init__(self) -> None:
        self.items: list[str] = []

    async def __call__(self, text: str) -> None:
        self.items.append(text)


class Sleeps:
    """Records retry waits instead of sleeping them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


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


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


MakeConsultant = Callable[..., Consultant]


@pytest.fixture
async def make(
    fake_openai: FakeOpenAI, bus: EventBus, clock: FakeClock, sleeps: Sleeps
) -> AsyncIterator[MakeConsultant]:
    """Consultants over an OpenAIProvider pointed at the fake (or ``url``)."""
    providers: list[OpenAIProvider] = []

    def build(
        *,
        url: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        failures: int | None = None,
        cooloff: float = 30.0,
        fallback: bool = False,
        budget: DailyBudget | None = None,
        cache: MemoryCache | None = None,
        prices: PriceBook | None = None,
    ) -> Consultant:
        provider = OpenAIProvider(url or fake_openai.url, MODEL, "sk-test", timeout)
        providers.append(provider)
        breaker = None
        if failures is not None:
            breaker = CircuitBreaker(
                failures=failures, cooloff=cooloff, clock=clock, bus=bus, provider=provider.name
            )
        return Consultant(
            provider,
            cache,
            prices or PriceBook({MODEL: AIPrice(input_per_mtok=0.0, output_per_mtok=0.0)}),
            bus,
            clock,
            model=MODEL,
            timeout=timeout,
            retry=retry or RetryPolicy(attempts=1, rand=lambda: 0.0),
            breaker=breaker,
            fallback=BuiltinProvider("builtin") if fallback else None,
            budget=budget,
            sleep=sleeps,
        )

    yield build
    for provider in providers:
        await provider.aclose()


def of(kind: type[Any], events: list[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


async def failure(consultant: Consultant, deltas: Deltas | None = None) -> AIProviderError:
    with pytest.raises(AIProviderError) as caught:
        await consultant.reply(QUESTION, "corr-1", deltas or Deltas())
    return caught.value


# --- retry before the first byte ---------------------------------------------------------


async def test_500_then_200_is_answered_after_one_retry(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event], sleeps: Sleeps
) -> None:
    """A 500 then a 200: the reply arrives, two upstream requests, one AIRequestRetried
    (attempt 2, jittered wait) and no failure (before: the 500 went straight to the visitor)."""
    fake_openai.script.append(Behaviour(status=500))
    fake_openai.behaviour = Behaviour(text="Back on our feet.")
    reply = await make().reply(QUESTION, "corr-1", Deltas())
    retried = of(AIRequestRetried, events)
    assert (
        reply.content,
        len(fake_openai.chat_requests),
        [(e.provider, e.attempt, e.correlation_id, "500" in e.reason) for e in retried],
        sleeps.delays,
        kinds(events),
    ) == (
        "Back on our feet.",
        2,
        [("openai", 2, "corr-1", True)],
        [0.125],
        ["AIRequestStarted", "AIRequestRetried", "AIRequestCompleted"],
    )


async def test_429_waits_its_retry_after(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event], sleeps: Sleeps
) -> None:
    """A 429 with ``Retry-After: 2`` is retried after 2 s (plus a little jitter)."""
    fake_openai.script.append(Behaviour(status=429, headers={"Retry-After": "2"}))
    reply = await make().reply(QUESTION, "corr-1", Deltas())
    assert (bool(reply.content), len(fake_openai.chat_requests), len(sleeps.delays)) == (True, 2, 1)
    assert 2.0 <= sleeps.delays[0] <= 2.25
    assert of(AIRequestRetried, events)[0].delay_s == sleeps.delays[0]


async def test_long_retry_after_is_not_waited_for(
    make: MakeConsultant, fake_openai: FakeOpenAI, sleeps: Sleeps
) -> None:
    """``Retry-After: 60`` is over the cap: no retry, the failure comes at once."""
    fake_openai.script.append(Behaviour(status=429, headers={"Retry-After": "60"}))
    err = await failure(make())
    assert (err.reason, len(fake_openai.chat_requests), sleeps.delays) == (AIOutcome.ERROR, 1, [])


async def test_retry_after_beyond_the_deadline_is_not_waited_for(
    make: MakeConsultant, fake_openai: FakeOpenAI, sleeps: Sleeps
) -> None:
    """With ai.timeout 3 s, a Retry-After of 4 s cannot fit: no retry."""
    fake_openai.script.append(Behaviour(status=503, headers={"Retry-After": "4"}))
    await failure(make(timeout=3.0))
    assert (len(fake_openai.chat_requests), sleeps.delays) == (1, [])


async def test_connection_refused_is_retried_once_then_fails(
    make: MakeConsultant, events: list[Event], sleeps: Sleeps
) -> None:
    """A closed port: one retry, then AIProviderError (error) with the visitor-safe message."""
    err = await failure(make(url=f"http://127.0.0.1:{unused_tcp_port()}/v1"))
    assert (
        err.reason,
        err.public_message,
        len(sleeps.delays),
        kinds(events),
        of(AIRequestFailed, events)[0].outcome,
    ) == (
        AIOutcome.ERROR,
        UNAVAILABLE,
        1,
        ["AIRequestStarted", "AIRequestRetried", "AIRequestFailed", "ErrorOccurred"],
        "error",
    )


async def test_two_500s_fail_after_the_one_retry(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event]
) -> None:
    """Retry once means two requests at most; the failure is reported once."""
    fake_openai.behaviour = Behaviour(status=500, error_message="upstream exploded")
    err = await failure(make())
    failed = of(AIRequestFailed, events)
    assert (
        len(fake_openai.chat_requests),
        [(e.outcome, "upstream exploded" in e.detail) for e in failed],
        "exploded" in err.public_message or "500" in err.public_message,
    ) == (2, [("error", True)], False)


async def test_no_retry_once_text_reached_the_visitor(
    bus: EventBus, clock: FakeClock, events: list[Event], sleeps: Sleeps
) -> None:
    """A retryable failure after a delta was sent is not retried (the text would repeat)."""
    calls: list[AIRequest] = []

    class TextThenOverloaded(AIProvider):
        name = "double"

        async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
            calls.append(request)
            yield TextDelta("Hel")
            raise AIProviderError("HTTP 503", retryable=True)

    consultant = Consultant(
        TextThenOverloaded(),
        None,
        PriceBook(),
        bus,
        clock,
        model=MODEL,
        timeout=5.0,
        retry=RetryPolicy(attempts=1),
        sleep=sleeps,
    )
    deltas = Deltas()
    await failure(consultant, deltas)
    assert (len(calls), deltas.items, sleeps.delays) == (1, ["Hel"], [])


async def test_retries_share_one_deadline(bus: EventBus, clock: FakeClock, sleeps: Sleeps) -> None:
    """The retry's request carries the first attempt's deadline: ai.timeout bounds the total."""
    deadlines: list[float | None] = []

    class OverloadedOnce(AIProvider):
        name = "double"

        async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
            deadlines.append(request.deadline)
            if len(deadlines) == 1:
                raise AIProviderError("HTTP 503", retryable=True)
            yield Completion(content="ok", model=MODEL, input_tokens=1, output_tokens=1)

    consultant = Consultant(
        OverloadedOnce(), None, PriceBook(), bus, clock, model=MODEL, timeout=5.0,
        retry=RetryPolicy(attempts=1), sleep=sleeps,
    )  # fmt: skip
    before = asyncio.get_running_loop().time()
    await consultant.reply(QUESTION, "corr-1", Deltas())
    first = deadlines[0]
    assert first is not None
    assert (len(deadlines), deadlines[1] == first, before + 5.0 <= first < before + 6.0) == (
        2,
        True,
        True,
    )


# --- invalid replies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "detail"),
    [
        (Behaviour(chunks=[]), "empty"),
        (Behaviour(raw_data=['{"choices":[{"delta":{"content":5}}]}']), "content"),
        (Behaviour(raw_data=["{not json"]), "not JSON"),
        (Behaviour(raw_data=['{"choices":"nope"}']), "choices"),
    ],
    ids=["no text chunks", "content is a number", "data line not JSON", "choices not a list"],
)
async def test_invalid_reply_is_a_failure(
    make: MakeConsultant,
    fake_openai: FakeOpenAI,
    events: list[Event],
    behaviour: Behaviour,
    detail: str,
) -> None:
    """An empty or malformed stream is AIProviderError(invalid_reply), AIRequestFailed
    (outcome invalid_reply, detail saying what was wrong) and an ai_unavailable error —
    never an ai_message with empty content counted as success (the old behaviour)."""
    fake_openai.behaviour = behaviour
    deltas = Deltas()
    err = await failure(make(), deltas)
    failed = of(AIRequestFailed, events)
    errors = of(ErrorOccurred, events)
    assert (
        err.reason,
        err.public_message,
        [(e.outcome, detail in e.detail) for e in failed],
        [(e.type, e.code) for e in errors],
        of(AIRequestCompleted, events),
        deltas.items,
        len(fake_openai.chat_requests),  # a bad reply is not retried
    ) == (
        AIOutcome.INVALID_REPLY,
        UNAVAILABLE,
        [("invalid_reply", True)],
        [("ai_provider", "ai_unavailable")],
        [],
        [],
        1,
    )


async def test_empty_completion_from_any_provider_is_invalid(
    bus: EventBus, clock: FakeClock, events: list[Event]
) -> None:
    """A provider whose Completion has blank content fails as invalid_reply, whatever it is."""

    class Blank(AIProvider):
        name = "blank"

        async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
            yield TextDelta("  ")
            yield Completion(content="  ", model=MODEL, input_tokens=1, output_tokens=0)

    deltas = Deltas()
    consultant = Consultant(Blank(), None, PriceBook(), bus, clock, model=MODEL, timeout=5.0)
    err = await failure(consultant, deltas)
    assert (err.reason, deltas.items) == (AIOutcome.INVALID_REPLY, [])


# --- the circuit breaker -----------------------------------------------------------------


async def test_failures_open_the_circuit_and_the_next_call_fails_fast(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event]
) -> None:
    """Three failed calls open the circuit (failures=3); the fourth reaches no upstream,
    fails as circuit_open with the friendly message, and at once (ai.timeout is 30 s)."""
    fake_openai.behaviour = Behaviour(status=500)
    consultant = make(failures=3, retry=RetryPolicy(attempts=0))
    for _ in range(3):
        await failure(consultant)
    events.clear()
    began = time.monotonic()
    err = await failure(consultant)
    elapsed = time.monotonic() - began
    assert (
        consultant.circuit_state,
        err.reason,
        err.public_message,
        len(fake_openai.chat_requests),
        kinds(events),
        of(AIRequestFailed, events)[0].outcome,
        elapsed < 1.0,
    ) == (
        CircuitState.OPEN,
        AIOutcome.CIRCUIT_OPEN,
        UNAVAILABLE,
        3,
        ["AIRequestFailed", "ErrorOccurred"],
        "circuit_open",
        True,
    )


async def test_circuit_opens_after_timeouts_too(
    make: MakeConsultant, fake_openai: FakeOpenAI
) -> None:
    """Two calls timing out (0.3 s each) open it; the third fails fast, not after 0.3 s."""
    fake_openai.behaviour = Behaviour(first_byte_delay=5.0)
    consultant = make(failures=2, timeout=0.3)
    for _ in range(2):
        assert (await failure(consultant)).reason == AIOutcome.TIMEOUT
    began = time.monotonic()
    err = await failure(consultant)
    assert (err.reason, len(fake_openai.chat_requests), time.monotonic() - began < 0.3) == (
        AIOutcome.CIRCUIT_OPEN,
        2,
        True,
    )


async def test_half_open_probe_success_closes_the_circuit(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event], clock: FakeClock
) -> None:
    """After the cool-off (fake clock) one probe reaches the recovered upstream and closes it."""
    fake_openai.behaviour = Behaviour(status=500)
    consultant = make(failures=2, cooloff=30.0, retry=RetryPolicy(attempts=0))
    for _ in range(2):
        await failure(consultant)
    fake_openai.behaviour = Behaviour(text="Recovered.")
    early = await failure(consultant)
    clock.advance(30)
    reply = await consultant.reply(QUESTION, "corr-2", Deltas())
    assert (
        early.reason,
        reply.content,
        consultant.circuit_state,
        len(fake_openai.chat_requests),
        [(e.previous, e.state) for e in of(AICircuitChanged, events)],
    ) == (
        AIOutcome.CIRCUIT_OPEN,
        "Recovered.",
        CircuitState.CLOSED,
        3,
        [("closed", "open"), ("open", "half_open"), ("half_open", "closed")],
    )


async def test_half_open_probe_failure_reopens_it(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event], clock: FakeClock
) -> None:
    """A failed probe opens the circuit again: the next call reaches no upstream."""
    fake_openai.behaviour = Behaviour(status=500)
    consultant = make(failures=2, cooloff=30.0, retry=RetryPolicy(attempts=0))
    for _ in range(2):
        await failure(consultant)
    clock.advance(30)
    probe = await failure(consultant)
    after = await failure(consultant)
    assert (
        probe.reason,
        after.reason,
        consultant.circuit_state,
        len(fake_openai.chat_requests),
        [(e.previous, e.state) for e in of(AICircuitChanged, events)],
    ) == (
        AIOutcome.ERROR,
        AIOutcome.CIRCUIT_OPEN,
        CircuitState.OPEN,
        3,
        [("closed", "open"), ("open", "half_open"), ("half_open", "open")],
    )


async def test_calls_during_the_probe_fail_fast(
    make: MakeConsultant, fake_openai: FakeOpenAI, clock: FakeClock
) -> None:
    """While the probe waits on a slow upstream, another visitor's call fails fast."""
    fake_openai.behaviour = Behaviour(status=500)
    consultant = make(failures=1, cooloff=30.0, retry=RetryPolicy(attempts=0))
    await failure(consultant)
    clock.advance(30)
    fake_openai.behaviour = Behaviour(text="Slow but fine.", first_byte_delay=0.5)
    probe = asyncio.create_task(consultant.reply(QUESTION, "probe", Deltas()))
    await asyncio.to_thread(fake_openai.wait_for_requests, 2)
    during = await failure(consultant)
    reply = await probe
    assert (during.reason, reply.content, consultant.circuit_state) == (
        AIOutcome.CIRCUIT_OPEN,
        "Slow but fine.",
        CircuitState.CLOSED,
    )


async def test_visitor_leaving_is_not_a_failure(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event]
) -> None:
    """A reply cancelled mid-wait (the visitor closed the socket) does not count toward
    opening the circuit; its call ends with outcome "cancelled", never a failure outcome."""
    fake_openai.behaviour = Behaviour(first_byte_delay=5.0)
    consultant = make(failures=1)
    task = asyncio.create_task(consultant.reply(QUESTION, "corr-1", Deltas()))
    await asyncio.to_thread(fake_openai.wait_for_requests, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake_openai.behaviour = Behaviour(text="Still here.")
    reply = await consultant.reply(QUESTION, "corr-2", Deltas())
    outcomes = [e.outcome for e in of(AIRequestFailed, events)]
    assert (reply.content, consultant.circuit_state, outcomes) == (
        "Still here.",
        CircuitState.CLOSED,
        ["cancelled"],
    )


# --- fallback to the built-in consultant ----------------------------------------------------------


async def test_fallback_answers_when_the_upstream_fails(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event], clock: FakeClock
) -> None:
    """With fallback on, a failing upstream is answered by the built-in (model "builtin"),
    counted: AIRequestFailed for the primary, AIFallbackUsed, the built-in's call completed,
    no error for the visitor — and the stop-gap answer is not cached."""
    fake_openai.behaviour = Behaviour(status=500)
    cache = MemoryCache(100, 3600, clock)
    deltas = Deltas()
    reply = await make(fallback=True, cache=cache).reply(QUESTION, "corr-1", deltas)
    assert (
        reply.model,
        reply.fallback,
        reply.cost_usd,
        "".join(deltas.items) == reply.content and bool(reply.content),
        [(e.provider, e.outcome) for e in of(AIRequestFailed, events)],
        of(AIFallbackUsed, events),
        [(e.provider, e.model) for e in of(AIRequestStarted, events)],
        [(e.provider, e.model) for e in of(AIRequestCompleted, events)],
        of(ErrorOccurred, events),
        cache.entries,
    ) == (
        "builtin",
        AIOutcome.ERROR,
        0.0,
        True,
        [("openai", "error")],
        [AIFallbackUsed("openai", "builtin", "corr-1", "error")],
        [("openai", MODEL), ("builtin", "builtin")],
        [("builtin", "builtin")],
        [],
        0,
    )


async def test_fallback_answers_while_the_circuit_is_open(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event]
) -> None:
    """An open circuit with fallback: answered by the built-in without an upstream request."""
    fake_openai.behaviour = Behaviour(status=500)
    consultant = make(failures=1, fallback=True, retry=RetryPolicy(attempts=0))
    await consultant.reply(QUESTION, "corr-1", Deltas())
    events.clear()
    reply = await consultant.reply(QUESTION, "corr-2", Deltas())
    assert (
        reply.model,
        reply.fallback,
        len(fake_openai.chat_requests),
        [e.reason for e in of(AIFallbackUsed, events)],
    ) == ("builtin", AIOutcome.CIRCUIT_OPEN, 1, ["circuit_open"])


async def test_fallback_answers_an_empty_reply(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event]
) -> None:
    """An empty upstream reply is invalid: the built-in answers it, reason invalid_reply."""
    fake_openai.behaviour = Behaviour(chunks=[])
    reply = await make(fallback=True).reply(QUESTION, "corr-1", Deltas())
    assert (reply.model, [e.reason for e in of(AIFallbackUsed, events)]) == (
        "builtin",
        ["invalid_reply"],
    )


async def test_no_fallback_once_primary_text_reached_the_visitor(
    make: MakeConsultant, fake_openai: FakeOpenAI, events: list[Event]
) -> None:
    """A stream cut midway is an ai_unavailable error, not a second answer after the first
    half of another one."""
    fake_openai.behaviour = Behaviour(chunks=["Our ", "services ", "are "], cut_after=2)
    deltas = Deltas()
    err = await failure(make(fallback=True), deltas)
    assert (err.reason, deltas.items, of(AIFallbackUsed, events)) == (
        AIOutcome.ERROR,
        ["Our ", "services "],
        [],
    )


# --- the daily budget --------------------------------------------------------------------

# 10 prompt tokens at $100,000 per million: each reply costs exactly $1.
PRICES = PriceBook({MODEL: AIPrice(input_per_mtok=100_000.0, output_per_mtok=0.0)})
NEXT_UTC_DAY = 1_800_057_600.0  # FakeClock starts on 2027-01-15 08:00 UTC


async def test_budget_warns_stops_and_resets_at_utc_midnight(
    make: MakeConsultant,
    fake_openai: FakeOpenAI,
    events: list[Event],
    bus: EventBus,
    clock: FakeClock,
) -> None:
    """$1 replies against $2.5: warning at $2, exhausted at $3, then calls stop with
    budget_exceeded (no upstream request, the limit message) until the next UTC day."""
    fake_openai.behaviour = Behaviour(prompt_tokens=10)
    budget = DailyBudget(2.5, clock, bus)
    consultant = make(budget=budget, prices=PRICES)
    costs = [(await consultant.reply(QUESTION, f"c{i}", Deltas())).cost_usd for i in range(3)]
    refused = await failure(consultant)
    requests_while_spent = len(fake_openai.chat_requests)
    clock.advance(NEXT_UTC_DAY - clock.time())
    next_day = await consultant.reply(QUESTION, "c-next", Deltas())
    assert (
        costs,
        refused.reason,
        "today's limit" in refused.public_message,
        requests_while_spent,
        next_day.cost_usd,
        [(e.state, e.spent_usd, e.day) for e in of(AIBudgetChanged, events)],
        [e.outcome for e in of(AIRequestFailed, events)],
    ) == (
        [1.0, 1.0, 1.0],
        AIOutcome.BUDGET_EXCEEDED,
        True,
        3,
        1.0,
        [
            ("warning", 2.0, "2027-01-15"),
            ("exhausted", 3.0, "2027-01-15"),
            ("reset", 0.0, "2027-01-16"),
        ],
        ["budget_exceeded"],
    )


async def test_spent_budget_falls_back_and_cache_hits_stay_allowed(
    make: MakeConsultant,
    fake_openai: FakeOpenAI,
    events: list[Event],
    bus: EventBus,
    clock: FakeClock,
) -> None:
    """Budget spent: a cached question is still answered from the cache (cost 0), a new one
    by the built-in fallback with reason budget_exceeded."""
    fake_openai.behaviour = Behaviour(prompt_tokens=10, text="The upstream answer.")
    consultant = make(
        budget=DailyBudget(1.0, clock, bus),
        prices=PRICES,
        fallback=True,
        cache=MemoryCache(100, 3600, clock),
    )
    await consultant.reply(QUESTION, "c1", Deltas())
    cached = await consultant.reply(QUESTION, "c2", Deltas())
    other = await consultant.reply([ChatTurn("user", "How much is it?")], "c3", Deltas())
    assert (
        (cached.cached, cached.content),
        (other.model, other.fallback),
        len(fake_openai.chat_requests),
    ) == (
        (True, "The upstream answer."),
        ("builtin", AIOutcome.BUDGET_EXCEEDED),
        1,
    )
