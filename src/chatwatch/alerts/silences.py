"""Silences: label matchers with an end time that hold back notifications (not alerts).

A silence matches an alert when every matcher does: ``is_regex`` matchers are anchored
(``fullmatch``, as in Alertmanager) and a missing label reads as the empty string. Regex
patterns come from admins but are checked anyway: short, compilable, and no quantified
group that holds a quantifier of its own (the shape behind catastrophic backtracking).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatwatch.alerts.rules import RuleError
from chatwatch.config import parse_duration
from chatwatch.timefmt import MAX_TIME, MIN_TIME, parse_time
from chatwatch.timefmt import format_time as iso_time

__all__ = ["Matcher", "Silence", "parse_matchers", "parse_time_value"]

MAX_MATCHERS = 32
MAX_PATTERN = 256
MAX_COMMENT = 1024
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_QUANTIFIERS = frozenset("*+?{")


@dataclass(frozen=True, slots=True)
class Matcher:
    """``name`` equals ``value`` (or fully matches it as a regex)."""

    name: str
    value: str
    is_regex: bool = False
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when the alert's label satisfies this matcher."""
        actual = labels.get(self.name, "")
        if self.pattern is not None:
            return self.pattern.fullmatch(actual) is not None
        return actual == self.value

    def to_json(self) -> dict[str, Any]:
        """``{"name", "value", "is_regex"}``."""
        return {"name": self.name, "value": self.value, "is_regex": self.is_regex}


@dataclass(frozen=True, slots=True)
class Silence:
    """Matchers, a time span and who set it why."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    comment: str
    created_by: str | None
    created_at: float

    def active(self, now: float) -> bool:
        """True between ``starts_at`` and ``ends_at``."""
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when every matcher matches ``labels``."""
        return all(m.matches(labels) for m in self.matchers)

    def to_json(self, now: float) -> dict[str, Any]:
        """The silence as the API shows it."""
        state = "active" if self.active(now) else ("pending" if now < self.starts_at else "expired")
        return {
            "id": self.id,
            "matchers": [m.to_json() for m in self.matchers],
            "starts_at": iso_time(self.starts_at),
            "ends_at": iso_time(self.ends_at),
            "comment": self.comment,
            "created_by": self.created_by,
            "created_at": iso_time(self.created_at),
            "state": state,
        }


def _nested_quantifier(pattern: str) -> bool:
    """True when a quantified group contains a quantifier (e.g. ``(a+)+``)."""
    stack: list[bool] = [False]  # per open group: does it hold a quantifier?
    escaped = in_class = False
    for i, ch in enumerate(pattern):
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            stack.append(False)
        elif ch == ")" and len(stack) > 1:
            inner = stack.pop()
            follows = pattern[i + 1 : i + 2]
            if inner and follows in _QUANTIFIERS:
                return True
            stack[-1] = stack[-1] or inner
        elif ch in _QUANTIFIERS:
            stack[-1] = True
    return False


def _matcher(index: int, raw: Any) -> Matcher:
    where = f"matchers.{index}"
    if not isinstance(raw, Mapping):
        raise RuleError(where, "must be an object with name, value and is_regex")
    unknown = sorted(set(raw) - {"name", "value", "is_regex"})
    if unknown:
        raise RuleError(f"{where}.{str(unknown[0])[:32]}", "unknown field")
    name, value, is_regex = raw.get("name"), raw.get("value"), raw.get("is_regex", False)
    if not isinstance(name, str) or not _LABEL_NAME.match(name):
        raise RuleError(f"{where}.name", "must be a label name ([A-Za-z_][A-Za-z0-9_]*)")
    if not isinstance(value, str) or len(value) > MAX_PATTERN:
        raise RuleError(f"{where}.value", f"must be a string of at most {MAX_PATTERN} chars")
    if not isinstance(is_regex, bool):
        raise RuleError(f"{where}.is_regex", "must be true or false")
    pattern = None
    if is_regex:
        if _nested_quantifier(value):
            raise RuleError(f"{where}.value", "nested quantifiers such as (a+)+ are not allowed")
        try:
            pattern = re.compile(value)
        except re.error as err:
            raise RuleError(f"{where}.value", f"not a valid regular expression: {err}") from None
    return Matcher(name, value, is_regex, pattern)


def parse_matchers(raw: Any) -> tuple[Matcher, ...]:
    """Validate a list of matcher objects; RuleError naming the bad one."""
    if not isinstance(raw, list) or not raw:
        raise RuleError("matchers", "must be a non-empty list")
    if len(raw) > MAX_MATCHERS:
        raise RuleError("matchers", f"may hold at most {MAX_MATCHERS} matchers")
    return tuple(_matcher(i, m) for i, m in enumerate(raw))


def parse_time_value(name: str, raw: Any, now: float, *, ahead: bool = False) -> float:
    """A time in a body: epoch seconds, or a string in the API's one time grammar
    (``chatwatch.timefmt``: RFC 3339, epoch seconds, or a duration ago).

    With ``ahead`` a duration counts forward (a silence's ``ends_at = "2h"`` means for two
    hours, as amtool's ``--duration`` does; two hours ago would be useless there).
    """
    if ahead and isinstance(raw, str) and raw.strip()[-1:].isalpha():
        try:
            span = parse_duration(raw.strip())
        except ValueError:
            pass
        else:
            if 0 < span <= MAX_TIME - now:
                return now + span
    if isinstance(raw, bool) or raw is None:
        raise RuleError(name, "must be an RFC 3339 time or epoch seconds")
    if isinstance(raw, int | float):
        value = float(raw)
        if not math.isfinite(value) or not MIN_TIME <= value < MAX_TIME:
            raise RuleError(name, "must be between 1970 and 9999")
        return value
    if not isinstance(raw, str):
        raise RuleError(name, "must be an RFC 3339 time or epoch seconds")
    try:
        return parse_time(name, raw, now)
    except ValueError as err:
        message = str(err)
        prefix = f"{name}: "
        raise RuleError(
            name, message[len(prefix) :] if message.startswith(prefix) else message
        ) from None
