"""Any OpenAI-compatible chat server (OpenAI, vLLM, llama.cpp, Ollama, LiteLLM…), streamed.

The reply arrives as Server-Sent Events, one JSON chunk per ``data:`` line, ending with
``data: [DONE]``. Usage is asked for with ``stream_options.include_usage``; servers that
ignore it get their tokens counted locally (``estimated_usage=True``).

Timeouts are enforced around each network wait, never around a ``yield``: an
``asyncio.timeout`` spanning a yield would fire inside the consumer's code instead of here.

Whatever goes wrong surfaces as ``AIProviderError``: a reply that is empty, not JSON or of
the wrong shape has reason ``invalid_reply``; a 429, a 5xx or a refused connection is
marked ``retryable`` (with the upstream's ``Retry-After``) for the caller's retry policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx

from chatwatch.chat.providers.base import (
    AIProvider,
    AIProviderError,
    AIRequest,
    AITimeout,
    ChatTurn,
    Completion,
    TextDelta,
)
from chatwatch.vocabulary import AIOutcome

__all__ = ["OpenAIProvider"]

# Upstream error texts are echoed to logs and alerts; keep them short.
_MAX_REASON = 200
_MAX_ERROR_BODY = 16384


@dataclass
class _Reply:
    """What the stream has told us so far."""

    parts: list[str]
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    done: bool = False  # [DONE] seen
    finished: bool = False  # a finish_reason seen
    chunks: int = 0  # data lines that carried a JSON chunk


def _invalid(detail: str) -> AIProviderError:
    return AIProviderError(detail, reason=AIOutcome.INVALID_REPLY)


class OpenAIProvider(AIProvider):
    """Streams replies from ``{base_url}/chat/completions``."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float,
        first_byte_timeout: float | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key or None
        self._timeout = timeout
        self._first_byte_timeout = first_byte_timeout
        # httpx's own timeouts only back up the asyncio deadlines below.
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            # Every chat in flight holds one stream open for seconds; httpx's default
            # pool of 100 would make the 101st wait for a slot.
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the shared HTTP client."""
        await self._client.aclose()

    def _headers(self, request: AIRequest) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        headers["Accept"] = "text/event-stream, application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _reason(self, text: str) -> str:
        """Shorten an upstream message and make sure the API key never rides along."""
        if self._api_key:  # before truncating, so no fragment of the key survives the cut
            text = text.replace(self._api_key, "***")
        return " ".join(text.split())[:_MAX_REASON]

    async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        """Yield the reply's deltas, then one Completion; raise AIProviderError or AITimeout."""
        try:
            async with contextlib.aclosing(self._stream(request)) as items:
                async for item in items:
                    yield item
        except AIProviderError:
            raise
        except Exception as exc:
            # Anything else (a header value httpx cannot encode, a surprise from the HTTP
            # stack) must still be a provider error: callers answer the visitor from it.
            raise AIProviderError(
                f"AI request failed: {type(exc).__name__}: {self._reason(str(exc))}"
            ) from exc

    async def _stream(self, request: AIRequest) -> AsyncGenerator[TextDelta | Completion, None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._timeout
        if request.deadline is not None:
            deadline = min(deadline, request.deadline)
        first_deadline = deadline
        if self._first_byte_timeout is not None:
            first_deadline = min(deadline, started + self._first_byte_timeout)

        body = {
            "model": self.model,
            "messages": [{"role": t.role, "content": t.content} for t in request.turns],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        http_request = self._client.build_request(
            "POST", self._url, json=body, headers=self._headers(request)
        )
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await self._client.send(http_request, stream=True)
        except TimeoutError:
            raise self._timeout_error(first_deadline, deadline, got_first=False) from None
        except httpx.TimeoutException:
            raise AITimeout("AI server did not answer in time") from None
        except httpx.HTTPError as exc:
            where = http_request.url.host + (
                f":{http_request.url.port}" if http_request.url.port else ""
            )
            raise AIProviderError(
                f"cannot reach AI server {where}: {type(exc).__name__}",
                retryable=isinstance(exc, httpx.ConnectError),
            ) from None

        try:
            if response.status_code >= 400:
                detail = await self._error_detail(response, deadline)
                status = response.status_code
                raise AIProviderError(
                    f"AI server answered HTTP {status}" + (f": {detail}" if detail else ""),
                    retryable=status == 429 or status >= 500,
                    retry_after=_retry_after(response.headers),
                )
            content_type = response.headers.get("content-type", "").lower()
            if content_type.startswith("application/json"):
                reply = await self._read_json(response, deadline)
                text = "".join(reply.parts)
                if text:
                    yield TextDelta(text)
            else:
                reply = _Reply(parts=[])
                deltas = self._read_sse(response, reply, first_deadline, deadline)
                async with contextlib.aclosing(deltas):
                    async for delta in deltas:
                        yield TextDelta(delta)
            yield await self._completion(reply, request.turns)
        finally:
            await response.aclose()

    def _timeout_error(self, first_deadline: float, deadline: float, got_first: bool) -> AITimeout:
        if not got_first and first_deadline < deadline:
            return AITimeout(f"no first byte from AI server within {self._first_byte_timeout:g}s")
        return AITimeout(f"no complete answer from AI server within {self._timeout:g}s")

    async def _error_detail(self, response: httpx.Response, deadline: float) -> str:
        """The upstream's error message, if it sends one quickly; never raises."""
        raw = b""
        try:
            async with asyncio.timeout_at(deadline):
                # Error pages can be large HTML documents; the start says enough.
                async for piece in response.aiter_bytes():
                    raw += piece
                    if len(raw) >= _MAX_ERROR_BODY:
                        break
        except (TimeoutError, httpx.HTTPError):
            return ""
        try:
            data = json.loads(raw)
        except ValueError:
            return self._reason(raw.decode("utf-8", "replace"))
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                return self._reason(error["message"])
            if isinstance(error, str):
                return self._reason(error)
        return ""

    async def _read_json(self, response: httpx.Response, deadline: float) -> _Reply:
        """A server that ignored ``stream: true`` and sent one JSON document."""
        try:
            async with asyncio.timeout_at(deadline):
                raw = await response.aread()
        except TimeoutError:
            raise AITimeout(
                f"no complete answer from AI server within {self._timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise AIProviderError(f"AI response interrupted: {type(exc).__name__}") from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise _invalid("AI server sent a reply that is not JSON") from None
        if not isinstance(data, dict):
            raise _invalid(f"AI server sent a JSON {type(data).__name__}, not an object")
        self._check_error(data)
        reply = _Reply(parts=[], done=True, finished=True, chunks=1)
        reply.model = _str_or_none(data.get("model"))
        choice = _first_choice(data.get("choices"), required=True)
        assert choice is not None  # required=True raises instead
        message = choice.get("message")
        if not isinstance(message, dict):
            raise _invalid(f"AI reply's message is {_kind(message)}, not an object")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise _invalid(f"AI reply's message content is {_kind(content)}, not a string")
        if content:
            reply.parts.append(content)
        _take_usage(reply, data.get("usage"))
        return reply

    async def _read_sse(
        self, response: httpx.Response, reply: _Reply, first_deadline: float, deadline: float
    ) -> AsyncGenerator[str, None]:
        """Yield content deltas from an SSE body, filling ``reply`` as chunks arrive."""
        got_first = False
        # aiter_lines is an async generator (typed as a mere iterator): close it promptly.
        lines = cast(AsyncGenerator[str, None], response.aiter_lines())
        async with contextlib.aclosing(lines):
            while not reply.done:
                # Buffered lines are read without suspending, which a timeout cannot
                # interrupt: check the deadline by hand so a slow consumer cannot overrun it.
                if got_first and asyncio.get_running_loop().time() >= deadline:
                    raise self._timeout_error(first_deadline, deadline, got_first)
                try:
                    async with asyncio.timeout_at(deadline if got_first else first_deadline):
                        line = await anext(lines)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise self._timeout_error(first_deadline, deadline, got_first) from None
                except httpx.TimeoutException:
                    raise AITimeout("AI server stopped sending in time") from None
                except httpx.HTTPError as exc:
                    if reply.finished:
                        break  # the whole text arrived; only the usage chunk or [DONE] was lost
                    raise AIProviderError(f"AI stream interrupted: {type(exc).__name__}") from None
                got_first = True
                delta = self._parse_line(line, reply)
                if delta:
                    yield delta
        if not (reply.done or reply.finished):
            if reply.chunks == 0:
                raise _invalid("AI server's reply carried no data: lines")
            raise AIProviderError("AI stream ended before the reply was complete")

    def _parse_line(self, line: str, reply: _Reply) -> str:
        """Apply one SSE line to ``reply``; return the text it adds."""
        # One JSON chunk per data line, as every OpenAI-compatible server sends them;
        # comments (":"), "event:", "id:" and blank separator lines carry nothing for us.
        if not line.startswith("data:"):
            return ""
        payload = line[5:].strip()
        if payload == "[DONE]":
            reply.done = True
            return ""
        if not payload:
            return ""
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise _invalid("AI server sent a data: line that is not JSON") from None
        if not isinstance(chunk, dict):
            raise _invalid(f"AI server sent a JSON {type(chunk).__name__} chunk, not an object")
        reply.chunks += 1
        self._check_error(chunk)
        return _take_chunk(reply, chunk)

    def _check_error(self, data: dict[str, Any]) -> None:
        """Servers report failures mid-stream as ``{"error": {...}}``."""
        error = data.get("error")
        if error is None:
            return
        message = error.get("message") if isinstance(error, dict) else error
        reason = self._reason(str(message)) if message else "unknown error"
        raise AIProviderError(f"AI server reported an error: {reason}")

    async def _completion(self, reply: _Reply, turns: Sequence[ChatTurn]) -> Completion:
        content = "".join(reply.parts)
        if not content.strip():
            # A reply with no words is no answer: say so instead of sending an empty bubble.
            raise _invalid(f"AI server sent an empty reply ({reply.chunks} chunk(s), no text)")
        estimated = reply.input_tokens is None or reply.output_tokens is None
        input_tokens = reply.input_tokens
        output_tokens = reply.output_tokens
        # Counting is CPU work (and loads a vocabulary the first time): keep it off the loop.
        if input_tokens is None:
            input_tokens = await asyncio.to_thread(_count_chat_tokens, turns)
        if output_tokens is None:
            output_tokens = await asyncio.to_thread(_count_tokens, content)
        return Completion(
            content=content,
            model=reply.model or self.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            estimated_usage=estimated,
        )


def _kind(value: object) -> str:
    """A JSON value's kind for a log message (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _first_choice(choices: object, *, required: bool) -> dict[str, Any] | None:
    """``choices[0]`` of a chunk; None for the usage-only ``"choices": []`` chunk."""
    if choices is None and not required:
        return None
    if not isinstance(choices, list):
        raise _invalid(f"AI reply's choices is {_kind(choices)}, not a list")
    if not choices:
        if required:
            raise _invalid("AI reply has no choices")
        return None
    first = choices[0]
    if not isinstance(first, dict):
        raise _invalid(f"AI reply's choice is {_kind(first)}, not an object")
    return first


def _retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (delta-seconds, or an HTTP date against ``Date``)."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        # An HTTP date is measured against the server's own Date header, so neither
        # clock skew nor our clock enters the figure.
        try:
            when = email.utils.parsedate_to_datetime(value)
            now = email.utils.parsedate_to_datetime(headers.get("date", ""))
            seconds = (when - now).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _take_usage(reply: _Reply, usage: object) -> None:
    if not isinstance(usage, dict):
        return
    prompt = _int_or_none(usage.get("prompt_tokens"))
    completion = _int_or_none(usage.get("completion_tokens"))
    if prompt is not None:
        reply.input_tokens = prompt
    if completion is not None:
        reply.output_tokens = completion


def _take_chunk(reply: _Reply, chunk: dict[str, Any]) -> str:
    """Record a chunk's model, usage and finish; return its text.

    Absent or null fields are fine (the role chunk, the finish chunk, the usage-only
    chunk); a field of the wrong type means the server speaks something else, and
    guessing would show the visitor garbage or nothing.
    """
    model = _str_or_none(chunk.get("model"))
    if model:
        reply.model = model
    _take_usage(reply, chunk.get("usage"))
    choice = _first_choice(chunk.get("choices"), required=False)
    if choice is None:
        return ""
    if choice.get("finish_reason"):
        reply.finished = True
    delta = choice.get("delta")
    if delta is None:
        return ""
    if not isinstance(delta, dict):
        raise _invalid(f"AI chunk's delta is {_kind(delta)}, not an object")
    content = delta.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise _invalid(f"AI chunk's delta content is {_kind(content)}, not a string")
    if content:
        reply.parts.append(content)
    return content


def _count_tokens(text: str) -> int:
    try:
        from chatwatch.chat.tokens import count_tokens
    except ImportError:  # the tokenizer module is optional at this layer
        return len(text) // 4
    return count_tokens(text)


def _count_chat_tokens(turns: Sequence[ChatTurn]) -> int:
    try:
        from chatwatch.chat.tokens import count_chat_tokens
    except ImportError:  # the tokenizer module is optional at this layer
        return sum(len(t.content) // 4 + 4 for t in turns)
    return count_chat_tokens(turns)
