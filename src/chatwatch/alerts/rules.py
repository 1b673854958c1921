"""Alert rules: their words (enums), one validated ``Rule`` type, and the one validator.

Rules come from three places — the built-in defaults, ``alerts.rules`` in the
configuration (which may change or turn off a default by naming it) and the admin API —
and all pass through ``build_rule``, which raises ``RuleError`` naming the offending field,
so a bad config key stops start-up and a bad API body is a 400 with the same reason.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from chatwatch.alerts.signals_port import SIGNALS
from chatwatch.config import parse_duration

__all__ = [
    "AlertType",
    "Op",
    "Rule",
    "RuleError",
    "RuleKind",
    "RuleSource",
    "Severity",
    "build_rule",
    "format_duration",
    "parse_duration_field",
    "validate_labels",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RESERVED_LABELS = frozenset({"alertname", "severity", "type"})
MAX_LABELS = 32
MAX_LABEL_VALUE = 256
MAX_SUMMARY = 1024
MAX_DURATION = 366 * 86400.0
DEFAULT_COOLDOWN = 900.0


class Op(StrEnum):
    """A rule's comparison of the signal's value with its threshold."""

    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="

    @property
    def compare(self) -> Callable[[float, float], bool]:
        """The comparison as a function of (value, threshold)."""
        return _COMPARE[self]

    @property
    def above(self) -> bool:
        """True for ``>``/``>=``: the alert is about values going up."""
        return self in (Op.GT, Op.GE)


_COMPARE: dict[Op, Callable[[float, float], bool]] = {
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
}


class Severity(StrEnum):
    """How bad an alert is, lowest first."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class AlertType(StrEnum):
    """What an alert is about (SPEC §6)."""

    ERROR = "error"
    PERFORMANCE = "performance"
    SECURITY = "security"
    CONNECTION = "connection"
    AI = "ai"
    SYSTEM = "system"


class RuleSource(StrEnum):
    """Where a rule was defined; only ``api`` rules can be changed through the API."""

    DEFAULT = "default"
    CONFIG = "config"
    API = "api"


class RuleKind(StrEnum):
    """A threshold on a signal, or an SLO's multi-window burn rates."""

    THRESHOLD = "threshold"
    SLO = "slo"


# An SLO rule reads this internal signal (not in SIGNALS: no threshold rule may use it), one
# series per rule and burn-rate pair; its value is the smaller of the two windows' burn
# rates as a multiple of the pair's factor, firing above 1.
SLO_SIGNAL = "slo_burn_rate"
DEFAULT_SLO_WINDOW = 28 * 86400.0


class RuleError(ValueError):
    """A rule field is bad; ``field`` names it (as in the API body or config entry)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def format_duration(seconds: float) -> str:
    """A Prometheus-style duration string: ``0s``, ``90`` → ``1m30s``, ``0.25`` → ``250ms``."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)


