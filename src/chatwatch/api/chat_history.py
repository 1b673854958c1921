"""``GET /api/v1/chat/sessions/{id}/messages``: a session's history for its owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from chatwatch.api.deps import get_services, report_request_incident, require_user
from chatwatch.auth import Principal
from chatwatch.chat.sessions import ChatRefusal
from chatwatch.events import FeatureUsed
from chatwatch.services import Services

__all__ = ["router"]

router = APIRouter(tags=["chat"])


@router.get("/api/v1/chat/sessions/{session_id}/messages")
async def session_messages(
    session_id: str,
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    principal: Annotated[Principal, Depends(require_user)],
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Messages of a session, oldest first; 403 for anyone but its owner or an admin."""
    try:
        session = await services.sessions.readable(principal, session_id)
    except ChatRefusal as err:
        if err.incident is not None:
            report_request_incident(
                request, err.incident, err.message, err.error_type, principal.user_id
            )
        raise HTTPException(status_code=err.status, detail=err.message) from None
    items = await services.store.list_messages(session_id, after=after, limit=limit)
    services.bus.emit(FeatureUsed(feature="history"))
    return {
        "session_id": session_id,
        "user_id": session.user_id,
        "items": [m.as_json() for m in items],
        "next_after": items[-1].seq if len(items) == limit else None,
    }
