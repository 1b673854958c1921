"""``POST /api/v1/auth/guest``: a token for a visitor, at most so many a minute per IP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from chatwatch.api.deps import client_ip, get_services, report_request_incident
from chatwatch.api.schemas import ErrorBody, GuestToken
from chatwatch.correlation import new_id
from chatwatch.events import FeatureUsed
from chatwatch.services import Services
from chatwatch.vocabulary import ErrorType

__all__ = ["router"]

router = APIRouter(tags=["auth"])

_TOO_MANY = {
    "description": "More than `limits.guest_logins_per_minute` guest logins from this client "
    "IP within a minute; try again after `Retry-After` seconds.",
    "headers": {
        "Retry-After": {
            "description": "Seconds until a guest login from this IP is accepted again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    "content": {
        "application/json": {
            "schema": ErrorBody.model_json_schema(),
            "example": {
                "detail": "more than 60 guest logins a minute from your address; try again in 12 s"
            },
        }
    },
}


@router.post(
    "/api/v1/auth/guest",
    response_model=None,
    responses={
        200: {"model": GuestToken},
        403: {"model": ErrorBody, "description": "Guest login is disabled"},
        429: _TOO_MANY,
    },
)
async def guest_login(
    request: Request, services: Annotated[Services, Depends(get_services)]
) -> dict[str, Any]:
    """Mint a token for a new guest user."""
    settings = services.settings.auth
    if not settings.guest_login:
        raise HTTPException(status_code=403, detail="guest login is disabled")
    refusal = await services.limits.hit_guest_login(client_ip(request))
    if refusal is not None:
        report_request_incident(
            request, refusal.security_type, refusal.message, ErrorType.RATE_LIMIT
        )
        raise HTTPException(
            status_code=429,
            detail=refusal.message,
            headers={"Retry-After": str(refusal.retry_after_s)},
        )
    user_id = new_id("guest-")
    token = services.auth.mint(user_id, "user", ttl=settings.token_ttl)
    services.bus.emit(FeatureUsed(feature="guest_login"))
    return {"token": token, "user_id": user_id, "expires_in": int(settings.token_ttl)}