def parse_duration_field(name: str, value: Any, *, positive: bool = False) -> float:
    """A duration (``30s``, ``5m``, or seconds) of at most a year, else RuleError naming it."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise RuleError(name, "must be a duration like '30s', '5m' or '1h'")
    try:
        seconds = parse_duration(value)
    except ValueError as err:
        raise RuleError(name, str(err)) from None
    if seconds > MAX_DURATION:
        raise RuleError(name, "must be at most 366d")
    if positive and seconds <= 0:
        raise RuleError(name, "must be more than 0s")
    return seconds


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated alert rule; durations in seconds."""

    name: str
    signal: str
    op: Op
    threshold: float
    for_s: float = 0.0
    severity: Severity = Severity.MEDIUM
    type: AlertType = AlertType.SYSTEM
    summary: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    cooldown_s: float = DEFAULT_COOLDOWN
    channels: tuple[str, ...] | None = None
    enabled: bool = True
    by: tuple[str, ...] = ()
    resolve_threshold: float | None = None
    min_samples: int = 0
    escalate_after_s: float | None = None
    escalate_to: tuple[str, ...] | None = None
    source: RuleSource = RuleSource.API
    kind: RuleKind = RuleKind.THRESHOLD
    objective: float | None = None
    window_s: float | None = None

    def fires(self, value: float) -> bool:
        """True when ``value`` meets the firing condition."""
        return self.op.compare(value, self.threshold)

    def clears(self, value: float) -> bool:
        """True when ``value`` resolves an alert (past ``resolve_threshold`` if set)."""
        edge = self.threshold if self.resolve_threshold is None else self.resolve_threshold
        return not self.op.compare(value, edge)

    @property
    def read_only(self) -> bool:
        """Rules from the defaults or the configuration cannot be changed through the API."""
        return self.source is not RuleSource.API

    def spec(self) -> dict[str, Any]:
        """The rule as its definition (what ``build_rule`` takes back)."""
        return {
            "name": self.name,
            "signal": self.signal,
            "op": self.op.value,
            "threshold": self.threshold,
            "for": format_duration(self.for_s),
            "severity": self.severity.value,
            "type": self.type.value,
            "summary": self.summary,
            "labels": dict(self.labels),
            "cooldown": format_duration(self.cooldown_s),
            "channels": None if self.channels is None else list(self.channels),
            "enabled": self.enabled,
            "by": list(self.by),
            "resolve_threshold": self.resolve_threshold,
            "min_samples": self.min_samples,
            "escalate_after": (
                None if self.escalate_after_s is None else format_duration(self.escalate_after_s)
            ),
            "escalate_to": None if self.escalate_to is None else list(self.escalate_to),
            **self._slo_spec(),
        }

    def _slo_spec(self) -> dict[str, Any]:
        if self.kind is not RuleKind.SLO:
            return {}
        window = format_duration(self.window_s or DEFAULT_SLO_WINDOW)
        return {"kind": self.kind.value, "objective": self.objective, "window": window}

    def to_json(self) -> dict[str, Any]:
        """The rule as the API shows it."""
        return {**self.spec(), "source": self.source.value, "read_only": self.read_only}


# --- validation -------------------------------------------------------------------------

_FIELDS = frozenset(
    {
        "name",
        "signal",
        "op",
        "threshold",
        "for",
        "severity",
        "type",
        "summary",
        "labels",
        "cooldown",
        "channels",
        "enabled",
        "by",
        "resolve_threshold",
        "min_samples",
        "escalate_after",
        "escalate_to",
        "kind",
        "objective",
        "window",
    }
)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(name, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise RuleError(name, "must be a finite number")
    if number < 0:
        raise RuleError(name, "must not be negative")
    return number


def _enum(name: str, value: Any, kind: type[StrEnum]) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in kind)
        raise RuleError(name, f"must be one of {allowed}") from None


def _names(
    name: str, value: Any, known: Collection[str] | None, what: str
) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RuleError(name, f"must be a list of {what} names")
    if len(value) > 64:
        raise RuleError(name, "may name at most 64 entries")
    if known is not None:
        unknown = [v for v in value if v not in known]
        if unknown:
            listed = ", ".join(sorted(known)) or "none configured"
            raise RuleError(name, f"unknown {what} {unknown[0][:64]!r} (known: {listed})")
    return tuple(dict.fromkeys(value))


