"""The WebSocket frames of SPEC §4: parsing client frames, building server frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from chatwatch.correlation import valid_correlation_id
from chatwatch.vocabulary import ErrorCode, QuickActionName

__all__ = [
    "QUICK_ACTIONS",
    "ClientMessage",
    "Ping",
    "ProtocolError",
    "QuickAction",
    "encode",
    "error_frame",
    "parse_frame",
]

QUICK_ACTIONS: tuple[str, ...] = tuple(QuickActionName)
MAX_ID_CHARS = 64


class ProtocolError(Exception):
    """A client frame that cannot be accepted; becomes an ``error`` frame."""

    def __init__(self, code: str, message: str, reply_to: str | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.reply_to = reply_to


@dataclass(frozen=True, slots=True)
class ClientMessage:
    id: str
    content: str
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class QuickAction:
    id: str
    action: str
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientFrame = ClientMessage | QuickAction | Ping


def parse_frame(raw: str | bytes, max_message_bytes: int) -> ClientFrame:
    """Validate one client frame; raise ProtocolError with the SPEC error code."""
    if isinstance(raw, bytes):
        raise ProtocolError("invalid_frame", "binary frames are not accepted; send JSON text")
    if len(raw) > max_message_bytes * 4 + 1024:
        # Cheap guard before parsing: a frame this large cannot hold a valid message.
        raise ProtocolError("message_too_large", f"frame exceeds {max_message_bytes} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        if "surrogate" not in err.msg:
            raise ProtocolError("invalid_json", f"frame is not valid JSON: {err.msg}") from None
        # orjson refuses "\\ud800" escapes, which JSON allows; parse them so that the
        # content check below can answer with reply_to instead of a bare invalid_json.
        data = _loads_with_surrogates(raw)
    if not isinstance(data, dict):
        raise ProtocolError("invalid_frame", "a frame must be a JSON object")
    kind = data.get("type")
    raw_id = data.get("id")
    reply_to = raw_id if _usable_id(raw_id) else None
    if kind == "ping":
        return Ping()
    if kind not in ("message", "quick_action"):
        shown = kind if isinstance(kind, str) and len(kind) <= 32 else "?"
        raise ProtocolError(
            "invalid_frame",
            f"unknown frame type {shown!r}; expected message, quick_action or ping",
            reply_to,
        )
    if not isinstance(raw_id, str) or not raw_id:
        raise ProtocolError("invalid_frame", "field 'id' must be a non-empty string")
    if len(raw_id) > MAX_ID_CHARS:
        raise ProtocolError("invalid_frame", f"field 'id' is longer than {MAX_ID_CHARS} chars")
    if not raw_id.isprintable():
        # Control characters or lone surrogates ("\\ud800") cannot be stored or echoed back.
        raise ProtocolError("invalid_frame", "field 'id' must be printable text")
    # Like X-Correlation-ID on HTTP (SPEC §5): the client's when valid, else a new one.
    raw_corr = data.get("correlation_id")
    corr = raw_corr if valid_correlation_id(raw_corr) else None
    if kind == "quick_action":
        action = data.get("action")
        if not isinstance(action, str) or action not in QUICK_ACTIONS:
            raise ProtocolError(
                "invalid_frame",
                "field 'action' must be one of: " + ", ".join(QUICK_ACTIONS),
                raw_id,
            )
        return QuickAction(id=raw_id, action=action, correlation_id=corr)
    content = data.get("content")
    if not isinstance(content, str):
        raise ProtocolError("invalid_frame", "field 'content' must be a string", raw_id)
    size = len(content.encode("utf-8", "surrogatepass"))
    if size > max_message_bytes:
        raise ProtocolError(
            "message_too_large",
            f"content is {size} bytes; the limit is {max_message_bytes}",
            raw_id,
        )
    if not content.strip():
        raise ProtocolError("invalid_frame", "field 'content' must not be empty", raw_id)
    if "\x00" in content:
        raise ProtocolError("invalid_frame", "field 'content' must not contain NUL", raw_id)
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            "invalid_frame", "field 'content' holds invalid unicode (lone surrogate)", raw_id
        ) from None
    return ClientMessage(id=raw_id, content=content, correlation_id=corr)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads_with_surrogates(raw: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as err:
        raise ProtocolError("invalid_json", f"frame is not valid JSON: {err}") from None


def _usable_id(raw: object) -> bool:
    """An id that can be echoed back as ``reply_to``."""
    return isinstance(raw, str) and 0 < len(raw) <= MAX_ID_CHARS and raw.isprintable()


def encode(frame: dict[str, Any]) -> str:
    """Serialise a server frame."""
    try:
        return orjson.dumps(frame).decode()
    except TypeError:
        # A lone surrogate in some text: JSON can carry it escaped, which orjson refuses.
        return json.dumps(frame, ensure_ascii=True, separators=(",", ":"))


def error_frame(
    code: str, message: str, correlation_id: str, reply_to: str | None = None
) -> dict[str, Any]:
    """An ``error`` frame."""
    frame: dict[str, Any] = {
        "type": "error",
        "code": code,
        "message": message,
        "correlation_id": correlation_id,
    }
    if reply_to is not None:
        frame["reply_to"] = reply_to
    return frame
