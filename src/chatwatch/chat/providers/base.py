"""The one interface every AI provider implements, and the errors it may raise.

Exceptions::

    AIProviderError          the provider could not answer; ``reason`` says how (an AIOutcome)
    └── AITimeout            no first byte, or no complete answer, within the timeout

An error carries two texts: ``detail`` for the logs (upstream status, error text, what was
malformed) and ``public_message`` for the visitor (short, fixed, nothing internal).
``str(err)`` is the detail: never show it to a visitor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from chatwatch.vocabulary import AIOutcome

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
    # The event loop's time (``loop.time()``) by which the whole reply must be complete:
    # retries share one deadline, so a provider must not start its own full timeout anew.
    deadline: float | None = None


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


_UNAVAILABLE = "The AI consultant is not available right now. Please try again in a moment."
_BUDGET = (
    "The AI consultant has reached today's limit. Please try again tomorrow, "
    "or ask to talk to a human consultant."
)


class AIProviderError(Exception):
    """The provider failed to produce a reply.

    ``reason`` is the outcome label (error, timeout, invalid_reply, circuit_open,
    budget_exceeded); ``detail`` is for logs only; ``retryable`` marks a failure before
    the first byte that another attempt may cure (429, 5xx, connection refused), with
    the upstream's ``Retry-After`` in seconds when it sent one.
    """

    default_reason: ClassVar[AIOutcome] = AIOutcome.ERROR

    def __init__(
        self,
        detail: str = "",
        *,
        reason: AIOutcome | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.reason: AIOutcome = reason or self.default_reason
        self.detail: str = detail or f"AI provider failed ({self.reason})"
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(self.detail)

    @property
    def outcome(self) -> str:
        """The reason as a plain label (kept for callers that read ``outcome``)."""
        return str(self.reason)

    @property
    def public_message(self) -> str:
        """A short message safe to show a visitor: no upstream text, hosts or class names."""
        return _BUDGET if self.reason is AIOutcome.BUDGET_EXCEEDED else _UNAVAILABLE


class AITimeout(AIProviderError):
    """The provider did not answer in time."""

    default_reason: ClassVar[AIOutcome] = AIOutcome.TIMEOUT


class AIProvider(ABC):
    """Streams a reply: zero or more ``TextDelta`` then exactly one ``Completion``."""

    name: str = "provider"
    model: str = "unknown"

    @abstractmethod
    def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        """Yield the reply; raise AIProviderError (or AITimeout) on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections."""
