"""Who and what a log record is about, carried in contextvars (structlog's)."""

from __future__ import annotations

import structlog

__all__ = ["bind_connection", "bind_message", "clear_context", "current_correlation_id"]


def clear_context() -> None:
    """Forget everything bound so far (start of a request, connection or background job)."""
    structlog.contextvars.clear_contextvars()


def bind_connection(
    *, connection_id: str, user_id: str, session_id: str, client_ip: str, user_agent: str
) -> None:
    """Bind the identity of a WebSocket connection for every record it causes."""
    structlog.contextvars.bind_contextvars(
        connection_id=connection_id,
        user_id=user_id,
        session_id=session_id,
        client_ip=client_ip,
        user_agent=user_agent,
        component="chat",
    )


def bind_message(correlation_id: str) -> None:
    """Bind the correlation id of the message being handled."""
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


def current_correlation_id() -> str | None:
    """The correlation id bound in this context, if any."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return value if isinstance(value, str) else None
