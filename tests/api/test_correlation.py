"""The correlation middleware on a tiny inline app: headers, context, request records."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request, WebSocket
from starlette.testclient import TestClient

from chatwatch.api.correlation import CorrelationMiddleware
from chatwatch.correlation import valid_correlation_id
from chatwatch.observe.context import current_context
from chatwatch.observe.logs.pipeline import get_logger
from tests.observe.logcapture import Captured, capture_logging


def build_app() -> CorrelationMiddleware:
    """An app that echoes its logging context, fails on demand and accepts a socket."""
    app = FastAPI()

    @app.get("/echo")
    async def echo(request: Request) -> dict[str, object]:
        get_logger().info("handler.ran", headers=dict(request.headers))
        return {"context": current_context(), "state": request.state.correlation_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom with password=hunter2")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(current_context())
        await websocket.close()

    return CorrelationMiddleware(app)


@pytest.fixture
def cap() -> Iterator[Captured]:
    """Logging captured at DEBUG."""
    with capture_logging(level="DEBUG") as captured:
        yield captured


@pytest.fixture
def client(cap: Captured) -> Iterator[TestClient]:
    """A test client on the wrapped app (raising server errors as responses)."""
    with TestClient(build_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def test_valid_incoming_id_is_kept(client: TestClient) -> None:
    """A valid X-Correlation-ID is echoed and bound for the handler."""
    r = client.get("/echo", headers={"X-Correlation-ID": "req-1.A_b"})
    assert r.headers["X-Correlation-ID"] == "req-1.A_b"
    assert r.json()["context"]["correlation_id"] == "req-1.A_b"
    assert r.json()["state"] == "req-1.A_b"


@pytest.mark.parametrize("bad", ["", "x" * 65, "has space", "semi;colon", "ünïcode", "a\tb"])
def test_invalid_incoming_id_is_replaced(client: TestClient, bad: str) -> None:
    """An invalid X-Correlation-ID is replaced by a new valid one."""
    r = client.get("/echo", headers=[(b"X-Correlation-ID", bad.encode("utf-8"))])
    new = r.headers["X-Correlation-ID"]
    assert new != bad and valid_correlation_id(new)


def test_missing_id_gets_a_new_one_per_request(client: TestClient) -> None:
    """Without the header each request gets its own new id."""
    first = client.get("/echo").headers["X-Correlation-ID"]
    second = client.get("/echo").headers["X-Correlation-ID"]
    assert valid_correlation_id(first) and valid_correlation_id(second)
    assert first != second


def test_handler_context_has_client_identity(client: TestClient) -> None:
    """The handler sees client_ip, user_agent and component=http bound."""
    context = client.get("/echo", headers={"User-Agent": "probe/2"}).json()["context"]
    assert context["client_ip"] == "testclient"
    assert context["user_agent"] == "probe/2"
    assert context["component"] == "http"


def test_request_is_logged_with_status_and_duration(client: TestClient, cap: Captured) -> None:
    """One http.request record per request, with method, path, status and duration_ms."""
    r = client.get("/echo?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
    (record,) = cap.events("http.request")
    assert (record["method"], record["path"], record["status"]) == ("GET", "/echo", 200)
    assert isinstance(record["duration_ms"], float)
    assert record["correlation_id"] == r.headers["X-Correlation-ID"]
    assert "eyJzdWIiOiJ4In0" not in cap.text


def test_handler_records_share_the_request_id(client: TestClient, cap: Captured) -> None:
    """Records logged by the handler carry the request's correlation id."""
    r = client.get("/echo", headers={"X-Correlation-ID": "trail-7"})
    assert r.status_code == 200
    # The test client's own "HTTP Request" record is logged outside the request.
    ours = [rec for rec in cap.lines() if not rec["event"].startswith("log.")]
    assert {rec["event"] for rec in ours} == {"handler.ran", "http.request"}
    assert {rec["correlation_id"] for rec in ours} == {"trail-7"}


def test_authorization_header_never_reaches_the_log(client: TestClient, cap: Captured) -> None:
    """A handler logging its headers does not leak the Authorization value."""
    client.get("/echo", headers={"Authorization": "Bearer super-secret-value-1"})
    assert "super-secret-value-1" not in cap.text
    assert "super-secret-value-1" not in repr(cap.stored)


def test_unhandled_error_keeps_header_and_logs_stack(client: TestClient, cap: Captured) -> None:
    """A 500 still carries the header; error.unhandled has the stack trace, redacted."""
    r = client.get("/boom", headers={"X-Correlation-ID": "boom-1"})
    assert r.status_code == 500
    assert r.headers["X-Correlation-ID"] == "boom-1"
    (error,) = cap.events("error.unhandled")
    assert error["error.type"] == "RuntimeError"
    assert "kaboom" in error["error.stack_trace"]
    assert "hunter2" not in cap.text
    (request,) = cap.events("http.request")
    assert (request["status"], request["level"]) == (500, "error")


def test_quiet_paths_are_debug(client: TestClient, cap: Captured) -> None:
    """Health checks are logged at debug so probes do not flood the log."""
    client.get("/healthz")
    assert cap.events("http.request")[0]["level"] == "debug"


def test_websocket_accept_carries_the_id(client: TestClient) -> None:
    """A WebSocket handshake gets the id bound (component ws) and in the accept headers."""
    with client.websocket_connect("/ws", headers={"X-Correlation-ID": "ws-1"}) as ws:
        context = ws.receive_json()
    assert context["correlation_id"] == "ws-1"
    assert context["component"] == "ws"


async def test_lifespan_scopes_pass_through() -> None:
    """Non-HTTP scopes reach the app untouched."""
    seen: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    async def receive() -> dict[str, object]:
        return {}

    async def send(_message: object) -> None:
        return None

    await CorrelationMiddleware(app)({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
