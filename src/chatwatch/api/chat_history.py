"""``GET /api/v1/chat/sessions/{id}/messages``: a session's history for its owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from chatwatch.api.deps import get_services, report_request_incident, require_user
from chatwatch.api.schemas import HistoryPage, errors, integer_or_empty
from chatwatch.auth import Principal
from chatwatch.chat.sessions import ChatRefusal
from chatwatch.events import FeatureUsed
from chatwatch.params import MAX_INT64, parse_int
from chatwatch.services import Services
from chatwatch.store.chat_store import StoredMessage
from chatwatch.timefmt import format_time

__all__ = ["router"]

router = APIRouter(tags=["chat"])

MAX_LIMIT = 1000
DEFAULT_LIMIT = 200


@router.get(
    "/api/v1/chat/sessions/{session_id}/messages",
    response_model=None,
    responses={
        200: {"model": HistoryPage},
        **errors(
            400,
            401,
            403,
            404,
            s403="The session belongs to another user",
            s404="No such session",
        ),
    },
)
async def session_messages(
    session_id: Annotated[
        str,
        # Any id is looked up (an unknown one is a 404); declared with its plainest form.
        Path(json_schema_extra={"minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9_-]+$"}),
    ],
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    principal: Annotated[Principal, Depends(require_user)],
    after: Annotated[
        str,
        Query(json_schema_extra=integer_or_empty(0, MAX_INT64, "a `seq`: items after it")),
    ] = "",
    limit: Annotated[
        str,
        Query(json_schema_extra=integer_or_empty(1, MAX_LIMIT, f"default {DEFAULT_LIMIT}")),
    ] = "",
) -> dict[str, Any]:
    """Messages of a session, oldest first; 403 for anyone but its owner or an admin.

    ``after`` (a ``seq``, default 0) and ``limit`` (1-1000, default 200) are checked by
    hand: a bad one is a 400 naming it, and no number past a BIGINT reaches the database.
    """
    try:
        after_seq = parse_int("after", after, 0, MAX_INT64) if after else 0
        count = parse_int("limit", limit, 1, MAX_LIMIT) if limit else DEFAULT_LIMIT
    except ValueError as err:
        raise HTTPException(status_code=400, detail=str(err)) from None
    try:
        session = await services.sessions.readable(principal, session_id)
    except ChatRefusal as err:
        if err.incident is not None:
            report_request_incident(
                request, err.incident, err.message, err.error_type, principal.user_id
            )
        raise HTTPException(status_code=err.status, detail=err.message) from None
    items = await services.store.list_messages(session_id, after=after_seq, limit=count)
    services.bus.emit(FeatureUsed(feature="history"))
    return {
        "session_id": session_id,
        "user_id": session.user_id,
        "items": [_item(m) for m in items],
        "next_after": items[-1].seq if len(items) == count else None,
    }


def _item(message: StoredMessage) -> dict[str, Any]:
    """A history item: the stored message with its time in the API's RFC 3339 form."""
    item = message.as_json()
    item["created_at"] = format_time(message.created_at)
    return item