def validate_labels(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise RuleError("labels", "must be an object of label names to strings")
    if len(value) > MAX_LABELS:
        raise RuleError("labels", f"may hold at most {MAX_LABELS} labels")
    out = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _LABEL_NAME.match(key) or key.startswith("__"):
            raise RuleError(
                "labels", f"{str(key)[:64]!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        if key in RESERVED_LABELS:
            raise RuleError("labels", f"{key!r} is set by the rule itself")
        if not isinstance(val, str) or len(val) > MAX_LABEL_VALUE:
            raise RuleError("labels", f"{key}: must be a string of at most {MAX_LABEL_VALUE} chars")
        out[key] = val
    return out


def build_rule(
    data: Mapping[str, Any],
    *,
    source: RuleSource = RuleSource.API,
    channels: Collection[str] | None = None,
) -> Rule:
    """Validate a rule definition (API body or merged config entry) into a ``Rule``.

    ``channels`` are the configured channel names (None: not checked). Raises RuleError.
    """
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise RuleError(str(unknown[0])[:64], "unknown field")
    kind: RuleKind = _enum("kind", data.get("kind") or "threshold", RuleKind)
    if kind is RuleKind.SLO:
        return _build_slo(data, source, channels)
    for required in ("name", "signal", "op", "threshold"):
        if data.get(required) is None:
            raise RuleError(required, "is required")
    name = data["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise RuleError(
            "name", "must be 1-128 chars of [A-Za-z0-9_.:-], starting with a letter or _"
        )
    signal = data["signal"]
    if not isinstance(signal, str) or signal not in SIGNALS:
        shown = signal[:64] if isinstance(signal, str) else signal
        raise RuleError("signal", f"unknown signal {shown!r} (known: {', '.join(SIGNALS)})")
    op: Op = _enum("op", data["op"], Op)
    threshold = _number("threshold", data["threshold"])
    for_s = parse_duration_field("for", data.get("for", "0s"))
    severity: Severity = _enum("severity", data.get("severity", "medium"), Severity)
    alert_type: AlertType = _enum("type", data.get("type", "system"), AlertType)
    summary = data.get("summary", "") or ""
    if not isinstance(summary, str) or len(summary) > MAX_SUMMARY:
        raise RuleError("summary", f"must be a string of at most {MAX_SUMMARY} chars")
    labels = validate_labels(data.get("labels") or {})
    cooldown = data.get("cooldown")
    cooldown_s = (
        DEFAULT_COOLDOWN if cooldown is None else parse_duration_field("cooldown", cooldown)
    )
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError("enabled", "must be true or false")
    by = _names("by", data.get("by") or [], SIGNALS[signal].labels, f"label of {signal}") or ()
    resolve = data.get("resolve_threshold")
    resolve_threshold = None if resolve is None else _number("resolve_threshold", resolve)
    if resolve_threshold is not None:
        wrong_side = resolve_threshold > threshold if op.above else resolve_threshold < threshold
        if wrong_side:
            side = "at most" if op.above else "at least"
            raise RuleError("resolve_threshold", f"must be {side} the threshold for op {op.value}")
    min_samples = data.get("min_samples", 0)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 0:
        raise RuleError("min_samples", "must be a non-negative integer")
    escalate = data.get("escalate_after")
    escalate_after_s = (
        None
        if escalate is None
        else parse_duration_field("escalate_after", escalate, positive=True)
    )
    return Rule(
        name=name,
        signal=signal,
        op=op,
        threshold=threshold,
        for_s=for_s,
        severity=severity,
        type=alert_type,
        summary=summary,
        labels=labels,
        cooldown_s=cooldown_s,
        channels=_names("channels", data.get("channels"), channels, "channel"),
        enabled=enabled,
        by=by,
        resolve_threshold=resolve_threshold,
        min_samples=min_samples,
        escalate_after_s=escalate_after_s,
        escalate_to=_names("escalate_to", data.get("escalate_to"), channels, "channel"),
        source=source,
    )


def _build_slo(
    data: Mapping[str, Any], source: RuleSource, channels: Collection[str] | None
) -> Rule:
    """An SLO rule: burn rates from stored counts; severity comes from the pair that fires."""
    for fixed in ("signal", "op", "threshold", "by", "resolve_threshold", "min_samples"):
        if data.get(fixed) not in (None, [], 0):
            raise RuleError(fixed, "is not used by a rule of kind 'slo'")
    objective = data.get("objective")
    if objective is None:
        raise RuleError("objective", "is required for kind 'slo'")
    if not 0 < _number("objective", objective) < 1:
        raise RuleError("objective", "must be between 0 and 1, exclusive (e.g. 0.995)")
    window = data.get("window")
    window_s = (
        DEFAULT_SLO_WINDOW
        if window is None
        else parse_duration_field("window", window, positive=True)
    )
    base = build_rule(
        {
            **{k: v for k, v in data.items() if k not in ("kind", "objective", "window")},
            "signal": "error_rate",  # validated as a threshold rule, then made an SLO
            "summary": data.get("summary")
            or f"Messages fail fast enough to spend the {float(objective):.4g} SLO's budget early",
            "op": ">",
            "threshold": 1.0,
            "by": [],
        },
        source=source,
        channels=channels,
    )
    return replace(
        base, signal=SLO_SIGNAL, kind=RuleKind.SLO, objective=float(objective), window_s=window_s
    )
