"""``POST /api/v1/auth/guest``: a token for a visitor."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from chatwatch.api.deps import get_services
from chatwatch.correlation import new_id
from chatwatch.events import FeatureUsed
from chatwatch.services import Services

__all__ = ["router"]

router = APIRouter(tags=["auth"])


@router.post("/api/v1/auth/guest")
async def guest_login(services: Annotated[Services, Depends(get_services)]) -> dict[str, Any]:
    """Mint a token for a new guest user."""
    settings = services.settings.auth
    if not settings.guest_login:
        raise HTTPException(status_code=403, detail="guest login is disabled")
    user_id = new_id("guest-")
    token = services.auth.mint(user_id, "user", ttl=settings.token_ttl)
    services.bus.emit(FeatureUsed(feature="guest_login"))
    return {"token": token, "user_id": user_id, "expires_in": int(settings.token_ttl)}
