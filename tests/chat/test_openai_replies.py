"""OpenAIProvider: bad replies are failures, every failure is an AIProviderError, and the
failures worth a retry say so — against the fake upstream on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
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

MakeProvider = Callable[..., OpenAIProvider]


def _request(**changes: Any) -> AIRequest:
    args: dict[str, Any] = {
        "turns": [ChatTurn("user", "What do you offer?")],
        "correlation_id": "corr-1",
        "headers": {"X-Correlation-ID": "corr-1"},
    }
    args.update(changes)
    return AIRequest(**args)


async def _collect(provider: OpenAIProvider, request: AIRequest) -> tuple[str, Completion]:
    text = ""
    completion: Completion | None = None
    async for item in provider.stream(request):
        if isinstance(item, TextDelta):
            text += item.text
        else:
            completion = item
    assert completion is not None
    return text, completion


async def _failure(provider: OpenAIProvider, request: AIRequest | None = None) -> AIProviderError:
    with pytest.raises(AIProviderError) as caught:
        await _collect(provider, request or _request())
    return caught.value


@pytest.fixture
async def make_provider(fake_openai: FakeOpenAI) -> AsyncIterator[MakeProvider]:
    made: list[OpenAIProvider] = []

    def make(**overrides: Any) -> OpenAIProvider:
        args: dict[str, Any] = {
            "base_url": fake_openai.url,
            "model": "gpt-4o-mini",
            "api_key": "sk-test",
            "timeout": 5.0,
        }
        args.update(overrides)
        provider = OpenAIProvider(**args)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


# --- nothing but AIProviderError escapes -------------------------------------------------


async def test_api_key_with_unicode_ellipsis_is_a_provider_error(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """The README's ``sk-…`` key raised UnicodeEncodeError from httpx (ack, then silence);
    now it is an AIProviderError (reason error) and no request is sent."""
    err = await _failure(make_provider(api_key="sk-…"))
    assert (type(err), err.reason, "UnicodeEncodeError" in err.detail, fake_openai.requests) == (
        AIProviderError,
        AIOutcome.ERROR,
        True,
        [],
    )


async def test_non_ascii_request_header_is_a_provider_error(make_provider: MakeProvider) -> None:
    """A header value httpx cannot encode (a correlation id 'é') is an AIProviderError."""
    err = await _failure(make_provider(), _request(headers={"X-Correlation-ID": "caf\u00e9"}))
    assert err.reason == AIOutcome.ERROR


async def test_unexpected_exception_from_the_transport_is_a_provider_error() -> None:
    """A transport raising something outside httpx's hierarchy (RuntimeError) is wrapped."""

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("the HTTP stack broke")

    provider = OpenAIProvider(
        "http://127.0.0.1:9/v1", "m", None, 5.0, transport=httpx.MockTransport(explode)
    )
    try:
        err = await _failure(provider)
    finally:
        await provider.aclose()
    assert (type(err), isinstance(err.__cause__, RuntimeError)) == (AIProviderError, True)


# --- empty or malformed replies are invalid_reply ----------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "detail"),
    [
        (Behaviour(chunks=[]), "empty"),
        (Behaviour(chunks=["  ", "\n"]), "empty"),
        (Behaviour(raw_data=['{"choices":[{"index":0,"delta":{"content":5}}]}']), "content"),
        (Behaviour(raw_data=["this is not json"]), "not JSON"),
        (Behaviour(chunks=["a", "b"], malformed_after=0), "not JSON"),
        (Behaviour(raw_data=['{"choices":{"0":{"delta":{"content":"hi"}}}}']), "choices"),
        (Behaviour(raw_data=['{"choices":["hi"]}']), "choice is"),
        (Behaviour(raw_data=['{"choices":[{"delta":"hi"}]}']), "delta"),
        (Behaviour(raw_data=['["hi"]']), "list chunk"),
        (Behaviour(raw_data=["5"]), "int chunk"),
        (Behaviour(raw_data=[]), "empty"),
        (Behaviour(raw_data=[], send_done=False, usage=False), "no data"),
    ],
    ids=[
        "no text chunks",
        "whitespace only",
        "content is a number",
        "data line not JSON",
        "data line not JSON mid-stream",
        "choices not a list",
        "choice not an object",
        "delta not an object",
        "chunk is a list",
        "chunk is a number",
        "only [DONE]",
        "no data lines",
    ],
)
async def test_bad_stream_is_invalid_reply(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, behaviour: Behaviour, detail: str
) -> None:
    """A stream without text or with a chunk of the wrong shape fails as invalid_reply
    (before: an empty ai_message counted as success, or a generic error)."""
    fake_openai.behaviour = behaviour
    err = await _failure(make_provider())
    assert (err.reason, err.retryable, detail in err.detail) == (
        AIOutcome.INVALID_REPLY,
        False,
        True,
    ), err.detail


