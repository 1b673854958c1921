"""Browser hardening on a real server: headers on every response, the WebSocket Origin
check, local API docs, and no redirect built from a forged Host (issue 8, finding 9)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat

CLIENT_SITE = "https://www.client.example"
HARDENING = ("content-security-policy", "x-content-type-options", "referrer-policy")


def hardening(headers: Any) -> dict[str, str | None]:
    """The hardening headers of a response (None where missing)."""
    return {name: headers.get(name) for name in HARDENING}


def assert_hardened(headers: Any, *, framed_by: str = "'none'") -> None:
    found = hardening(headers)
    csp = found["content-security-policy"] or ""
    assert (found["x-content-type-options"], found["referrer-policy"]) == ("nosniff", "no-referrer")
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert directives.get("frame-ancestors") == framed_by


@pytest.fixture
async def server(live_server_factory: LiveServerFactory) -> Any:
    """A server whose chat a client site may embed."""
    async with live_server_factory(
        server={"public_url": "https://chat.example.com", "allowed_origins": [CLIENT_SITE]}
    ) as srv:
        yield srv


# --- headers ----------------------------------------------------------------------------


async def test_json_404_and_error_responses_carry_the_headers(server: LiveServer) -> None:
    """JSON (/healthz), a 404, a 401 and a static file all carry nosniff, no-referrer and a
    CSP that lets no one frame them (before: none of these headers was sent)."""
    async with server.http() as http:
        responses = [
            await http.get("/healthz"),
            await http.get("/no/such/path"),
            await http.get("/api/v1/admin/chat/metrics"),
            await http.get("/static/chat.js"),
        ]
    assert [r.status_code for r in responses] == [200, 404, 401, 200]
    for r in responses:
        assert_hardened(r.headers)
        assert r.headers["x-frame-options"] == "DENY"


async def test_admin_page_may_be_framed_by_no_one(server: LiveServer) -> None:
    """GET /admin (signed in) is HTML with frame-ancestors 'none' and its style from a file."""
    async with server.http() as http:
        r = await http.get("/admin", headers=server.admin_headers())
        css = await http.get("/static/admin.css")
    assert (r.status_code, css.status_code) == (200, 200)
    assert_hardened(r.headers)
    assert ("<style" in r.text, "/static/admin.css" in r.text) == (False, True)


async def test_chat_page_may_be_framed_by_the_allowed_origins_only(server: LiveServer) -> None:
    """GET / allows framing by itself, public_url and allowed_origins, and loads no inline
    script or style (its script and style are /static files)."""
    async with server.http() as http:
        r = await http.get("/")
    assert r.status_code == 200
    assert_hardened(
        r.headers,
        framed_by=f"'self' https://chat.example.com:443 {CLIENT_SITE}:443",
    )
    assert ("<script>" in r.text, "<style" in r.text) == (False, False)
    assert "x-frame-options" not in r.headers


async def test_websocket_denials_carry_the_headers(server: LiveServer) -> None:
    """A handshake refused with HTTP (no token: 401) carries the hardening headers."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.ws_url):
            pass
    assert refused.value.response.status_code == 401
    assert_hardened(refused.value.response.headers)


# --- WebSocket Origin -------------------------------------------------------------------


async def test_foreign_origin_is_refused_with_403_and_a_security_event(server: LiveServer) -> None:
    """Origin https://evil.example with a valid token: 403 origin_refused, a security event
    of type origin_refused, hardening headers (before: the socket was accepted)."""
    token, _ = await server.guest()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{server.ws_url}?token={token}", origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    response = refused.value.response
    assert (response.status_code, b"origin_refused" in response.body) == (403, True)
    assert_hardened(response.headers)
    totals = server.services.metrics.read().totals
    assert totals.security_by_type.get("origin_refused") == 1


@pytest.mark.parametrize(
    "origin", ["https://chat.example.com", "https://CHAT.example.com:443", CLIENT_SITE, None]
)
async def test_allowed_or_absent_origin_connects(server: LiveServer, origin: str | None) -> None:
    """public_url, an allowed origin (any case, explicit default port) or no Origin at all
    (a program, not a browser) gets the connected frame."""
    token, user_id = await server.guest()
    headers = {"Origin": origin} if origin else None
    client = await open_chat(server.ws_url, token, headers=headers)
    try:
        assert client.connected["user_id"] == user_id
    finally:
        await client.close()


