"""Correlation IDs: the thread that ties one request or chat message's records together."""

from __future__ import annotations

import os
import re
import secrets

__all__ = ["new_correlation_id", "new_id", "traceparent", "valid_correlation_id"]

_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def valid_correlation_id(value: object) -> bool:
    """True for 1–64 chars of ``[A-Za-z0-9._-]`` (SPEC §5)."""
    return isinstance(value, str) and _VALID.fullmatch(value) is not None


def new_correlation_id() -> str:
    """A fresh correlation id: 32 hex digits, usable as a W3C trace id."""
    return secrets.token_hex(16)


def new_id(prefix: str = "") -> str:
    """A random identifier for connections, sessions and users."""
    return prefix + secrets.token_hex(12)


def traceparent(correlation_id: str) -> str:
    """A W3C ``traceparent`` whose trace id derives from the correlation id."""
    hexchars = "".join(c for c in correlation_id.lower() if c in "0123456789abcdef")
    trace_id = hexchars[:32] if len(hexchars) >= 32 else (hexchars + os.urandom(16).hex())[:32]
    if trace_id == "0" * 32:
        trace_id = os.urandom(16).hex()
    return f"00-{trace_id}-{os.urandom(8).hex()}-01"
