"""Request dependencies: the services container and the caller's identity."""

from __future__ import annotations

from fastapi import HTTPException, Request

from chatwatch.api.incidents import report_incident
from chatwatch.auth import AuthError, AuthFailure, Principal, bearer
from chatwatch.services import Services

__all__ = ["client_ip", "get_services", "report_request_incident", "require_admin", "require_user"]


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
        report_request_incident(request, "auth_failed", err.failure.value, "authentication")
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


def report_request_incident(
    request: Request, kind: str, detail: str, error_type: str, user: str | None = None
) -> None:
    """Report a refused HTTP request as a security event and an error."""
    report_incident(
        get_services(request).bus,
        kind=kind,
        error_type=error_type,
        client_ip=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
        user_id=user,
        detail=f"{detail} {request.method} {request.url.path}",
    )


def require_user(request: Request) -> Principal:
    """Any authenticated caller (401 otherwise)."""
    return _authenticate(request)


def require_admin(request: Request) -> Principal:
    """An admin: the admin token or an admin-role JWT (401 without credentials, 403 for users).

    The admin is also left in ``request.state.principal``, where ``api.audit`` finds who
    acted (routers are mounted with this as a dependency and do not receive its value).
    """
    principal = _authenticate(request)
    if not principal.is_admin:
        report_request_incident(
            request, "admin_denied", "admin role required", "authorization", principal.user_id
        )
        raise HTTPException(status_code=403, detail="admin role required")
    request.state.principal = principal
    return principal
