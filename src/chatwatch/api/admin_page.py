"""``GET /admin``: one server-rendered page for the operator at 3 a.m.

Health, the headline figures, who is misbehaving and the latest errors with their
correlation ids, on one screen, without JavaScript (its style is ``/static/admin.css``:
the Content-Security-Policy allows no inline style). It needs admin credentials like
every admin path (SPEC §3): a Bearer header, which curl, a proxy or a browser extension
adds.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from chatwatch.api.deps import get_services
from chatwatch.api.schemas import ADMIN_ERRORS
from chatwatch.observe.logs.query import LogFilters
from chatwatch.observe.metrics.json_api import headline
from chatwatch.services import Services

__all__ = ["router"]

router = APIRouter(tags=["admin"], responses=ADMIN_ERRORS)


def _row(*cells: Any) -> str:
    return "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>"


@router.get("/admin", response_class=HTMLResponse)
# ``/admin/`` answers too rather than being redirected: Starlette's trailing-slash redirect
# builds an absolute URL from the Host header, an open redirect for a forged Host.
@router.get("/admin/", response_class=HTMLResponse, include_in_schema=False)
async def admin_page(services: Annotated[Services, Depends(get_services)]) -> HTMLResponse:
    """The operator's page: health, headline figures, security, recent errors."""
    reading = services.signals.read()
    health = await services.health.check(reading)
    figures = headline(reading, active_alerts=len(services.alerts.active()))
    security = services.security.recent(top=5)
    errors = await services.logstore.search(LogFilters(levels=("error", "critical")), limit=10)
    status = escape(str(health["status"]))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>chatwatch admin</title>"
        "<link rel='stylesheet' href='/static/admin.css'></head><body>",
        f"<h1>chatwatch — <span class='{status}'>{status}</span></h1>",
        "<h2>Health</h2><table><tr><th>check</th><th>status</th><th>detail</th></tr>",
        *(
            _row(name, check.get("status"), check.get("detail", ""))
            for name, check in health["checks"].items()
        ),
        "</table><h2>Now</h2><table>",
        *(_row(key, "—" if value is None else value) for key, value in figures.items()),
        f"</table><h2>Security (last {security.window_seconds:g} s)</h2><table>"
        "<tr><th>client IP</th><th>events</th><th>auth failures</th></tr>",
        *(_row(ip.client_ip, ip.events, ip.auth_failures) for ip in security.top_ips),
        "</table><h2>Latest errors</h2><table>"
        "<tr><th>time</th><th>event</th><th>correlation id</th><th>detail</th></tr>",
        *(
            _row(
                item.get("timestamp", ""),
                item.get("event", ""),
                item.get("correlation_id") or "",
                item.get("detail") or item.get("message") or item.get("error.message") or "",
            )
            for item in errors["items"]
        ),
        "</table><p>JSON: <code>/api/v1/admin/chat/metrics</code>, "
        "<code>/api/v1/admin/chat/logs?correlation_id=…</code>, "
        "<code>/api/v1/admin/chat/health</code></p></body></html>",
    ]
    return HTMLResponse("".join(parts))
