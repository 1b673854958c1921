"""Who did what: one ``audit.<action>`` log record per admin action.

Audit records go through the same structlog pipeline as every other record, so they are
on stdout and in the log store, found with ``GET /api/v1/admin/chat/logs?event=audit.*``.
Each names the operator (the admin-role JWT's ``sub``, or ``admin-token`` for the shared
token), how they signed in, the client IP and the correlation id, plus the action's own
fields. They are written whatever ``logging.level`` says: an audit trail with holes in it
is no audit trail.

Routers call ``audit(request, AuditAction.X, **fields)`` after the action succeeded; the
admin is the one ``require_admin`` left on the request.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import Request

from chatwatch.auth import Principal
from chatwatch.observe.logs.pipeline import get_logger

__all__ = ["AuditAction", "audit", "operator_fields"]

_log = get_logger("audit")


class AuditAction(StrEnum):
    """The admin actions that leave an audit record (the record's event is ``audit.<value>``)."""

    BROADCAST = "broadcast"
    METRICS_RESET = "metrics_reset"
    USER_ERASED = "user_erased"
    ADMIN_TOKEN_ROTATED = "admin_token_rotated"
    ALERT_RAISED = "alert_raised"
    ALERT_ACKNOWLEDGED = "alert_acknowledged"
    ALERT_RESOLVED = "alert_resolved"
    RULE_CREATED = "rule_created"
    RULE_UPDATED = "rule_updated"
    RULE_DELETED = "rule_deleted"
    SILENCE_CREATED = "silence_created"
    SILENCE_DELETED = "silence_deleted"


def operator_fields(actor: Request | Principal | str) -> dict[str, Any]:
    """``operator``, ``operator_via`` and, for a request, ``client_ip`` and ``correlation_id``."""
    if isinstance(actor, str):
        return {"operator": actor, "operator_via": "cli"}
    if isinstance(actor, Principal):
        return {"operator": actor.operator, "operator_via": actor.via}
    principal = getattr(actor.state, "principal", None)
    fields: dict[str, Any] = (
        operator_fields(principal)
        if isinstance(principal, Principal)
        # A router that audits without require_admin is a bug; the record still says so.
        else {"operator": "unauthenticated", "operator_via": "none"}
    )
    fields["client_ip"] = actor.client.host if actor.client else "unknown"
    correlation_id = getattr(actor.state, "correlation_id", None)
    if correlation_id is not None:
        fields["correlation_id"] = correlation_id
    return fields


def audit(actor: Request | Principal | str, action: AuditAction | str, **fields: Any) -> None:
    """Record admin action ``action`` by ``actor`` (a request, its admin, or an operator name).

    Without a request the client IP and correlation id are those bound in the logging
    context (the current request's, when there is one).
    """
    name = str(action)
    if not name or not name.replace("_", "").isalnum() or len(name) > 64:
        raise ValueError(f"audit action {name!r} must be 1-64 of [a-z0-9_]")
    record = {**fields, **operator_fields(actor)}
    # ``_proxy_to_logger`` is structlog's hook for bound-logger classes: it runs the whole
    # processor chain without our logger's level filter, so audit records are always kept.
    _log._proxy_to_logger("info", f"audit.{name}", **record)
