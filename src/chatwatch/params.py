"""Integer query parameters (``limit``, ``after``), checked the same way by every router.

Times have their own grammar in ``chatwatch.timefmt``. Both raise ValueError with a
message that starts with the parameter's name, which the routers answer as a 400.
"""

from __future__ import annotations

__all__ = ["MAX_INT64", "parse_int"]

MAX_INT64 = 2**63 - 1  # the widest integer SQLite and PostgreSQL BIGINT hold


def parse_int(name: str, raw: str, lo: int, hi: int) -> int:
    """``raw`` as an integer from ``lo`` to ``hi``: ASCII digits only (``int()`` would also
    take ``+1``, ``1_0``, spaces and other scripts' digits)."""
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(hi)):
        raise ValueError(f"{name}: must be an integer from {lo} to {hi}")
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f"{name}: must be an integer from {lo} to {hi}")
    return value
