"""One call to one provider: its stream relayed to the visitor, bounded by a deadline.

``Outlet`` is the visitor's end of the stream. It holds back leading whitespace until
real text follows, so a reply that turns out empty (or fails before its first word) has
shown the visitor nothing, and ``sent_text`` tells the caller whether a retry or a
fallback answer is still possible without repeating or contradicting shown text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from chatwatch.chat.providers.base import (
    AIProvider,
    AIProviderError,
    AIRequest,
    AITimeout,
    Completion,
    TextDelta,
)
from chatwatch.clock import Clock
from chatwatch.vocabulary import AIOutcome

__all__ = ["Answer", "ClientGone", "OnDelta", "Outlet", "call_once"]

OnDelta = Callable[[str], Awaitable[None]]


class ClientGone(Exception):
    """The visitor went away while their reply was being sent (``OnDelta`` may raise it)."""


T = TypeVar("T")

# A provider that ignores ``AIRequest.deadline`` is cut off this long after it; providers
# that honour it time out first, with a message saying which wait ran out.
_DEADLINE_GRACE_S = 1.0


class Outlet:
    """Relays deltas to the visitor and remembers whether any real text went out."""

    def __init__(self, on_delta: OnDelta) -> None:
        self._on_delta = on_delta
        self._held = ""
        self.sent_text = False

    async def send(self, text: str) -> None:
        """Pass ``text`` on, or hold it back while the reply so far is only whitespace."""
        if not self.sent_text and not text.strip():
            self._held += text
            return
        text, self._held = self._held + text, ""
        self.sent_text = True  # before the await: a send that fails midway may still arrive
        await self._on_delta(text)

    def discard(self) -> None:
        """Forget held-back whitespace of an attempt that failed."""
        self._held = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's finished reply and when its first text arrived (from ``started``)."""

    completion: Completion
    first_token_s: float | None


async def call_once(
    provider: AIProvider,
    request: AIRequest,
    out: Outlet,
    clock: Clock,
    started: float,
    whole_call_s: float,
) -> Answer:
    """Stream one reply from ``provider`` into ``out``; raise AIProviderError on failure.

    ``whole_call_s`` (the configured ai.timeout) only words the error message; the
    request's deadline is what bounds the call.
    """
    assert request.deadline is not None
    first_token: float | None = None
    completion: Completion | None = None
    try:
        async with asyncio.timeout_at(request.deadline + _DEADLINE_GRACE_S):
            async with _closing(provider.stream(request)) as items:
                async for item in items:
                    if isinstance(item, TextDelta):
                        if first_token is None:
                            first_token = clock.monotonic() - started
                        if item.text:
                            await out.send(item.text)
                    else:
                        completion = item
    except TimeoutError:
        raise AITimeout(f"no complete reply within {whole_call_s:g}s") from None
    if completion is None:
        raise AIProviderError("the provider ended without a completion")
    if not completion.content.strip():
        # Whatever the provider, a reply without words is no answer.
        raise AIProviderError("the provider's reply was empty", reason=AIOutcome.INVALID_REPLY)
    return Answer(completion, first_token)


@contextlib.asynccontextmanager
async def _closing(items: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Close a provider's stream promptly however the loop over it ends (timeout, error)."""
    try:
        yield items
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
