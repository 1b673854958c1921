"""Who is calling: user JWTs (HS256), the static admin token, and secret bootstrapping."""

from __future__ import annotations

import hmac
import math
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import jwt

from chatwatch.clock import Clock

__all__ = [
    "AuthError",
    "AuthFailure",
    "Authenticator",
    "Principal",
    "load_or_create_secret",
]

Role = Literal["user", "admin"]


class AuthFailure(StrEnum):
    """Why a credential was refused (also the security event detail)."""

    MISSING = "auth_missing"
    INVALID = "auth_invalid"
    EXPIRED = "auth_expired"


class AuthError(Exception):
    """A credential was missing, forged, malformed or expired."""

    def __init__(self, failure: AuthFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    user_id: str
    role: Role
    via: Literal["jwt", "admin_token"]

    @property
    def is_admin(self) -> bool:
        """Admins may use /api/v1/admin/** and read any session."""
        return self.role == "admin"


class Authenticator:
    """Mints and checks credentials; comparisons of secrets are constant-time."""

    def __init__(self, jwt_secret: str, admin_token: str, clock: Clock) -> None:
        self._secret = jwt_secret
        self._admin_token = admin_token.encode()
        self._clock = clock

    def mint(self, user_id: str, role: Role = "user", ttl: float = 86400.0) -> str:
        """A signed HS256 JWT for ``user_id``."""
        now = int(self._clock.time())
        claims = {"sub": user_id, "role": role, "iat": now, "exp": now + math.ceil(ttl)}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, credential: str | None) -> Principal:
        """The principal behind a bearer credential (admin token or JWT), else AuthError."""
        if not credential:
            raise AuthError(AuthFailure.MISSING, "no credentials")
        if hmac.compare_digest(credential.encode(), self._admin_token):
            return Principal(user_id="admin", role="admin", via="admin_token")
        try:
            # The algorithm list is fixed: a token claiming alg "none" or RS256 is refused.
            claims = jwt.decode(
                credential,
                self._secret,
                algorithms=["HS256"],
                options={
                    "require": ["sub", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidTokenError as err:
            raise AuthError(AuthFailure.INVALID, f"invalid token ({err})") from None
        # Expiry is checked against the injected clock so tests need not sleep.
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise AuthError(AuthFailure.INVALID, "invalid token (exp is not a number)")
        if exp <= self._clock.time():
            raise AuthError(AuthFailure.EXPIRED, "token expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf > self._clock.time() + 30:
            raise AuthError(AuthFailure.INVALID, "token not valid yet")
        sub, role = claims.get("sub"), claims.get("role", "user")
        if not isinstance(sub, str) or not sub or len(sub) > 64:
            raise AuthError(AuthFailure.INVALID, "invalid token (bad sub claim)")
        if role not in ("user", "admin"):
            raise AuthError(AuthFailure.INVALID, "invalid token (bad role claim)")
        return Principal(user_id=sub, role=role, via="jwt")


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def load_or_create_secret(path: Path, nbytes: int = 32) -> tuple[str, bool]:
    """The secret kept in ``path``, creating it (mode 0600) if missing or empty; (secret, created).

    The new secret is written to a private temporary file first and then linked into
    place, so no reader ever sees a partial or world-readable secret, and two workers
    starting together agree on one secret.
    """
    existing = _read_secret(path)
    if existing:
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = _read_secret(path)
            if existing:
                return existing, False
            # An empty file (a crash between create and write) must not become the secret.
            os.replace(tmp, path)
        return value, True
    finally:
        tmp.unlink(missing_ok=True)


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
