"""``DELETE /users/{id}`` (under ``/api/v1/admin/chat``): the right to erasure.

Removes the user's sessions, messages and stored log records and answers how many of
each: ``{"user_id", "sessions", "messages", "log_records"}``. 404 when nothing is stored
about the id, 400 when it cannot be a user id at all, 409 when the user wrote meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request

from chatwatch.api.audit import AuditAction, audit
from chatwatch.api.schemas import ADMIN_ERRORS, ErasureReply, errors
from chatwatch.store.retention import ErasureConflict, Retention, check_user_id

__all__ = ["build_admin_users_router"]


def build_admin_users_router(
    retention: Retention, flush_logs: Callable[[], Awaitable[None]]
) -> APIRouter:
    """The erasure route; ``flush_logs`` writes queued log records first, so that none of
    the user's is stored after the erasure counted them."""
    router = APIRouter(tags=["admin", "users"], responses=ADMIN_ERRORS)

    @router.delete(
        "/users/{user_id}",
        response_model=None,
        responses={
            200: {"model": ErasureReply},
            **errors(400, 404, 409, s400="`user_id` cannot be a user id"),
        },
    )
    async def erase_user(
        user_id: Annotated[
            str,
            Path(
                description="1-64 printable characters",
                # Checked by hand (a 400 naming it); declared with its plainest form.
                json_schema_extra={
                    "minLength": 1,
                    "maxLength": 64,
                    "pattern": r"^[A-Za-z0-9_.:@-]+$",
                },
            ),
        ],
        request: Request,
    ) -> dict[str, Any]:
        """Erase a user's sessions, messages and log records; say how many of each."""
        try:
            check_user_id(user_id)
        except ValueError as err:
            raise HTTPException(status_code=400, detail=str(err)) from None
        await flush_logs()
        try:
            erased = await retention.erase_user(user_id)
        except ErasureConflict:
            raise HTTPException(
                status_code=409,
                detail="user_id: the user wrote while being erased; erase again once they "
                "have left",
            ) from None
        if erased is None:
            raise HTTPException(status_code=404, detail="user_id: no such user")
        # Not under ``user_id``: the audit record would be the erased user's first new log
        # record, and a second erasure would find them again.
        counts = erased.as_json()
        audit(request, AuditAction.USER_ERASED, erased_user_id=counts.pop("user_id"), **counts)
        return erased.as_json()

    return router
