"""``GET /ws/chat``: the ASGI side of a chat connection; the rules live in ``chat/``.

The handshake maps domain refusals (``chat.sessions.ChatRefusal``) to an HTTP denial
(or a 44xx close where the server cannot send one) and reports each as its security event.
"""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, WebSocket
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from chatwatch.api.incidents import report_incident
from chatwatch.api.origin import origin_allowed
from chatwatch.auth import AuthError, Principal, bearer
from chatwatch.chat.connection import ChatConnection, ClientGone, Peer
from chatwatch.chat.hub import HubEntry, Reservation
from chatwatch.chat.sessions import (
    AuthenticationRefused,
    ChatRefusal,
    OpenedSession,
    OriginRefused,
    ShuttingDown,
    TooManyConnections,
)
from chatwatch.correlation import new_id
from chatwatch.events import ConnectionClosed, ConnectionFailed, ConnectionOpened, ErrorOccurred
from chatwatch.observe.context import bind_connection, bind_message, current_correlation_id
from chatwatch.services import Services
from chatwatch.vocabulary import CloseReason, ErrorCode, ErrorType, SecurityEventType

__all__ = ["router"]

router = APIRouter()

# Closes the protocol layer makes when a client breaks the WebSocket rules (RFC 6455 §7.4):
# 1002 protocol error, 1007 invalid UTF-8 in a text frame, 1009 frame too big.
_PROTOCOL_CLOSES = frozenset({1002, 1007, 1009})


