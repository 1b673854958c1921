"""Admin log search and statistics (SPEC §5), mounted under ``/api/v1/admin/chat``.

Parameters are read and checked by hand rather than declared to FastAPI, so that every
bad value is a 400 whose ``detail`` names the parameter and the problem (FastAPI's own
validation answers 422), and a malformed full-text query never reaches the database.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from chatwatch.api.schemas import ADMIN_ERRORS, errors
from chatwatch.observe.logs.query import LogQueryError, parse_filters, time_param
from chatwatch.observe.logs.store import LogStore

__all__ = ["build_admin_logs_router"]

_STATS_PARAMS = frozenset({"since", "until"})


def _bad(err: LogQueryError) -> JSONResponse:
    return JSONResponse({"detail": str(err)}, status_code=400)


def build_admin_logs_router(logstore: LogStore) -> APIRouter:
    """``GET /logs`` and ``GET /logs/stats`` over ``logstore`` (auth is the mount's job)."""
    router = APIRouter(tags=["admin", "logs"], responses={**ADMIN_ERRORS, **errors(400)})

    @router.get("/logs")
    async def search_logs(request: Request) -> JSONResponse:
        """Stored log records, newest first: ``{"items": [...], "next_cursor": ...}``.

        Filters (all optional, all combinable): ``q`` (full text over event and message:
        words, "phrases", prefix*, AND, OR, NOT or -word, parentheses), ``level`` (one or
        a comma list), ``component``, ``event`` (a name, or a family as ``security.*``),
        ``user_id``, ``session_id``, ``correlation_id``, ``since``/``until`` (RFC 3339,
        UTC without a zone, epoch seconds, or a duration ago such as ``15m``), ``limit``
        (1-1000, default 100), ``cursor`` (from the previous page).
        """
        try:
            params = _single(request)
            filters, cursor, limit = parse_filters(params, logstore.clock.time())
        except LogQueryError as err:
            return _bad(err)
        return JSONResponse(await logstore.search(filters, cursor, limit))

    @router.get("/logs/stats")
    async def log_stats(request: Request) -> JSONResponse:
        """Counts by level, component and event family, and the error rate per time bucket
        between ``since`` (default: a day before ``until``) and ``until`` (default: now)."""
        try:
            params = {k: v for k, v in _single(request).items() if v != ""}
            unknown = sorted(set(params) - _STATS_PARAMS)
            if unknown:
                raise LogQueryError(
                    f"unknown parameter(s): {', '.join(u[:32] for u in unknown)}; "
                    "expected since, until"
                )
            now = logstore.clock.time()
            since = time_param("since", params["since"], now) if "since" in params else None
            until = time_param("until", params["until"], now) if "until" in params else None
            if since is not None and until is not None and since >= until:
                raise LogQueryError("since: must be before until")
            if since is not None and until is None and since >= now:
                raise LogQueryError("since: must be in the past")
            if until is not None and since is not None and until - since > 366 * 86400:
                raise LogQueryError("since: the range may span at most 366 days")
        except LogQueryError as err:
            return _bad(err)
        return JSONResponse(await logstore.stats(since, until))

    return router


def _single(request: Request) -> dict[str, str]:
    """Query parameters, each given at most once."""
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in params:
            raise LogQueryError(f"{key[:32]}: given more than once")
        params[key] = value
    return params
