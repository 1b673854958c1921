"""Label values that stay bounded, and labelled counters whose children are bound once.

No label may grow with user or upstream input (SPEC §7): every raw string goes through a
``LabelCap`` — known values kept, then the first few distinct others, then ``other``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter

__all__ = [
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
    "counter_value",
]

MODEL_LABEL_LIMIT = 20
# Error frames that come from a failure after the frame was accepted (SPEC §4), announced by
# ErrorOccurred; the other codes are announced by FrameRejected.
LATE_ERROR_CODES = frozenset({"ai_unavailable", "internal"})
FRAME_TYPES_IN = ("message", "quick_action", "ping")
FRAME_TYPES_OUT = ("connected", "ack", "ai_delta", "ai_message", "error", "pong")
ERROR_CODES = (
    "invalid_json",
    "invalid_frame",
    "message_too_large",
    "rate_limited",
    "ai_unavailable",
    "internal",
)
CLOSE_REASONS = ("client_closed", "server_shutdown", "error", "protocol_error")
FAIL_REASONS = (
    "auth_missing",
    "auth_invalid",
    "auth_expired",
    "forbidden_session",
    "too_many_connections",
    "shutting_down",
    "internal",
)
SECURITY_TYPES = (
    "auth_failed",
    "admin_denied",
    "rate_limited",
    "oversized_frame",
    "malformed_frame",
    "too_many_connections",
    "forbidden_session",
)
QUICK_ACTIONS = ("pricing", "services", "book_consultation", "talk_to_human")
FEATURES = ("resume", "quick_action", "history", "guest_login", "ping", "handoff")


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
    return float(child._value.get())


class LabelledCounter:
    """A labelled counter whose children are bound once per capped value, told to ``track``."""

    def __init__(
        self,
        track: Callable[[tuple[str, ...], Counter], None],
        counter: Counter,
        cap: LabelCap,
        keys: tuple[str, ...],
        prefix: str | None = None,
        prebind: Iterable[str] = (),
    ) -> None:
        self._track, self._counter, self._cap = track, counter, cap
        self._keys, self._prefix = keys, prefix
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
            keys = self._keys + ((f"{self._prefix}.{label}",) if self._prefix else ())
            self._track(keys, child)
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
