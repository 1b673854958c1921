"""Browser hardening headers on every HTTP response: plain ASGI middleware.

Every response (pages, JSON, errors, static files, and the HTTP denial of a WebSocket
handshake) gets ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and
a ``Content-Security-Policy``. No page of ours runs inline script or style (they load
``/static/…`` files), so no policy needs ``'unsafe-inline'``:

- the chat page ``/`` may be framed by the origins allowed to embed the chat
  (``server.public_url`` and ``server.allowed_origins``) and may open WebSockets to the
  public URL;
- everything else, ``/admin`` and ``/api/docs`` included, may be framed by no one
  (``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for old browsers).

A header the application set itself is left alone. Plain ASGI rather than
``BaseHTTPMiddleware``, which would run the app in another task and lose contextvars.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatwatch.api.origin import allowed_origins, format_origin
from chatwatch.config import ServerSettings

__all__ = ["ContentPolicies", "SecurityHeadersMiddleware", "content_policies"]

_BASE = (
    "default-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
)
_STARTS = frozenset({"http.response.start", "websocket.http.response.start"})


@dataclass(frozen=True, slots=True)
class ContentPolicies:
    """The Content-Security-Policy of the chat page and of every other response."""

    chat_page: str
    default: str
    chat_paths: frozenset[str] = frozenset({"/"})

    def headers_for(self, path: str) -> list[tuple[bytes, bytes]]:
        """The hardening headers of a response to ``path``."""
        headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if path in self.chat_paths:
            headers.append((b"content-security-policy", self.chat_page.encode("latin-1")))
        else:
            headers.append((b"content-security-policy", self.default.encode("latin-1")))
            headers.append((b"x-frame-options", b"DENY"))
        return headers


def content_policies(server: ServerSettings) -> ContentPolicies:
    """The policies for these settings (who may embed the chat, where its socket goes)."""
    # CSP source expressions cannot name an IPv6 literal; such a page is covered by 'self'.
    origins = sorted(o for o in allowed_origins(server) if ":" not in o[1])
    embedders = " ".join(format_origin(o) for o in origins)
    sockets = " ".join(format_origin(o, "wss" if o[0] == "https" else "ws") for o in origins)
    chat = (*_BASE, f"connect-src 'self' {sockets}", f"frame-ancestors 'self' {embedders}")
    default = (*_BASE, "connect-src 'self'", "frame-ancestors 'none'")
    return ContentPolicies(chat_page="; ".join(chat), default="; ".join(default))


class SecurityHeadersMiddleware:
    """Adds the hardening headers of ``policies`` to every HTTP response."""

    def __init__(self, app: ASGIApp, policies: ContentPolicies) -> None:
        self.app = app
        self.policies = policies

    def __getattr__(self, name: str) -> Any:
        # Reach the wrapped app's attributes (``state``…) through the wrapper.
        if name == "app":
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        extra = self.policies.headers_for(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] in _STARTS:
                message = _with_defaults(message, extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_defaults(message: Message, extra: Iterable[tuple[bytes, bytes]]) -> Message:
    headers = list(message.get("headers") or ())
    present = {name.lower() for name, _ in headers}
    headers.extend(h for h in extra if h[0] not in present)
    return {**message, "headers": headers}
