"""``GET /api/docs``: Swagger UI served from this server, offline and without inline script.

FastAPI's own page loads Swagger UI from a CDN (blank without Internet) and starts it with
an inline script (which a strict Content-Security-Policy forbids). Here the assets come
from the ``swagger-ui-bundle`` package and the start-up lives in ``/static/docs.js``.
Mounted only when ``server.api_docs`` is on.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

__all__ = ["ASSETS", "build_docs_router"]

# The files the page uses; nothing else of the bundle (its demo page points at a petstore).
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})


def build_docs_router(docs_url: str, openapi_url: str, title: str) -> APIRouter:
    """The docs page at ``docs_url`` and its assets under ``<docs_url>/assets/``."""
    router = APIRouter(include_in_schema=False)
    assets = f"{docs_url}/assets"
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)} — API</title>"
        f"<link rel='stylesheet' href='{assets}/swagger-ui.css'>"
        f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>"
        "</head><body>"
        f"<div id='swagger-ui' data-openapi-url='{escape(openapi_url)}'></div>"
        f"<script src='{assets}/swagger-ui-bundle.js'></script>"
        "<script src='/static/docs.js'></script>"
        "</body></html>"
    )

    @router.get(docs_url)
    async def docs_page() -> HTMLResponse:
        """Swagger UI for this API."""
        return HTMLResponse(page)

    @router.api_route(assets + "/{name}", methods=["GET", "HEAD"])
    async def docs_asset(name: str) -> FileResponse:
        """One of Swagger UI's files."""
        if name not in ASSETS:
            raise HTTPException(status_code=404, detail="Not Found")
        return FileResponse(Path(str(swagger_ui_path)) / name)

    return router
