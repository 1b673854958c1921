"""Times in and out of the service: one grammar for query parameters, one JSON format.

Every time in a JSON body is ``format_time``: RFC 3339 in UTC with microseconds and a
``Z`` (``2026-12-02T09:30:00.123456Z``) — the precision log records are stamped with, so
one record's ``timestamp`` and every other time in the API look alike.

Every time in a query parameter (``since``, ``until``) is ``parse_time`` (SPEC §5), tried
in this order:

- epoch seconds: ASCII digits with an optional fraction (``1796203800``, ``1796203800.25``);
  no exponent, sign, ``_``, ``inf`` or ``nan`` (what ``float()`` would also take);
- a duration back from ``now`` (the caller's injected clock): ``15m``, ``2h``, ``7d``,
  ``1h30m``, ``500ms``, ``2w``;
- RFC 3339: ``2026-12-02T09:30:00Z``, ``…T09:30:00.5+01:00``; without a zone it is UTC;
  the date alone is its midnight UTC; ``t``/space for ``T``, ``z`` for ``Z``; seconds may
  be left out. A space before the offset stands for ``+``, which an unencoded URL turns
  into a space.

The result is epoch seconds within 1970-01-01 .. 9999-12-31 (``MIN_TIME`` ≤ t <
``MAX_TIME``). Anything else is a ``ValueError`` whose message starts with the
parameter's name (``"since: …"``): never an OverflowError or any other exception.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

__all__ = ["MAX_TIME", "MAX_TIME_LENGTH", "MIN_TIME", "format_time", "parse_time"]

MIN_TIME = 0.0  # 1970-01-01T00:00:00Z
MAX_TIME = 253_402_300_800.0  # 10000-01-01T00:00:00Z, the first instant out of range
MAX_TIME_LENGTH = 64

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPAN = timedelta(seconds=MAX_TIME)
_MAX_MICROS = int(MAX_TIME) * 1_000_000 - 1
_MIN_MICROS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
# Near the year 9999 floats are ~30 µs apart: 9999-12-31T23:59:59.999999 is in range but
# its nearest float is MAX_TIME itself, so an in-range time is capped at the float below.
_LAST_FLOAT = math.nextafter(MAX_TIME, 0.0)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

# ASCII-only patterns (re.ASCII: \d is 0-9 and nothing else). None has a quantifier
# inside a repeated group that could match the same text two ways.
_EPOCH_SECONDS = re.compile(r"-?\d+(?:\.\d+)?", re.ASCII)
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", re.ASCII)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"([Zz]|[+\- ]\d{2}:\d{2})?)?",
    re.ASCII,
)
_FORMS = "use RFC 3339 (2026-12-02T09:30:00Z), epoch seconds, or a duration ago such as 15m"


def format_time(ts: float) -> str:
    """``ts`` (epoch seconds) as RFC 3339 UTC with microseconds: ``2026-12-02T09:30:00.123456Z``.

    Any time of the years 1-9999 is formatted (a window reaching back before a parsed
    ``since`` of 1970 is still a time); ValueError outside them.
    """
    if not math.isfinite(ts):
        raise ValueError(f"{ts!r} is not a time")
    # Whole and fractional seconds apart: ts * 1e6 in one product would be off by up to
    # 16 µs near the year 9999, and parse_time(format_time(t)) must give t back.
    whole = math.floor(ts)
    micros = min(whole * 1_000_000 + round((ts - whole) * 1_000_000), _MAX_MICROS)
    if micros < _MIN_MICROS or ts >= MAX_TIME:
        raise ValueError(f"{ts!r} is outside the years 1-9999")
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(name: str, raw: str, now: float) -> float:
    """Epoch seconds from a query parameter ``name``; ``now`` anchors durations ago.

    Raises ValueError (message ``"<name>: <reason>"``) for anything outside the grammar
    or outside 1970-01-01..9999-12-31.
    """
    text = raw.strip()
    shown = _shown(raw)
    if not text:
        raise ValueError(f"{name}: empty; {_FORMS}")
    if len(text) > MAX_TIME_LENGTH:
        raise ValueError(f"{name}: longer than {MAX_TIME_LENGTH} characters; {_FORMS}")
    if _EPOCH_SECONDS.fullmatch(text):
        exact = Decimal(text)  # digits only, so exact; float() may round across the bound
        in_range = MIN_TIME <= exact < MAX_TIME
        value = float(exact)
    elif _DURATION.fullmatch(text):
        ago = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
        value = now - ago
        in_range = MIN_TIME <= value < MAX_TIME  # also false for nan
    else:
        since_epoch = _rfc3339(name, text, shown)
        in_range = timedelta(0) <= since_epoch < _SPAN
        value = since_epoch.total_seconds()
    if not in_range:
        raise ValueError(f"{name}: {shown} is outside 1970-01-01..9999-12-31")
    return min(value, _LAST_FLOAT)


def _rfc3339(name: str, text: str, shown: str) -> timedelta:
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"{name}: {shown} is not a time; {_FORMS}")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    leap = second == "60"  # RFC 3339 allows a leap second; POSIX time folds it onward
    try:
        tz = _zone(zone)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            59 if leap else int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError as err:  # month 13, 31 February, hour 24, offset 24:00 …
        raise ValueError(f"{name}: {shown} is not a valid date and time ({err})") from None
    # Subtraction never overflows (unlike astimezone near year 1 or 9999).
    return moment - _EPOCH + timedelta(seconds=1 if leap else 0)


def _zone(zone: str | None) -> timezone:
    if zone is None or zone in "Zz":
        return UTC
    sign = -1 if zone[0] == "-" else 1
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if minutes >= 60:
        raise ValueError("offset minutes must be below 60")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))  # ValueError past 24h


def _shown(raw: str) -> str:
    """The value as quoted in an error message: cut short, control characters escaped."""
    return repr(raw[:40] + "…" if len(raw) > 40 else raw)
