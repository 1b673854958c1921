"""Who is calling: user JWTs (HS256), the static admin token, and secret bootstrapping."""

from __future__ import annotations

import hmac
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import jwt

from chatwatch.clock import Clock

__all__ = [
    "ADMIN_TOKEN_OPERATOR",
    "AdminTokenFile",
    "AuthError",
    "AuthFailure",
    "Authenticator",
    "Principal",
    "load_or_create_secret",
    "mint_token",
    "read_secret",
    "replace_secret",
]

# Who an audit record names when the shared admin token was used (SPEC has no users).
ADMIN_TOKEN_OPERATOR = "admin-token"

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

    @property
    def operator(self) -> str:
        """The identity audit records name: the JWT's ``sub``, or ``admin-token``."""
        return ADMIN_TOKEN_OPERATOR if self.via == "admin_token" else self.user_id


def mint_token(secret: str, user_id: str, role: Role, ttl: float, now: float) -> str:
    """A signed HS256 JWT for ``user_id``, issued at ``now``, living ``ttl`` seconds."""
    claims = {"sub": user_id, "role": role, "iat": int(now), "exp": int(now) + math.ceil(ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


class AdminTokenFile:
    """The admin token kept in ``<data_dir>/admin_token``, followed as it is rotated.

    ``chatwatch admin-token rotate`` replaces the file (a new inode). The token in force is
    checked against the file whenever it is presented, and the file is re-read whenever an
    unknown credential is presented; so the old token stops working, and the new one
    starts, with the very next request, in every worker, without a timer. The cost is one
    ``stat`` per admin-token request and per failed authentication (both rare), never one
    per visitor. A missing or unreadable file keeps the token in force: deleting the file
    is not a rotation.
    """

    def __init__(
        self,
        path: Path,
        token: str,
        on_change: Callable[[str, os.stat_result], None] | None = None,
    ) -> None:
        self.path = path
        self.token = token.encode()
        self._on_change = on_change
        # Unknown until first checked: the file may have changed since ``token`` was read.
        self._seen: tuple[int, int, int, int] | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed since last seen; True when the token changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        seen = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        if seen == self._seen:
            return False
        try:
            value = read_secret(self.path)
        except OSError:
            return False
        self._seen = seen
        if not value or value.encode() == self.token:
            return False
        self.token = value.encode()
        if self._on_change is not None:
            self._on_change(value, st)
        return True


class Authenticator:
    """Mints and checks credentials; comparisons of secrets are constant-time."""

    def __init__(self, jwt_secret: str, admin_token: str | AdminTokenFile, clock: Clock) -> None:
        self._secret = jwt_secret
        self._admin = admin_token if isinstance(admin_token, AdminTokenFile) else None
        self._static_admin_token = admin_token.encode() if isinstance(admin_token, str) else b""
        self._clock = clock

    def mint(self, user_id: str, role: Role = "user", ttl: float = 86400.0) -> str:
        """A signed HS256 JWT for ``user_id``."""
        return mint_token(self._secret, user_id, role, ttl, self._clock.time())

    def _is_admin_token(self, credential: bytes, *, refreshed: bool = False) -> bool:
        if self._admin is None:
            return hmac.compare_digest(credential, self._static_admin_token)
        if not hmac.compare_digest(credential, self._admin.token):
            return False
        # It matches the token we hold: unless that was just read, it may be rotated away.
        return (
            refreshed
            or not self._admin.refresh()
            or (hmac.compare_digest(credential, self._admin.token))
        )

    def verify(self, credential: str | None) -> Principal:
        """The principal behind a bearer credential (admin token or JWT), else AuthError."""
        if not credential:
            raise AuthError(AuthFailure.MISSING, "no credentials")
        raw = credential.encode()
        if self._is_admin_token(raw):
            return _ADMIN
        try:
            return self._verify_jwt(credential)
        except AuthError:
            # Perhaps the admin token was rotated and this is the new one.
            rotated = self._admin is not None and self._admin.refresh()
            if rotated and self._is_admin_token(raw, refreshed=True):
                return _ADMIN
            raise

    def _verify_jwt(self, credential: str) -> Principal:
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


_ADMIN = Principal(user_id="admin", role="admin", via="admin_token")


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
    existing = read_secret(path)
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
            existing = read_secret(path)
            if existing:
                return existing, False
            # An empty file (a crash between create and write) must not become the secret.
            os.replace(tmp, path)
        return value, True
    finally:
        tmp.unlink(missing_ok=True)


def replace_secret(path: Path, nbytes: int = 32) -> str:
    """Write a new secret to ``path`` (mode 0600) in one atomic step and return it.

    Readers see the old file or the new one, never a partial one; the file is flushed to
    disk before it replaces the old one, and keeps the old one's owner.
    """
    value = secrets.token_urlsafe(nbytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            if os.geteuid() == 0 and path.exists():
                # Run as root for a server running as its own user: keep the file its own,
                # or the server could not read the new token and would keep the old one.
                old = path.stat()
                os.fchown(fh.fileno(), old.st_uid, old.st_gid)
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return value


def read_secret(path: Path) -> str:
    """The secret kept in ``path``, or "" when there is no such file (OSError otherwise)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