class _Handshake:
    """One upgrade request: who asks, and how to refuse them."""

    def __init__(self, ws: WebSocket, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.ip = ws.client.host if ws.client else "unknown"
        self.ua = ws.headers.get("user-agent", "")[:256]

    def authenticate(self) -> Principal:
        token = bearer(self.ws.headers.get("authorization")) or self.ws.query_params.get("token")
        try:
            return self.services.auth.verify(token)
        except AuthError as err:
            raise AuthenticationRefused(err.detail, reason=err.failure.value) from None

    async def refuse(self, err: ChatRefusal, user_id: str | None = None) -> None:
        """Report the refusal, then deny with an HTTP status (or a 44xx close)."""
        bus = self.services.bus
        if err.incident is not None:
            report_incident(
                bus,
                kind=err.incident,
                error_type=err.error_type,
                code=err.reason,
                client_ip=self.ip,
                user_agent=self.ua,
                user_id=user_id,
                detail=f"{err.reason} on /ws/chat: {err.message}",
            )
        elif err.__cause__ is not None:
            bus.emit(
                ErrorOccurred(
                    type=ErrorType.SYSTEM,
                    code=ErrorCode.INTERNAL,
                    detail=err.message,
                    exception=err.__cause__,
                )
            )
        bus.emit(
            ConnectionFailed(
                reason=err.reason, client_ip=self.ip, user_agent=self.ua, status=err.status
            )
        )
        ws = self.ws
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(
                JSONResponse({"detail": err.message, "code": err.reason}, status_code=err.status)
            )
        else:
            await ws.close(code=err.close_code, reason=err.message[:120])


@router.websocket("/ws/chat")
async def chat_socket(ws: WebSocket) -> None:
    """One chat connection, from handshake to close."""
    services: Services = ws.app.state.services
    hand = _Handshake(ws, services)
    hub = services.hub
    principal: Principal | None = None
    reservation: Reservation | None = None
    try:
        if not origin_allowed(ws.headers.get("origin"), services.settings.server):
            raise OriginRefused("this site may not open the chat")  # SPEC §2: cross-site
        if hub.draining:
            raise ShuttingDown("server is restarting")
        principal = hand.authenticate()
        reservation = hub.reserve(hand.ip)
        if reservation is None:
            limit = services.settings.limits.connections_per_ip
            raise TooManyConnections(f"more than {limit} connections from this address")
        opened = await services.sessions.open(principal, ws.query_params.get("session_id"))
    except ChatRefusal as err:
        if reservation is not None:
            hub.release(reservation)
        await hand.refuse(err, principal.user_id if principal else None)
        return
    try:
        await _serve(hand, opened, reservation)
    finally:
        hub.release(reservation)


async def _serve(hand: _Handshake, opened: OpenedSession, reservation: Reservation) -> None:
    ws, services = hand.ws, hand.services
    peer = Peer(new_id("c-"), opened.user_id, opened.session_id, hand.ip, hand.ua)
    # The handshake's correlation id names the connection's own records (opened, closed).
    connection_correlation = current_correlation_id()
    bind_connection(
        connection_id=peer.connection_id,
        user_id=peer.user_id,
        session_id=peer.session_id,
        client_ip=peer.client_ip,
        user_agent=peer.user_agent,
    )
    await ws.accept()
    conn: ChatConnection | None = None

    async def close(code: int, reason: str) -> None:
        if conn is not None:
            conn.lifecycle.closing(CloseReason.SERVER_SHUTDOWN, code)
        if ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close(code=code, reason=reason)

    async def send(frame: dict[str, object]) -> None:
        assert conn is not None
        await conn.send(frame)

    async def drain(grace: float) -> None:
        if conn is not None:
            await conn.drain(grace)

    session = services.hub.register(
        HubEntry(
            connection_id=peer.connection_id,
            user_id=peer.user_id,
            session_id=peer.session_id,
            client_ip=peer.client_ip,
            send=send,
            close=close,
            drain=drain,
        ),
        reservation,
        resumed=opened.resumed,
        history=opened.history,
        max_context=services.chat.max_context_messages,
    )
    conn = ChatConnection(services.chat, peer, session, ws.send_text)
    started = services.clock.monotonic()
    services.bus.emit(
        ConnectionOpened(
            connection_id=peer.connection_id,
            user_id=peer.user_id,
            session_id=peer.session_id,
            client_ip=peer.client_ip,
            user_agent=peer.user_agent,
            resumed=opened.resumed,
        )
    )

    async def receive() -> str | bytes | None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            code = int(message.get("code") or 1000)
            reason = (
                CloseReason.PROTOCOL_ERROR
                if code in _PROTOCOL_CLOSES
                else CloseReason.CLIENT_CLOSED
            )
            if conn is not None and conn.lifecycle.closing(reason, code) and code == 1009:
                report_incident(
                    services.bus,
                    kind=SecurityEventType.OVERSIZED_FRAME,
                    error_type=ErrorType.VALIDATION,
                    code=ErrorCode.MESSAGE_TOO_LARGE,
                    client_ip=peer.client_ip,
                    user_agent=peer.user_agent,
                    user_id=peer.user_id,
                    detail=f"frame over {services.settings.limits.frame_limit} bytes",
                )
            return None
        if message.get("text") is not None:
            return str(message["text"])
        return bytes(message.get("bytes") or b"")

    try:
        await conn.send(
            {
                "type": "connected",
                "connection_id": peer.connection_id,
                "session_id": peer.session_id,
                "user_id": peer.user_id,
                "resumed": opened.resumed,
            }
        )
        await conn.run(receive)
    except (ClientGone, WebSocketDisconnect):
        conn.lifecycle.closing(CloseReason.CLIENT_CLOSED, 1006)
    except Exception as err:
        conn.lifecycle.closing(CloseReason.ERROR, 1011)
        services.bus.emit(
            ErrorOccurred(
                type=ErrorType.SYSTEM,
                code=ErrorCode.INTERNAL,
                detail="connection failed",
                exception=err,
            )
        )
        with contextlib.suppress(Exception):
            await ws.close(code=1011)
    finally:
        await conn.stop(conn.lifecycle.reason, conn.lifecycle.code)
        conn.lifecycle.closed()
        if connection_correlation is not None:
            bind_message(connection_correlation)
        services.hub.unregister(peer.connection_id)
        services.bus.emit(
            ConnectionClosed(
                connection_id=peer.connection_id,
                user_id=peer.user_id,
                session_id=peer.session_id,
                reason=conn.lifecycle.reason,
                code=conn.lifecycle.code,
                duration_s=services.clock.monotonic() - started,
                messages=conn.messages,
            )
        )