@pytest.mark.parametrize(
    ("behaviour", "detail"),
    [
        (Behaviour(text="", stream=False), "empty"),
        (Behaviour(raw_document="not json", stream=False), "not JSON"),
        (Behaviour(raw_document="[]", stream=False), "not an object"),
        (Behaviour(raw_document='{"choices": "x"}', stream=False), "choices"),
        (Behaviour(raw_document='{"choices": []}', stream=False), "no choices"),
        (Behaviour(raw_document='{"choices": [{"message": 5}]}', stream=False), "message"),
        (
            Behaviour(raw_document='{"choices": [{"message": {"content": 5}}]}', stream=False),
            "content",
        ),
    ],
    ids=[
        "empty content",
        "not JSON",
        "a list",
        "choices not a list",
        "no choices",
        "message a number",
        "content a number",
    ],
)
async def test_bad_json_document_is_invalid_reply(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, behaviour: Behaviour, detail: str
) -> None:
    """A server answering one JSON document of the wrong shape fails as invalid_reply."""
    fake_openai.behaviour = behaviour
    err = await _failure(make_provider())
    assert (err.reason, detail in err.detail) == (AIOutcome.INVALID_REPLY, True), err.detail


async def test_null_content_and_usage_only_chunks_are_fine(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """``content: null`` (role chunk), a chunk without delta and ``choices: []`` are valid."""
    fake_openai.behaviour = Behaviour(
        raw_data=[
            '{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}',
            '{"choices":[{"index":0,"delta":{"content":"Hello"}}]}',
            '{"choices":[{"index":0,"finish_reason":"stop"}]}',
            '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}',
        ],
        usage=False,
    )
    text, done = await _collect(make_provider(), _request())
    assert (text, done.content, done.input_tokens, done.output_tokens) == ("Hello", "Hello", 3, 1)


async def test_upstream_error_chunk_is_an_error_not_invalid(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """``{"error": …}`` mid-stream is the upstream saying it failed: reason error."""
    fake_openai.behaviour = Behaviour(raw_data=['{"error":{"message":"overloaded"}}'])
    err = await _failure(make_provider())
    assert (err.reason, "overloaded" in err.detail) == (AIOutcome.ERROR, True)


# --- what is worth a retry ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (502, True), (503, True), (429, True), (400, False)]
)
async def test_status_marks_retryable(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, status: int, retryable: bool
) -> None:
    """429 and 5xx before the first byte are retryable; another 4xx is not."""
    fake_openai.behaviour = Behaviour(status=status)
    err = await _failure(make_provider())
    assert (err.reason, err.retryable, err.retry_after) == (AIOutcome.ERROR, retryable, None)


async def test_retry_after_seconds_are_read(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """A 429 with ``Retry-After: 3`` carries retry_after 3.0."""
    fake_openai.behaviour = Behaviour(status=429, headers={"Retry-After": "3"})
    err = await _failure(make_provider())
    assert (err.retryable, err.retry_after) == (True, 3.0)


async def test_retry_after_date_is_measured_against_the_server_date(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """An HTTP-date Retry-After counts from the response's own Date header (2 s later)."""
    fake_openai.behaviour = Behaviour(
        status=503,
        headers={
            "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            "Retry-After": "Wed, 21 Oct 2015 07:28:02 GMT",
        },
    )
    err = await _failure(make_provider())
    assert err.retry_after == 2.0


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "Wed, 21 Oct 2015 07:28:02 GMT"])
async def test_unusable_retry_after_is_ignored(
    fake_openai: FakeOpenAI, make_provider: MakeProvider, value: str
) -> None:
    """Garbage, NaN, infinity, or a date without a Date header to measure from: None."""
    fake_openai.behaviour = Behaviour(status=429, headers={"Retry-After": value})
    err = await _failure(make_provider())
    assert (err.retryable, err.retry_after) == (True, None)


async def test_connection_refused_is_retryable() -> None:
    """Nothing listening on the port: a retryable error (reason error)."""
    provider = OpenAIProvider(f"http://127.0.0.1:{unused_tcp_port()}/v1", "m", None, 2.0)
    try:
        err = await _failure(provider)
    finally:
        await provider.aclose()
    assert (err.reason, err.retryable) == (AIOutcome.ERROR, True)


async def test_cut_stream_is_not_retryable(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """A stream cut after text arrived is an error, never marked for a retry."""
    fake_openai.behaviour = Behaviour(chunks=["a", "b"], cut_after=1)
    err = await _failure(make_provider())
    assert (err.reason, err.retryable) == (AIOutcome.ERROR, False)


async def test_request_deadline_bounds_the_call(
    fake_openai: FakeOpenAI, make_provider: MakeProvider
) -> None:
    """An AIRequest deadline 0.3 s away ends a call whose own timeout is 5 s: AITimeout."""
    fake_openai.behaviour = Behaviour(first_byte_delay=3.0)
    began = time.monotonic()
    deadline = asyncio.get_running_loop().time() + 0.3
    err = await _failure(make_provider(timeout=5.0), _request(deadline=deadline))
    assert (type(err), err.reason, time.monotonic() - began < 2.5) == (
        AITimeout,
        AIOutcome.TIMEOUT,
        True,
    )
