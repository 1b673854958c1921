"""Sessions: open, resume, and who may read one — the rules in one place, as domain errors.

The routers (WebSocket handshake, history endpoint) map a ``ChatRefusal`` to an HTTP
status or a close code; the refusal carries both, and the security event it is, so a
refused caller is reported the same way wherever it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatwatch.auth import Principal
from chatwatch.chat.providers.base import ChatTurn
from chatwatch.clock import Clock
from chatwatch.correlation import new_id
from chatwatch.events import EventBus, FeatureUsed
from chatwatch.store.chat_store import ChatStore, StoredSession
from chatwatch.vocabulary import ErrorType, SecurityEventType

__all__ = [
    "AuthenticationRefused",
    "ChatRefusal",
    "OpenedSession",
    "OriginRefused",
    "SessionForbidden",
    "SessionNotFound",
    "Sessions",
    "ShuttingDown",
    "StoreUnavailable",
    "TooManyConnections",
]

MAX_SESSION_ID_CHARS = 64


class ChatRefusal(Exception):
    """A caller the chat will not serve; ``status`` for HTTP, ``close_code`` for a socket.

    ``incident`` is the security event the refusal is (None when it is no one's fault),
    ``error_type`` its ``chat_errors_total`` type, ``reason`` the failure code clients see.
    """

    status = 500
    close_code = 1011
    reason = "internal"
    incident: SecurityEventType | None = None
    error_type: ErrorType = ErrorType.SYSTEM

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class AuthenticationRefused(ChatRefusal):
    """No, a bad or an expired token (``reason`` says which)."""

    status = 401
    close_code = 4401
    reason = "auth_invalid"
    incident = SecurityEventType.AUTH_FAILED
    error_type = ErrorType.AUTHENTICATION


class SessionForbidden(ChatRefusal):
    """The session belongs to another user."""

    status = 403
    close_code = 4403
    reason = "forbidden_session"
    incident = SecurityEventType.FORBIDDEN_SESSION
    error_type = ErrorType.AUTHORIZATION


class OriginRefused(ChatRefusal):
    """A browser page from an origin that may not open the chat."""

    status = 403
    close_code = 4403
    reason = "origin_refused"
    incident = SecurityEventType.ORIGIN_REFUSED
    error_type = ErrorType.AUTHORIZATION


class SessionNotFound(ChatRefusal):
    """No session with that id."""

    status = 404
    close_code = 4404
    reason = "no_session"


class TooManyConnections(ChatRefusal):
    """Over the per-IP connection cap."""

    status = 429
    close_code = 4429
    reason = "too_many_connections"
    incident = SecurityEventType.TOO_MANY_CONNECTIONS
    error_type = ErrorType.RATE_LIMIT


class ShuttingDown(ChatRefusal):
    """The server is draining for a restart."""

    status = 503
    close_code = 1012
    reason = "shutting_down"


class StoreUnavailable(ChatRefusal):
    """The session could not be read or created."""

    status = 503
    close_code = 1011
    reason = "internal"


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """The session a new connection serves, and what the AI should remember of it."""

    session_id: str
    user_id: str
    resumed: bool
    history: tuple[ChatTurn, ...]


class Sessions:
    """Opens sessions for connections and decides who may read one."""

    def __init__(
        self, store: ChatStore, bus: EventBus, clock: Clock, *, context_messages: int
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._context_messages = context_messages

    async def open(self, principal: Principal, requested: str | None) -> OpenedSession:
        """Resume ``requested`` if it is the caller's, refuse another's, else start anew.

        An unknown id starts a new session: a widget whose old session is gone keeps working.
        """
        try:
            if requested:
                resumed = await self._resume(principal, requested)
                if resumed is not None:
                    return resumed
            session_id = new_id("s-")
            kind = "guest" if principal.user_id.startswith("guest-") else "user"
            await self._store.create_session(
                session_id, principal.user_id, kind, self._clock.time()
            )
        except ChatRefusal:
            raise
        except Exception as err:
            raise StoreUnavailable("the chat store is unavailable") from err
        return OpenedSession(session_id, principal.user_id, False, ())

    async def _resume(self, principal: Principal, requested: str) -> OpenedSession | None:
        session = await self._get(requested)
        if session is None:
            return None
        if session.user_id != principal.user_id:
            raise SessionForbidden("this session belongs to another user")
        await self._store.touch_session(session.id, self._clock.time())
        recent = await self._store.recent_messages(session.id, self._context_messages)
        history = tuple(
            ChatTurn("user" if m.role == "user" else "assistant", m.content)
            for m in recent
            if m.role in ("user", "assistant")
        )
        self._bus.emit(FeatureUsed(feature="resume"))
        return OpenedSession(session.id, session.user_id, True, history)

    async def readable(self, principal: Principal, session_id: str) -> StoredSession:
        """The session, if ``principal`` may read it (its owner or an admin)."""
        session = await self._get(session_id)
        if session is None:
            raise SessionNotFound("no such session")
        if session.user_id != principal.user_id and not principal.is_admin:
            raise SessionForbidden("this session belongs to another user")
        return session

    async def _get(self, session_id: str) -> StoredSession | None:
        if len(session_id) > MAX_SESSION_ID_CHARS:
            return None
        return await self._store.get_session(session_id)
