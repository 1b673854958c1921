"""``GET /metrics``: Prometheus text or OpenMetrics by ``Accept``, rendered off the event loop."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry

from chatwatch.config import MetricsSettings
from chatwatch.events import ErrorOccurred, EventBus, SecurityEvent
from chatwatch.observe.metrics.exposition import Exposition

__all__ = ["build_metrics_endpoint"]


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def build_metrics_endpoint(
    registry: CollectorRegistry,
    settings: MetricsSettings,
    *,
    bus: EventBus | None = None,
    exposition: Exposition | None = None,
) -> APIRouter:
    """A router serving ``/metrics``; with ``settings.token`` set it needs that bearer token."""
    # ``bus`` (optional) hears a refused scrape as a security event. The router's
    # ``exposition`` attribute is the renderer (close it at shutdown to stop its thread).
    expo = exposition if exposition is not None else Exposition(registry)
    router = APIRouter()
    token = settings.token.encode() if settings.token else None

    def refuse(request: Request, detail: str) -> Response:
        if bus is not None:
            client = request.client.host if request.client else ""
            agent = request.headers.get("user-agent", "")
            bus.emit(SecurityEvent("auth_failed", client, agent, None, f"/metrics: {detail}"))
            bus.emit(ErrorOccurred("authentication", "metrics_token", detail))
        return Response(
            content='{"detail":"a valid bearer token is required for /metrics"}',
            status_code=401,
            media_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if token is not None:
            given = _bearer(request)
            if given is None:
                return refuse(request, "missing token")
            if not hmac.compare_digest(given.encode(), token):
                return refuse(request, "bad token")
        scrape = await expo.scrape(
            request.headers.get("accept"), request.headers.get("accept-encoding")
        )
        headers = {"Vary": "Accept, Accept-Encoding", "Cache-Control": "no-store"}
        if scrape.content_encoding:
            headers["Content-Encoding"] = scrape.content_encoding
        return Response(scrape.body, media_type=scrape.content_type, headers=headers)

    router.exposition = expo  # type: ignore[attr-defined]
    return router
