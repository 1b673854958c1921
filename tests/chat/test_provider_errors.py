"""AIProviderError: a stable reason for labels, a detail for logs, a message for visitors."""

from __future__ import annotations

import pytest

from chatwatch.chat.providers.base import AIProviderError, AITimeout
from chatwatch.vocabulary import AIOutcome

UNAVAILABLE = "The AI consultant is not available right now. Please try again in a moment."


@pytest.mark.parametrize(
    "reason",
    [AIOutcome.ERROR, AIOutcome.TIMEOUT, AIOutcome.INVALID_REPLY, AIOutcome.CIRCUIT_OPEN],
)
def test_public_message_hides_the_detail(reason: AIOutcome) -> None:
    """Whatever went wrong upstream, the visitor's message is the same short sentence:
    no status, upstream text, host or exception name (before: 'AI server answered HTTP
    500: upstream exploded' reached the error frame)."""
    err = AIProviderError(
        "AI server answered HTTP 500: upstream exploded (ai.internal:9000, RemoteProtocolError)",
        reason=reason,
    )
    assert (err.reason, err.public_message, str(err) == err.detail) == (reason, UNAVAILABLE, True)


def test_budget_message_says_it_is_todays_limit() -> None:
    """A spent daily budget tells the visitor so, and when to come back."""
    err = AIProviderError("daily AI budget of $5 spent", reason=AIOutcome.BUDGET_EXCEEDED)
    assert ("today's limit" in err.public_message, "$5" in err.public_message) == (True, False)


def test_defaults_and_the_timeout_subclass() -> None:
    """A bare error is reason error, not retryable, with a detail for the logs; AITimeout
    is reason timeout; ``outcome`` still reads the reason as a plain label."""
    bare, timeout = AIProviderError(), AITimeout("no first byte within 5s")
    assert (
        bare.reason,
        bare.retryable,
        bare.retry_after,
        bool(bare.detail),
        timeout.reason,
        timeout.outcome,
        isinstance(timeout, AIProviderError),
    ) == (AIOutcome.ERROR, False, None, True, AIOutcome.TIMEOUT, "timeout", True)
