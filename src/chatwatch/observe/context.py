"""Who and what a log record is about, carried in contextvars (structlog's).

A request, a WebSocket connection and a background job each start from a clean context
(``clear_context``) and bind what they know; every record logged while they run carries
it, because the first log processor merges these contextvars into the record. Asyncio
tasks copy the context when created, so work spawned for a message keeps its correlation id.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from chatwatch.correlation import new_correlation_id

__all__ = [
    "background_job",
    "bind",
    "bind_connection",
    "bind_message",
    "bind_request",
    "clear_context",
    "current_context",
    "current_correlation_id",
    "start_background_job",
]


def clear_context() -> None:
    """Forget everything bound so far (start of a request, connection or background job)."""
    structlog.contextvars.clear_contextvars()


def bind(**values: Any) -> None:
    """Bind arbitrary fields for every later record in this context."""
    structlog.contextvars.bind_contextvars(**values)


def bind_request(
    *, correlation_id: str, client_ip: str, user_agent: str, component: str = "http"
) -> None:
    """Bind what an HTTP request or WebSocket handshake is known by."""
    structlog.contextvars.bind_contextvars(
        correlation_id=correlation_id,
        client_ip=client_ip,
        user_agent=user_agent,
        component=component,
    )


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


def current_context() -> dict[str, Any]:
    """A copy of everything bound in this context."""
    return structlog.contextvars.get_contextvars()


def start_background_job(component: str) -> str:
    """Start one run of background work (a snapshot, an alert check) with its own id.

    Clears the context first: a job must not inherit a request's identity. Returns the
    new correlation id.
    """
    correlation_id = new_correlation_id()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id, component=component)
    return correlation_id


@contextmanager
def background_job(component: str) -> Iterator[str]:
    """``with background_job("alerts") as cid:`` — a fresh context, restored afterwards."""
    saved = structlog.contextvars.get_contextvars()
    try:
        yield start_background_job(component)
    finally:
        structlog.contextvars.clear_contextvars()
        if saved:
            structlog.contextvars.bind_contextvars(**saved)
