"""A refused caller is both a security event and an error: said once, in one place."""

from __future__ import annotations

from chatwatch.events import ErrorOccurred, EventBus, SecurityEvent

__all__ = ["report_incident"]


def report_incident(
    bus: EventBus,
    *,
    kind: str,
    error_type: str,
    code: str | None = None,
    client_ip: str,
    user_agent: str,
    user_id: str | None,
    detail: str,
) -> None:
    """Emit the SecurityEvent ``kind`` and the ErrorOccurred of ``error_type`` for one refusal."""
    bus.emit(
        SecurityEvent(
            type=kind,
            client_ip=client_ip,
            user_agent=user_agent[:256],
            user_id=user_id,
            detail=detail[:300],
        )
    )
    bus.emit(ErrorOccurred(type=error_type, code=code or kind, detail=detail[:300]))
