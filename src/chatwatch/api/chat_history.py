"""``GET /api/v1/chat/sessions/{id}/messages``: a session's history for its owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from chatwatch.api.deps import get_services, report_request_incident, require_user
from chatwatch.auth import Principal
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
    if len(session_id) > 64:
        raise HTTPException(status_code=404, detail="no such session")
    session = await services.store.get_session(session_id)
    if session is None:
        raise HTTPException(status_code=404, detail="no such session")
    if session.user_id != principal.user_id and not principal.is_admin:
        report_request_incident(
            request,
            "forbidden_session",
            "session of another user",
            "authorization",
            principal.user_id,
        )
        raise HTTPException(status_code=403, detail="this session belongs to another user")
    items = await services.store.list_messages(session_id, after=after, limit=limit)
    services.bus.emit(FeatureUsed(feature="history"))
    return {
        "session_id": session_id,
        "user_id": session.user_id,
        "items": [m.as_json() for m in items],
        "next_after": items[-1].seq if len(items) == limit else None,
    }
