"""What the JSON API declares in ``/api/openapi.json``: error shapes, bodies, parameter forms.

Declarations only: routers keep checking their input by hand (so that every bad value is a
400 naming it); these models and schemas tell clients, and schemathesis, what is accepted
and what comes back. A parameter's declared form is a subset of what its router accepts,
so that every request valid by the schema is served.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "ADMIN_ERRORS",
    "BroadcastReply",
    "BroadcastRequest",
    "ErasureReply",
    "ErrorBody",
    "GuestToken",
    "HistoryItem",
    "HistoryPage",
    "ResetReply",
    "errors",
    "integer_or_empty",
    "time_or_empty",
]

JSONSchema = dict[str, Any]


class ErrorBody(BaseModel):
    """Every refusal of the JSON API: a short reason meant for the caller."""

    detail: str = Field(description="what was wrong, naming the parameter or field")


_ERROR_SCHEMA = ErrorBody.model_json_schema()

_REASONS = {
    400: "A parameter or the body is not valid; `detail` names it and says why",
    401: "No, a bad or an expired credential",
    403: "The credential is valid but not allowed here",
    404: "Nothing is stored under this id",
    409: "The resource changed meanwhile; try again",
}

_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with",
        "schema": {"type": "string"},
    }
}


def errors(*statuses: int, **reasons: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for ``statuses``, each an ``ErrorBody`` (``reasons``: ``s404=…``)."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {
            "description": reasons.get(f"s{status}", _REASONS[status]),
            # Spelled out rather than ``"model"``: FastAPI would file a model under the
            # route's own media type, text/html for /admin, but refusals are always JSON.
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        }
        if status == 401:
            entry["headers"] = _WWW_AUTHENTICATE
        declared[status] = entry
    return declared


# Every path under /api/v1/admin/ (and /admin) is behind ``require_admin``.
ADMIN_ERRORS = errors(
    401,
    403,
    s401="No, a bad or an expired credential: send the admin token or an admin-role JWT "
    "as `Authorization: Bearer …`",
    s403="A valid user who is not an admin",
)


def _replace(schema: JSONSchema) -> Callable[[JSONSchema], None]:
    """A ``json_schema_extra`` that declares ``schema`` instead of the one from the type."""

    def apply(generated: JSONSchema) -> None:
        title = generated.get("title")
        generated.clear()
        generated.update(schema)
        if title is not None:
            generated["title"] = title

    return apply


def integer_or_empty(lo: int, hi: int, description: str) -> Callable[[JSONSchema], None]:
    """An integer query parameter from ``lo`` to ``hi``; empty counts as absent."""
    return _replace(
        {
            "anyOf": [{"type": "integer", "minimum": lo, "maximum": hi}, {"const": ""}],
            "description": description,
        }
    )


# RFC 3339 UTC within 1970..9999, and days 01-28 so that every match is a real date.
_RFC3339_UTC = (
    r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$"
)


def time_or_empty(description: str) -> Callable[[JSONSchema], None]:
    """A time query parameter (RFC 3339 UTC or epoch seconds); empty counts as absent.

    Two times of one request have an order too (``since`` before ``until``), which a schema
    cannot say: the wrong order is a 400.

    The router also takes durations ago (``15m``) and zone offsets; the schema names the
    plainest forms.
    """
    return _replace(
        {
            "anyOf": [
                {"type": "string", "pattern": _RFC3339_UTC},
                {"type": "number", "minimum": 0, "exclusiveMaximum": 253402300800},
                {"const": ""},
            ],
            "description": description,
        }
    )


class GuestToken(BaseModel):
    """A guest's bearer token."""

    token: str = Field(description="JWT (HS256) for `Authorization: Bearer` or `?token=`")
    user_id: str
    expires_in: int = Field(description="seconds until the token expires")


class BroadcastRequest(BaseModel):
    """A notice for every connected visitor."""

    message: str = Field(
        min_length=1,
        max_length=4096,
        description="1-4096 characters, not only whitespace",
        # Declared, not validated by pydantic: the router checks with ``str.strip``.
        json_schema_extra={"pattern": r"\S"},
    )


class BroadcastReply(BaseModel):
    """How many sockets the notice reached."""

    recipients: int = Field(ge=0)


class ResetReply(BaseModel):
    """When the new metrics window started."""

    reset_at: str = Field(description="RFC 3339 UTC")


class ErasureReply(BaseModel):
    """What an erasure removed."""

    user_id: str
    sessions: int = Field(ge=0)
    messages: int = Field(ge=0)
    log_records: int = Field(ge=0)


class HistoryItem(BaseModel):
    """One stored message (more fields may follow)."""

    seq: int
    role: str
    id: str | None
    correlation_id: str | None
    content: str
    created_at: str = Field(description="RFC 3339 UTC")


class HistoryPage(BaseModel):
    """A page of a session's history, oldest first."""

    session_id: str
    user_id: str
    items: list[HistoryItem]
    next_after: int | None = Field(description="`after` for the next page; null on the last")
