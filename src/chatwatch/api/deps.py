"""Request dependencies: the services container and the caller's identity."""

from __future__ import annotations

from fastapi import HTTPException, Request

from chatwatch.auth import AuthError, AuthFailure, Principal, bearer
from chatwatch.events import ErrorOccurred, SecurityEvent
from chatwatch.services import Services

__all__ = ["client_ip", "get_services", "require_admin", "require_user"]


def get_services(request: Request) -> Services:
    """The process's services."""
    services: Services = request.app.state.services
    return services


def client_ip(request: Request) -> str:
    """The caller's address (uvicorn already applied trusted proxy headers)."""
    return request.client.host if request.client else "unknown"


def _authenticate(request: Request) -> Principal:
    services = get_services(request)
    try:
        return services.auth.verify(bearer(request.headers.get("authorization")))
    except AuthError as err:
        _security(request, "auth_failed", err.failure.value, "authentication")
        raise HTTPException(
            status_code=401,
            detail=_explain(err),
            headers={"WWW-Authenticate": 'Bearer realm="chatwatch"'},
        ) from None


def _explain(err: AuthError) -> str:
    if err.failure is AuthFailure.MISSING:
        return "authentication required: send Authorization: Bearer <token>"
    if err.failure is AuthFailure.EXPIRED:
        return "the token has expired"
    return "the token is not valid"


def _security(
    request: Request, kind: str, detail: str, error_type: str, user: str | None = None
) -> None:
    bus = get_services(request).bus
    bus.emit(
        SecurityEvent(
            type=kind,
            client_ip=client_ip(request),
            user_agent=request.headers.get("user-agent", "")[:256],
            user_id=user,
            detail=f"{detail} {request.method} {request.url.path}"[:300],
        )
    )
    bus.emit(ErrorOccurred(type=error_type, code=kind, detail=detail))


def require_user(request: Request) -> Principal:
    """Any authenticated caller (401 otherwise)."""
    return _authenticate(request)


def require_admin(request: Request) -> Principal:
    """An admin: the admin token or an admin-role JWT (401 without credentials, 403 for users)."""
    principal = _authenticate(request)
    if not principal.is_admin:
        _security(
            request, "admin_denied", "admin role required", "authorization", principal.user_id
        )
        raise HTTPException(status_code=403, detail="admin role required")
    return principal
