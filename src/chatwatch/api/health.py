"""``/healthz`` (alive) and ``/readyz`` (the store answers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from chatwatch.api.deps import get_services
from chatwatch.services import Services

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ready", "store": "ok"}}}},
        503: {
            "description": "The store does not answer, or the server is shutting down",
            "content": {"application/json": {"example": {"status": "shutting_down"}}},
        },
    },
)
async def readyz(services: Annotated[Services, Depends(get_services)]) -> JSONResponse:
    """Ready when the store answers and the server is not shutting down."""
    if services.hub.draining:
        return JSONResponse({"status": "shutting_down"}, status_code=503)
    if not await services.db.ping():
        return JSONResponse({"status": "unavailable", "store": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ready", "store": "ok"})
