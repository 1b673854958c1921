"""``GET /ws/chat``: the handshake (auth, limits, session) and the ASGI side of a connection."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from chatwatch.api.incidents import report_incident
from chatwatch.api.origin import origin_allowed, report_origin_refused
from chatwatch.auth import AuthError, Principal, bearer
from chatwatch.chat.connection import ChatConnection, ClientGone
from chatwatch.chat.hub import HubEntry, Reservation
from chatwatch.chat.providers.base import ChatTurn
from chatwatch.correlation import new_id
from chatwatch.events import (
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    ErrorOccurred,
    FeatureUsed,
)
from chatwatch.observe.context import bind_connection, bind_message, current_correlation_id
from chatwatch.services import Services

__all__ = ["router"]

router = APIRouter()

# Closes the protocol layer makes when a client breaks the WebSocket rules (RFC 6455 §7.4):
# 1002 protocol error, 1007 invalid UTF-8 in a text frame, 1009 frame too big.
_PROTOCOL_CLOSES = frozenset({1002, 1007, 1009})


class _Refused(Exception):
    def __init__(self, status: int, close_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.close_code = close_code
        self.reason = reason
        self.message = message


async def _refuse(ws: WebSocket, services: Services, ip: str, ua: str, err: _Refused) -> None:
    """Refuse the upgrade with an HTTP status when the server can, else a 44xx close."""
    services.bus.emit(
        ConnectionFailed(reason=err.reason, client_ip=ip, user_agent=ua, status=err.status)
    )
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(
            JSONResponse({"detail": err.message, "code": err.reason}, status_code=err.status)
        )
    else:
        await ws.close(code=err.close_code, reason=err.message[:120])


def _authenticate(ws: WebSocket, services: Services, ip: str, ua: str) -> Principal:
    token = bearer(ws.headers.get("authorization")) or ws.query_params.get("token")
    try:
        return services.auth.verify(token)
    except AuthError as err:
        report_incident(
            services.bus,
            kind="auth_failed",
            error_type="authentication",
            code=err.failure.value,
            client_ip=ip,
            user_agent=ua,
            user_id=None,
            detail=f"{err.failure.value} on /ws/chat: {err.detail}",
        )
        raise _Refused(401, 4401, err.failure.value, err.detail) from None


async def _open_session(
    services: Services, principal: Principal, requested: str | None, ip: str, ua: str
) -> tuple[str, bool, list[ChatTurn]]:
    """The session to use: resume the caller's own, refuse another's, else start anew."""
    now = services.clock.time()
    if requested:
        session = await services.store.get_session(requested) if len(requested) <= 64 else None
        if session is not None:
            if session.user_id != principal.user_id:
                report_incident(
                    services.bus,
                    kind="forbidden_session",
                    error_type="authorization",
                    client_ip=ip,
                    user_agent=ua,
                    user_id=principal.user_id,
                    detail="resume of another user's session",
                )
                raise _Refused(
                    403, 4403, "forbidden_session", "this session belongs to another user"
                )
            await services.store.touch_session(session.id, now)
            recent = await services.store.recent_messages(
                session.id, services.chat.max_context_messages
            )
            history = [
                ChatTurn("user" if m.role == "user" else "assistant", m.content)
                for m in recent
                if m.role in ("user", "assistant")
            ]
            services.bus.emit(FeatureUsed(feature="resume"))
            return session.id, True, history
    session_id = new_id("s-")
    kind = "guest" if principal.user_id.startswith("guest-") else "user"
    await services.store.create_session(session_id, principal.user_id, kind, now)
    return session_id, False, []


@router.websocket("/ws/chat")
async def chat_socket(ws: WebSocket) -> None:
    """One chat connection, from handshake to close."""
    services: Services = ws.app.state.services
    ip = ws.client.host if ws.client else "unknown"
    ua = ws.headers.get("user-agent", "")[:256]
    origin = ws.headers.get("origin")
    if not origin_allowed(origin, services.settings.server):  # SPEC §2: cross-site sockets
        report_origin_refused(services.bus, origin or "", ip, ua, ws.url.path)
        refused = _Refused(403, 4403, "origin_refused", "this site may not open the chat")
        await _refuse(ws, services, ip, ua, refused)
        return
    hub = services.hub
    if hub.draining:
        await _refuse(
            ws, services, ip, ua, _Refused(503, 1012, "shutting_down", "server is restarting")
        )
        return
    try:
        principal = _authenticate(ws, services, ip, ua)
    except _Refused as err:
        await _refuse(ws, services, ip, ua, err)
        return
    reservation = hub.reserve(ip)
    if reservation is None:
        report_incident(
            services.bus,
            kind="too_many_connections",
            error_type="rate_limit",
            client_ip=ip,
            user_agent=ua,
            user_id=principal.user_id,
            detail=f"over {services.settings.limits.connections_per_ip} sockets from one address",
        )
        await _refuse(
            ws,
            services,
            ip,
            ua,
            _Refused(
                429,
                4429,
                "too_many_connections",
                f"more than {services.settings.limits.connections_per_ip} connections "
                "from this address",
            ),
        )
        return
    try:
        try:
            session_id, resumed, history = await _open_session(
                services, principal, ws.query_params.get("session_id"), ip, ua
            )
        except _Refused as err:
            await _refuse(ws, services, ip, ua, err)
            return
        except Exception as err:
            services.bus.emit(
                ErrorOccurred(
                    type="system",
                    code="internal",
                    detail="could not open the session",
                    exception=err,
                )
            )
            await _refuse(
                ws, services, ip, ua, _Refused(503, 1011, "internal", "store unavailable")
            )
            return
        await _serve(ws, services, principal, session_id, resumed, history, ip, ua, reservation)
    finally:
        hub.release(reservation)


async def _serve(
    ws: WebSocket,
    services: Services,
    principal: Principal,
    session_id: str,
    resumed: bool,
    history: list[ChatTurn],
    ip: str,
    ua: str,
    reservation: Reservation,
) -> None:
    connection_id = new_id("c-")
    # The handshake's correlation id names the connection's own records (opened, closed).
    connection_correlation = current_correlation_id()
    bind_connection(
        connection_id=connection_id,
        user_id=principal.user_id,
        session_id=session_id,
        client_ip=ip,
        user_agent=ua,
    )
    await ws.accept()

    async def send_text(text: str) -> None:
        await ws.send_text(text)

    conn = ChatConnection(
        services.chat,
        connection_id=connection_id,
        user_id=principal.user_id,
        session_id=session_id,
        client_ip=ip,
        user_agent=ua,
        history=history,
        send_text=send_text,
    )
    close_state: dict[str, Any] = {"reason": "client_closed", "code": 1000}

    async def close(code: int, reason: str) -> None:
        close_state.update(reason="server_shutdown", code=code)
        if ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(code=code, reason=reason)

    async def receive() -> str | bytes | None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            code = int(message.get("code") or 1000)
            if close_state["reason"] == "client_closed":
                close_state["code"] = code
                if code in _PROTOCOL_CLOSES:
                    close_state["reason"] = "protocol_error"
                if code == 1009:
                    report_incident(
                        services.bus,
                        kind="oversized_frame",
                        error_type="validation",
                        code="message_too_large",
                        client_ip=ip,
                        user_agent=ua,
                        user_id=principal.user_id,
                        detail=f"frame over {services.settings.limits.frame_limit} bytes",
                    )
            return None
        if message.get("text") is not None:
            return str(message["text"])
        return bytes(message.get("bytes") or b"")

    services.hub.register(
        HubEntry(
            connection_id=connection_id,
            user_id=principal.user_id,
            session_id=session_id,
            client_ip=ip,
            send=conn.send,
            close=close,
            drain=conn.drain,
        ),
        reservation,
        resumed=resumed,
    )
    started = services.clock.monotonic()
    services.bus.emit(
        ConnectionOpened(
            connection_id=connection_id,
            user_id=principal.user_id,
            session_id=session_id,
            client_ip=ip,
            user_agent=ua,
            resumed=resumed,
        )
    )
    try:
        await conn.send(
            {
                "type": "connected",
                "connection_id": connection_id,
                "session_id": session_id,
                "user_id": principal.user_id,
                "resumed": resumed,
            }
        )
        await conn.run(receive)
    except (ClientGone, WebSocketDisconnect):
        pass
    except Exception as err:
        close_state.update(reason="error", code=1011)
        services.bus.emit(
            ErrorOccurred(type="system", code="internal", detail="connection failed", exception=err)
        )
        with contextlib.suppress(Exception):
            await ws.close(code=1011)
    finally:
        await conn.stop()
        if connection_correlation is not None:
            bind_message(connection_correlation)
        services.hub.unregister(connection_id)
        services.bus.emit(
            ConnectionClosed(
                connection_id=connection_id,
                user_id=principal.user_id,
                session_id=session_id,
                reason=close_state["reason"],
                code=int(close_state["code"]),
                duration_s=services.clock.monotonic() - started,
                messages=conn.messages,
            )
        )