@pytest.mark.parametrize("origin", ["http://chat.example.com", "https://chat.example.com:8443"])
async def test_origin_with_another_scheme_or_port_is_refused(
    server: LiveServer, origin: str
) -> None:
    """Same host, other scheme or port: a different origin, refused with 403."""
    token, _ = await server.guest()
    with pytest.raises(InvalidStatus) as refused:
        await open_chat(server.ws_url, token, headers={"Origin": origin})
    assert refused.value.response.status_code == 403


# --- forged Host ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/", "/api/v1/admin/chat/metrics/", "/healthz/"])
async def test_forged_host_gets_no_redirect_to_itself(server: LiveServer, path: str) -> None:
    """GET /admin/ (and other trailing-slash paths) with Host: evil.example is not
    redirected to http://evil.example/... (before: a 307 there, before any auth)."""
    async with server.http() as http:
        r = await http.get(path, headers={"Host": "evil.example"})
    assert "evil.example" not in r.headers.get("location", "")
    assert r.status_code in (401, 404)


async def test_admin_with_a_trailing_slash_is_the_admin_page(server: LiveServer) -> None:
    """GET /admin/ with the admin token answers the page itself."""
    async with server.http() as http:
        r = await http.get("/admin/", headers=server.admin_headers())
    assert (r.status_code, "chatwatch admin" in r.text) == (200, True)


# --- API docs ---------------------------------------------------------------------------


async def test_api_docs_load_every_asset_from_this_server(server: LiveServer) -> None:
    """/api/docs names no external URL (before: Swagger UI from a CDN) and each script,
    style and icon it names is served here."""
    async with server.http() as http:
        page = await http.get("/api/docs")
        assert page.status_code == 200
        assert "://" not in page.text
        names = [
            part.split("'", 1)[0]
            for part in page.text.replace('"', "'").split("='")[1:]
            if part.startswith("/")
        ]
        assets = [await http.get(name) for name in names if not name.startswith("/api/openapi")]
    assert sorted(names) == sorted(
        [
            "/api/docs/assets/swagger-ui.css",
            "/api/docs/assets/favicon-32x32.png",
            "/api/openapi.json",
            "/api/docs/assets/swagger-ui-bundle.js",
            "/static/docs.js",
        ]
    )
    assert [a.status_code for a in assets] == [200] * 4
    assert_hardened(page.headers)


async def test_only_the_docs_assets_are_served(server: LiveServer) -> None:
    """The bundle's other files (its petstore demo page) and path tricks are 404."""
    async with server.http() as http:
        codes = [
            (await http.get(f"/api/docs/assets/{name}")).status_code
            for name in ("index.html", "swagger-initializer.js", "..%2F__init__.py")
        ]
    assert codes == [404, 404, 404]


async def test_api_docs_off_is_404(live_server_factory: LiveServerFactory) -> None:
    """server.api_docs = false: /api/docs and /api/openapi.json are 404; the API still works."""
    async with live_server_factory(server={"api_docs": False}) as srv, srv.http() as http:
        codes = [
            (await http.get(path)).status_code
            for path in ("/api/docs", "/api/openapi.json", "/healthz")
        ]
    assert codes == [404, 404, 200]


async def test_openapi_document_is_served_with_docs_on(server: LiveServer) -> None:
    """Control: with docs on (the default) the OpenAPI document is there."""
    async with server.http() as http:
        r = await http.get("/api/openapi.json")
    assert (r.status_code, r.json()["info"]["title"]) == (200, "chatwatch")


def test_httpx_sends_the_host_header_we_set() -> None:
    """The forged-Host tests rely on httpx sending our Host header as given."""
    request = httpx.Request("GET", "http://127.0.0.1:1/admin/", headers={"Host": "evil.example"})
    assert request.headers["host"] == "evil.example"
