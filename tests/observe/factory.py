"""Events with sensible defaults, so each test states only what it is about."""

from __future__ import annotations

from chatwatch.events import (
    AIRequestCompleted,
    AIRequestFailed,
    ConnectionClosed,
    ConnectionOpened,
    MessageProcessed,
    MessageReceived,
    SessionEnded,
)


def opened(
    conn: str = "c1", user: str = "u1", session: str = "s1", *, resumed: bool = False
) -> ConnectionOpened:
    """A ConnectionOpened."""
    return ConnectionOpened(conn, user, session, "127.0.0.1", "pytest", resumed)


def closed(
    conn: str = "c1", user: str = "u1", *, reason: str = "client_closed", duration: float = 1.0
) -> ConnectionClosed:
    """A ConnectionClosed."""
    return ConnectionClosed(conn, user, "s1", reason, 1000, duration, 0)


def received(kind: str = "message") -> MessageReceived:
    """A MessageReceived of frame type ``kind``."""
    return MessageReceived(kind, "c1", "s1", "u1", "corr", 10)


def processed(duration: float = 0.01, *, ok: bool = True) -> MessageProcessed:
    """A MessageProcessed."""
    return MessageProcessed("message", "corr", duration, ok)


def ai_done(
    model: str = "gpt-4o-mini",
    *,
    provider: str = "openai",
    duration: float = 0.5,
    ttft: float | None = 0.1,
    tokens: tuple[int, int] = (10, 20),
    cost: float = 0.001,
    cached: bool = False,
) -> AIRequestCompleted:
    """An AIRequestCompleted."""
    return AIRequestCompleted(
        provider, model, "corr", tokens[0], tokens[1], cost, True, duration, ttft, cached, False
    )


def ai_failed(outcome: str = "error", model: str = "gpt-4o-mini") -> AIRequestFailed:
    """An AIRequestFailed."""
    return AIRequestFailed("openai", model, "corr", outcome, "HTTPStatusError", "500", 0.2)


def session_ended(
    session: str = "s1", *, duration: float = 60.0, messages: int = 4
) -> SessionEnded:
    """A SessionEnded."""
    return SessionEnded(session, "u1", duration, messages)
