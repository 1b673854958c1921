"""OpenAIProvider against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import pytest

from chatwatch.chat.providers.base import (
    AIProviderError,
    AIRequest,
    AITimeout,
    ChatTurn,
    Completion,
    TextDelta,
)
from chatwatch.chat.providers.openai import OpenAIProvider
from chatwatch.vocabulary import AIOutcome
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.fakes.services import unused_tcp_port

API_KEY = "sk-test-secret-key-123"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

MakeProvider = Callable[..., OpenAIProvider]


def _request(correlation_id: str = "corr-1") -> AIRequest:
    return AIRequest(
        turns=[
            ChatTurn("system", "You are helpful."),
            ChatTurn("user", "What do you offer?"),
        ],
        correlation_id=correlation_id,
        headers={"X-Correlation-ID": correlation_id, "traceparent": TRACEPARENT},
    )


async def _collect(provider: OpenAIProvider, request: AIRequest) -> tuple[list[str], Completion]:
    deltas: list[str] = []
    completions: list[Completion] = []
    async for item in provider.stream(request):
        assert not completions, "nothing may follow the Completion"
        if isinstance(item, TextDelta):
            deltas.append(item.text)
        else:
            completions.append(item)
    assert len(completions) == 1
    return deltas, completions[0]


@pytest.fixture
async def make_provider(fake_openai: FakeOpenAI) -> AsyncIterator[MakeProvider]:
    made: list[OpenAIProvider] = []

    def make(**overrides: Any) -> OpenAIProvider:
        args: dict[str, Any] = {
            "base_url": fake_openai.url,
            "model": "gpt-4o-mini",
            "api_key": API_KEY,
            "timeout": 5.0,
        }
        args.update(overrides)
        provider = OpenAIProvider(**args)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


async def test_streams_deltas_in_order_with_reported_usage(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """Deltas arrive in server order; usage and model come from the stream, not estimates."""
    fake_openai.behaviour = Behaviour(
        chunks=["Hel", "lo", " wor", "ld!"],
        model="gpt-4o-mini-2024-07-18",
        prompt_tokens=21,
        completion_tokens=5,
    )
    deltas, done = await _collect(make_provider(), _request())
    assert deltas == ["Hel", "lo", " wor", "ld!"]
    assert done.content == "Hello world!"
    assert done.model == "gpt-4o-mini-2024-07-18"
    assert (done.input_tokens, done.output_tokens) == (21, 5)
    assert done.estimated_usage is False


async def test_sends_openai_body_and_forwards_headers(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """The request carries the bearer key, correlation headers and an OpenAI streaming body."""
    await _collect(make_provider(), _request("corr-42"))
    (received,) = fake_openai.requests
    assert received.method == "POST"
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {API_KEY}"
    assert received.headers["x-correlation-id"] == "corr-42"
    assert received.headers["traceparent"] == TRACEPARENT
    assert received.json == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "What do you offer?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_no_authorization_header_without_api_key(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """Keyless local servers get no Authorization header, even if the request carries one."""
    request = AIRequest(
        turns=[ChatTurn("user", "hi")],
        correlation_id="c",
        headers={"Authorization": "Bearer leaked-user-token"},
    )
    await _collect(make_provider(api_key=None), request)
    assert "authorization" not in fake_openai.requests[0].headers


async def test_http_500_is_provider_error_without_the_key(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """An HTTP 500 raises AIProviderError naming the status; the API key is scrubbed."""
    fake_openai.behaviour = Behaviour(status=500, error_message=f"upstream broke for {API_KEY}")
    with pytest.raises(AIProviderError) as caught:
        await _collect(make_provider(), _request())
    assert not isinstance(caught.value, AITimeout)
    assert "500" in str(caught.value)
    assert "upstream broke" in str(caught.value)
    assert API_KEY not in str(caught.value)


async def test_stall_mid_stream_times_out(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """A server that stops sending mid-reply raises AITimeout once the whole-call timeout passes."""
    fake_openai.behaviour = Behaviour(chunks=["a", "b", "c"], stall_after=1)
    provider = make_provider(timeout=0.5)
    deltas: list[str] = []
    with pytest.raises(AITimeout):
        async for item in provider.stream(_request()):
            if isinstance(item, TextDelta):
                deltas.append(item.text)
    assert deltas == ["a"]


async def test_first_byte_timeout_fires_before_whole_timeout(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """With first_byte_timeout set, slow response headers raise AITimeout saying so."""
    fake_openai.behaviour = Behaviour(first_byte_delay=3.0)
    provider = make_provider(timeout=5.0, first_byte_timeout=0.3)
    with pytest.raises(AITimeout, match="first byte"):
        await _collect(provider, _request())


async def test_slow_consumer_gets_timeout_not_cancellation(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """The deadline surfaces as AITimeout from the stream, never as a cancel of the consumer."""
    fake_openai.behaviour = Behaviour(chunks=["x"] * 10, chunk_delay=0.05)
    provider = make_provider(timeout=0.5)
    with pytest.raises(AITimeout):
        async for _ in provider.stream(_request()):
            await asyncio.sleep(0.2)  # would raise CancelledError if the timeout spanned a yield


async def test_cut_stream_is_provider_error(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """A connection closed mid-body raises AIProviderError, not a timeout."""
    fake_openai.behaviour = Behaviour(chunks=["a", "b", "c"], cut_after=2)
    with pytest.raises(AIProviderError) as caught:
        await _collect(make_provider(), _request())
    assert not isinstance(caught.value, AITimeout)


async def test_stream_ending_without_finish_or_done_is_error(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """A cleanly closed body that never finished the reply still counts as a failure."""
    fake_openai.behaviour = Behaviour(send_finish=False, send_done=False, usage=False)
    with pytest.raises(AIProviderError, match="ended before"):
        await _collect(make_provider(), _request())


async def test_finish_without_done_is_accepted(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """Servers that omit [DONE] but send finish_reason are accepted."""
    fake_openai.behaviour = Behaviour(text="All good.", send_done=False)
    _, done = await _collect(make_provider(), _request())
    assert done.content == "All good."


async def test_malformed_chunk_is_provider_error(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """A chunk that is not JSON raises AIProviderError with reason invalid_reply."""
    fake_openai.behaviour = Behaviour(chunks=["a", "b"], malformed_after=1)
    with pytest.raises(AIProviderError, match="not JSON") as caught:
        await _collect(make_provider(), _request())
    assert caught.value.reason == AIOutcome.INVALID_REPLY


async def test_missing_usage_is_estimated(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """Without usage from the server, tokens are counted locally and flagged as estimated."""
    fake_openai.behaviour = Behaviour(text="A reply of several words here.", usage=False)
    _, done = await _collect(make_provider(), _request())
    assert done.estimated_usage is True
    assert done.input_tokens > 0
    assert done.output_tokens > 0


async def test_non_streaming_json_reply_is_accepted(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """A server answering one JSON document yields its content once, with its usage."""
    fake_openai.behaviour = Behaviour(text="One piece.", stream=False, prompt_tokens=8)
    deltas, done = await _collect(make_provider(), _request())
    assert deltas == ["One piece."]
    assert done.content == "One piece."
    assert done.input_tokens == 8
    assert done.estimated_usage is False


async def test_connection_refused_is_provider_error() -> None:
    """Nothing listening on the port raises AIProviderError."""
    url = f"http://127.0.0.1:{unused_tcp_port()}/v1"
    provider = OpenAIProvider(url, "gpt-4o-mini", API_KEY, timeout=2.0)
    try:
        with pytest.raises(AIProviderError, match="cannot reach") as caught:
            await _collect(provider, _request())
        assert not isinstance(caught.value, AITimeout)
    finally:
        await provider.aclose()


async def test_abandoned_stream_releases_the_upstream_connection(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """Closing the stream early drops the half-read upstream connection."""
    fake_openai.behaviour = Behaviour(chunks=["a", "b"], stall_after=1)
    stream = make_provider().stream(_request())
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == TextDelta("a")
    assert fake_openai.open_connections == 1
    await stream.aclose()
    for _ in range(100):
        if fake_openai.open_connections == 0:
            break
        await asyncio.sleep(0.02)
    assert fake_openai.open_connections == 0


async def test_fake_server_stops_cleanly_under_a_stalled_request() -> None:
    """Stopping the fake mid-stall returns promptly and the client sees a provider error."""
    server = FakeOpenAI(Behaviour(chunks=["a", "b"], stall_after=1)).start()
    provider = OpenAIProvider(server.url, "gpt-4o-mini", None, timeout=30.0)
    try:
        stream = provider.stream(_request())
        assert await anext(stream) == TextDelta("a")
        async with asyncio.timeout(10):  # a stop that waited on the stalled reply would hang
            await asyncio.to_thread(server.stop)
        with pytest.raises(AIProviderError) as caught:
            await anext(stream)
        assert not isinstance(caught.value, AITimeout)
    finally:
        server.stop()
        await provider.aclose()
