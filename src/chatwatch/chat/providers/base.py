"""The one interface every AI provider implements, and the errors it may raise.

Exceptions::

    AIProviderError          the provider could not answer (HTTP error, cut stream, bad data)
    └── AITimeout            no first byte, or no complete answer, within the timeout
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AIProvider",
    "AIProviderError",
    "AIRequest",
    "AITimeout",
    "ChatTurn",
    "Completion",
    "TextDelta",
]


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One turn of the conversation as the model sees it."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class AIRequest:
    """What to answer: the conversation so far, the newest user turn last."""

    turns: Sequence[ChatTurn]
    correlation_id: str
    headers: Mapping[str, str] = field(default_factory=dict)  # X-Correlation-ID, traceparent
    quick_action: str | None = None  # set when the user pressed a quick action button


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of a reply: always the last item a stream yields."""

    content: str
    model: str
    input_tokens: int
    output_tokens: int
    estimated_usage: bool = False  # True when tokens were counted locally, not reported
    quick_actions: tuple[str, ...] = ()  # suggested next actions for the client
    handoff: bool = False  # the consultant offered a human hand-off


class AIProviderError(Exception):
    """The provider failed to produce a reply."""

    outcome = "error"


class AITimeout(AIProviderError):
    """The provider did not answer in time."""

    outcome = "timeout"


class AIProvider(ABC):
    """Streams a reply: zero or more ``TextDelta`` then exactly one ``Completion``."""

    name: str = "provider"
    model: str = "unknown"

    @abstractmethod
    def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        """Yield the reply; raise AIProviderError (or AITimeout) on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections."""
