"""The JSON admin metrics API of SPEC §7 (mounted under ``/api/v1/admin/chat`` with admin auth).

Under several workers each worker keeps its own windows: these figures are those of the worker
that answered, while ``/metrics`` sums every worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from chatwatch.api.audit import AuditAction, audit
from chatwatch.api.schemas import (
    ADMIN_ERRORS,
    ResetReply,
    errors,
    integer_or_empty,
    time_or_empty,
)
from chatwatch.observe.health import HealthChecker
from chatwatch.observe.metrics import json_api as metrics_api
from chatwatch.observe.metrics.history import DEFAULT_LIMIT, MAX_LIMIT, MetricsHistory
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.signals import Signals
from chatwatch.params import parse_int
from chatwatch.timefmt import format_time, parse_time

__all__ = ["build_admin_metrics_router"]

JSON = dict[str, Any]
_SEVERITIES = ("low", "medium", "high", "critical")


def _bad_request(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


def build_admin_metrics_router(
    metrics: ChatMetrics,
    history: MetricsHistory,
    health: HealthChecker,
    *,
    signals: Signals,
    active_alerts: Callable[[], int] = lambda: 0,
    include_alerts: bool = True,
) -> APIRouter:
    """Routes for metrics, each category, history, summary, reset, health and alerts."""
    # ``alerts`` answers an empty list until the alert engine brings its own router
    # (then pass include_alerts=False).
    router = APIRouter(tags=["admin metrics"], responses=ADMIN_ERRORS)

    @router.get("/metrics")
    async def all_metrics() -> JSON:
        """Every category in one object."""
        return metrics_api.all_categories(signals.read())

    def add_category(name: str) -> None:
        async def one_category() -> JSON:
            return metrics_api.category(name, signals.read())

        one_category.__doc__ = f"The {name} category."
        router.add_api_route(
            f"/metrics/{name}", one_category, methods=["GET"], name=f"metrics_{name}"
        )

    for name in metrics_api.CATEGORIES:
        add_category(name)

    @router.get("/metrics/history", responses=errors(400))
    async def metrics_history(
        since: Annotated[str | None, Query(json_schema_extra=time_or_empty("from"))] = None,
        until: Annotated[str | None, Query(json_schema_extra=time_or_empty("to"))] = None,
        limit: Annotated[
            str | None,
            Query(json_schema_extra=integer_or_empty(1, MAX_LIMIT, f"default {DEFAULT_LIMIT}")),
        ] = None,
    ) -> JSON:
        """Stored snapshots, oldest first (without ``since``: the latest ``limit``)."""
        # Parameters arrive as strings and are checked here, so that a bad one is a 400
        # naming it rather than FastAPI's generic 422. Empty ones count as absent, as in
        # the SPEC's own ``?since=&until=&limit=``.
        now = metrics.clock.time()
        try:
            t0 = parse_time("since", since, now) if since else None
            t1 = parse_time("until", until, now) if until else None
            n = parse_int("limit", limit, 1, MAX_LIMIT) if limit else DEFAULT_LIMIT
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        if t0 is not None and t1 is not None and t0 > t1:
            raise _bad_request("since: must not be after until")
        items = await history.query(t0, t1, n)
        for item in items:
            item["timestamp"] = format_time(item["timestamp"])
        return {"items": items}

    @router.get("/metrics/summary")
    async def metrics_summary() -> JSON:
        """Headline figures and health status, from one reading of the signals."""
        reading = signals.read()
        status = await health.status(reading)
        return metrics_api.summary(reading, status, active_alerts())

    @router.post("/metrics/reset", response_model=None, responses={200: {"model": ResetReply}})
    async def metrics_reset(request: Request) -> JSON:
        """Start a new window for the JSON figures (Prometheus counters stay monotonic)."""
        reset_at = format_time(metrics.reset())
        audit(request, AuditAction.METRICS_RESET, reset_at=reset_at)
        return {"reset_at": reset_at}

    @router.get("/health")
    async def health_status() -> JSON:
        """Overall status and the checks behind it."""
        return await health.check()

    if include_alerts:

        @router.get("/alerts")
        async def alerts() -> JSON:
            """Active alerts (none until the alert engine is wired in)."""
            return {"active": [], "counts": dict.fromkeys(_SEVERITIES, 0)}

    return router
