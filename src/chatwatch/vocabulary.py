"""The chat's shared words, defined once: both the chat side and its listeners import these.

Each is a StrEnum, so a member *is* its wire or label string (``ErrorCode.INTERNAL ==
"internal"``) and a typo is an AttributeError at import, never a silent new label value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AIOutcome",
    "CloseReason",
    "ErrorCode",
    "ErrorType",
    "QuickActionName",
    "SecurityEventType",
]


class QuickActionName(StrEnum):
    """Buttons a visitor may press (the ``action`` of a ``quick_action`` frame)."""

    PRICING = "pricing"
    SERVICES = "services"
    BOOK_CONSULTATION = "book_consultation"
    TALK_TO_HUMAN = "talk_to_human"
    CONTACT = "contact"


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` frame (SPEC §4)."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    AI_UNAVAILABLE = "ai_unavailable"
    INTERNAL = "internal"

    @property
    def is_client_mistake(self) -> bool:
        """True for codes the visitor caused: counted apart, they never degrade health."""
        return self in _CLIENT_CODES


_CLIENT_CODES = frozenset(
    {
        ErrorCode.INVALID_JSON,
        ErrorCode.INVALID_FRAME,
        ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.RATE_LIMITED,
    }
)


class ErrorType(StrEnum):
    """The ``type`` label of ``chat_errors_total`` (SPEC §7)."""

    AUTHENTICATION = "authentication"
    AUTHORIZATION = "authorization"
    VALIDATION = "validation"
    SYSTEM = "system"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    AI_PROVIDER = "ai_provider"


class CloseReason(StrEnum):
    """Why a chat connection closed (the ``reason`` of ``chat_connections_closed_total``)."""

    CLIENT_CLOSED = "client_closed"
    SERVER_SHUTDOWN = "server_shutdown"
    ERROR = "error"
    PROTOCOL_ERROR = "protocol_error"


class AIOutcome(StrEnum):
    """The ``outcome`` label of ``chat_ai_requests_total``."""

    SUCCESS = "success"
    TIMEOUT = "timeout"
    ERROR = "error"
    INVALID_REPLY = "invalid_reply"  # empty, not JSON, or a chunk of the wrong shape
    CIRCUIT_OPEN = "circuit_open"  # refused at once while the upstream is known to be down
    BUDGET_EXCEEDED = "budget_exceeded"  # ai.daily_budget_usd spent for today (UTC)
    CANCELLED = "cancelled"  # the visitor left before the reply finished


class SecurityEventType(StrEnum):
    """The ``type`` label of ``chat_security_events_total``."""

    AUTH_FAILED = "auth_failed"
    ADMIN_DENIED = "admin_denied"
    RATE_LIMITED = "rate_limited"
    OVERSIZED_FRAME = "oversized_frame"
    MALFORMED_FRAME = "malformed_frame"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    FORBIDDEN_SESSION = "forbidden_session"
    GUEST_LOGIN_FLOOD = "guest_login_flood"
    AI_SPEND_LIMITED = "ai_spend_limited"
    ORIGIN_REFUSED = "origin_refused"
    HTTP_LIMIT = "http_limit"  # refused at the HTTP layer: 431, 408, or 429 per address
