"""Correlation ids for HTTP requests and WebSocket handshakes: plain ASGI middleware.

Plain ASGI rather than ``BaseHTTPMiddleware``: the latter runs the app in another task,
so contextvars bound here would not reach the handlers (Starlette's docs warn of this).

Per request: a clean logging context; the caller's ``X-Correlation-ID`` if it is valid
(SPEC §5: 1–64 of ``[A-Za-z0-9._-]``), else a new one; ``client_ip``, ``user_agent`` and
``component`` bound; ``X-Correlation-ID`` on the response (on a WebSocket's accept or
denial too); one ``http.request`` record with status and ``duration_ms``. The id is also
left in ``scope["state"]["correlation_id"]`` (``request.state.correlation_id``).

Wrap the whole app (``CorrelationMiddleware(app)``) rather than ``app.add_middleware``:
outermost, even the 500 that Starlette's error middleware sends carries the header.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatwatch.correlation import new_correlation_id, valid_correlation_id
from chatwatch.observe.context import bind_request, clear_context
from chatwatch.observe.logs.pipeline import get_logger

__all__ = ["HEADER", "CorrelationMiddleware"]

HEADER = "X-Correlation-ID"
_HEADER_KEY = HEADER.lower().encode("latin-1")


class CorrelationMiddleware:
    """Binds a correlation id and the caller's identity for every HTTP and WebSocket scope."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        quiet_paths: Iterable[str] = ("/healthz", "/readyz", "/metrics"),
    ) -> None:
        self.app = app
        self.quiet_paths = frozenset(quiet_paths)
        self._log = get_logger("http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming: str | None = None
        agent = ""
        for name, value in scope.get("headers") or ():
            if name == _HEADER_KEY:
                incoming = value.decode("latin-1")
            elif name == b"user-agent":
                agent = value.decode("latin-1")[:256]
        correlation_id = (
            incoming
            if incoming is not None and valid_correlation_id(incoming)
            else new_correlation_id()
        )
        client = scope.get("client")
        client_ip = client[0] if client else "unknown"
        clear_context()
        bind_request(
            correlation_id=correlation_id,
            client_ip=client_ip,
            user_agent=agent,
            component="http" if kind == "http" else "ws",
        )
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        header = (_HEADER_KEY, correlation_id.encode("latin-1"))
        if kind == "websocket":
            await self.app(scope, receive, _with_header(send, header, _WS_STARTS))
            return
        await self._http(scope, receive, send, header)

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, header: tuple[bytes, bytes]
    ) -> None:
        status = 500
        started = time.perf_counter()

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = _add_header(message, header)
            await send(message)

        path = scope.get("path", "")
        fields: dict[str, Any] = {"method": scope.get("method", ""), "path": path}
        try:
            await self.app(scope, receive, send_with_header)
        except Exception as exc:
            self._log.error("error.unhandled", exc_info=exc, **fields)
            raise
        finally:
            fields.update(
                status=status, duration_ms=round((time.perf_counter() - started) * 1e3, 3)
            )
            if status >= 500:
                self._log.error("http.request", **fields)
            elif path in self.quiet_paths:
                self._log.debug("http.request", **fields)
            else:
                self._log.info("http.request", **fields)


_WS_STARTS = frozenset({"websocket.accept", "websocket.http.response.start"})


def _add_header(message: Message, header: tuple[bytes, bytes]) -> Message:
    headers = [h for h in message.get("headers") or () if h[0].lower() != header[0]]
    return {**message, "headers": [*headers, header]}


def _with_header(send: Send, header: tuple[bytes, bytes], types: frozenset[str]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] in types:
            message = _add_header(message, header)
        await send(message)

    return wrapped
