"""Admin actions on the live chat: broadcast a notice, see the security summary."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from chatwatch.api.audit import AuditAction, audit
from chatwatch.api.deps import get_services
from chatwatch.api.schemas import (
    ADMIN_ERRORS,
    BroadcastReply,
    BroadcastRequest,
    errors,
)
from chatwatch.observe.metrics import json_api as metrics_api
from chatwatch.services import Services

__all__ = ["router"]

router = APIRouter(tags=["admin"], responses=ADMIN_ERRORS)

MAX_BROADCAST_CHARS = 4096


@router.post(
    "/broadcast",
    response_model=None,
    responses={200: {"model": BroadcastReply}, **errors(400)},
    # The body is read and checked by hand (400 with a reason); declared here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BroadcastRequest.model_json_schema()}},
        }
    },
)
async def broadcast(
    request: Request, services: Annotated[Services, Depends(get_services)]
) -> JSONResponse:
    """Send ``{"message": …}`` to every connected visitor; returns how many got it."""
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"detail": "body must be JSON"}, status_code=400)
    text = body.get("message") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_BROADCAST_CHARS:
        return JSONResponse(
            {
                "detail": "field 'message' must be a non-empty string of at most "
                f"{MAX_BROADCAST_CHARS} chars"
            },
            status_code=400,
        )
    sent = await services.hub.broadcast({"type": "broadcast", "message": text})
    audit(request, AuditAction.BROADCAST, recipients=sent, message_chars=len(text))
    return JSONResponse({"recipients": sent})


@router.get("/security")
async def security_summary(
    services: Annotated[Services, Depends(get_services)],
) -> dict[str, Any]:
    """Security events by type (count objects over the metrics window, like the metrics
    categories) and, under ``recent``, the last minute's auth failures and busiest IPs."""
    return metrics_api.security(services.signals.read(), services.security.recent())
