"""Label values that stay bounded, and labelled counters whose children are bound once.

No label may grow with user or upstream input (SPEC §7): every raw string goes through a
``LabelCap`` — known values kept, then the first few distinct others, then ``other``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter

from chatwatch.vocabulary import (
    AIOutcome,
    CloseReason,
    ErrorCode,
    QuickActionName,
    SecurityEventType,
)

__all__ = [
    "AI_OUTCOMES",
    "CIRCUIT_STATES",
    "CLIENT_MISTAKES",
    "CLOSE_REASONS",
    "ERROR_CODES",
    "FAIL_REASONS",
    "FEATURES",
    "FRAME_TYPES_IN",
    "FRAME_TYPES_OUT",
    "LATE_ERROR_CODES",
    "MODEL_LABEL_LIMIT",
    "QUICK_ACTIONS",
    "SECURITY_TYPES",
    "LabelCap",
    "LabelledCounter",
    "collected_total",
    "counter_value",
]

MODEL_LABEL_LIMIT = 20
# Label sets come from the shared vocabulary, so the chat side and the metrics cannot drift.
ERROR_CODES: tuple[str, ...] = tuple(ErrorCode)
# Error frames that come from a failure after the frame was accepted (SPEC §4), announced by
# ErrorOccurred; the client's mistakes are announced by FrameRejected.
LATE_ERROR_CODES = frozenset(c for c in ErrorCode if not c.is_client_mistake)
CLIENT_MISTAKES = frozenset(c for c in ErrorCode if c.is_client_mistake)
CLOSE_REASONS: tuple[str, ...] = tuple(CloseReason)
SECURITY_TYPES: tuple[str, ...] = tuple(SecurityEventType)
QUICK_ACTIONS: tuple[str, ...] = tuple(QuickActionName)
AI_OUTCOMES: tuple[str, ...] = tuple(AIOutcome)
CIRCUIT_STATES = ("closed", "half_open", "open")
FRAME_TYPES_IN = ("message", "quick_action", "ping")
FRAME_TYPES_OUT = ("connected", "ack", "ai_delta", "ai_message", "error", "pong")
FAIL_REASONS = (
    "auth_missing",
    "auth_invalid",
    "auth_expired",
    "forbidden_session",
    "too_many_connections",
    "shutting_down",
    "internal",
)
FEATURES = ("resume", "quick_action", "history", "guest_login", "ping", "handoff")
# The attribute behind a counter child's value; when a prometheus_client release renames it,
# ``counter_value`` reads the child through its public ``collect()`` instead.
_VALUE_ATTR = "_value"


class LabelCap:
    """Maps raw strings to label values: known ones, the first ``limit`` others, then ``other``."""

    def __init__(self, limit: int, known: Iterable[str] = (), *, max_len: int = 64) -> None:
        self._known = {*known, "unknown", "other"}
        self._seen: set[str] = set()
        self._limit = limit
        self._max_len = max_len

    def __call__(self, raw: str) -> str:
        """The label value for ``raw``."""
        value = raw[: self._max_len] if raw else "unknown"
        if value in self._known or value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return "other"


def counter_value(child: Counter) -> float:
    """The current value of one counter child."""
    # prometheus_client offers no public read of one child short of a full collect();
    # ``_value.get()`` is what its own collect() calls, and it is cheap and thread-safe.
    value = getattr(child, _VALUE_ATTR, None)
    if value is not None:
        return float(value.get())
    return collected_total(child)


def collected_total(child: Counter) -> float:
    """A counter child's value through the public ``collect()`` (slower; the fallback)."""
    for metric in child.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                return float(sample.value)
    return 0.0


class LabelledCounter:
    """A one-label counter whose children are bound once per capped value."""

    def __init__(self, counter: Counter, cap: LabelCap, prebind: Iterable[str] = ()) -> None:
        self._counter, self._cap = counter, cap
        self.children: dict[str, Counter] = {}
        # Bound ``inc`` of each child by raw value: the hot handlers' one lookup.
        self.incs: dict[str, Callable[[], None]] = {}
        self._by_label: dict[str, Counter] = {}
        for value in prebind:
            self.child(value)

    def child(self, raw: str) -> Counter:
        """The child for ``raw``, bound once; raw strings are cached only while few."""
        hit = self.children.get(raw)
        if hit is not None:
            return hit
        label = self._cap(raw)
        child = self._by_label.get(label)
        if child is None:
            child = self._by_label[label] = self._counter.labels(label)
        if len(self.children) < 256:  # junk raw strings would otherwise grow this forever
            self.children[raw] = child
            self.incs[raw] = child.inc
        return child

    def inc_of(self, raw: str) -> Callable[[], None]:
        """The bound ``inc`` of the child for ``raw``."""
        return self.child(raw).inc

    def labels(self) -> list[str]:
        """The label values bound so far."""
        return list(self._by_label)

    def values(self) -> dict[str, float]:
        """Each bound label value's count."""
        return {label: counter_value(child) for label, child in self._by_label.items()}

    def total(self) -> float:
        """The sum over every label value."""
        return sum(counter_value(child) for child in self._by_label.values())
