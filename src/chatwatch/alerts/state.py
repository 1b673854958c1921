"""One alert and its lifecycle: ``pending`` → ``firing`` → ``resolved`` as an Enum that
refuses illegal moves, plus the label fingerprint that makes "one alert per rule and label
set" (the same 16-hex shape as Alertmanager's)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chatwatch.timefmt import format_time as iso_time

__all__ = ["Alert", "AlertState", "IllegalTransition", "Notified", "fingerprint"]


class IllegalTransition(Exception):
    """An alert was asked to move to a state it cannot reach from where it is."""


class AlertState(StrEnum):
    """Where an alert is in its life. ``inactive`` is a pending alert that cleared before
    its ``for`` elapsed: it never fired, is not notified and is not kept."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    INACTIVE = "inactive"

    def can_become(self, new: AlertState) -> bool:
        """True when ``self`` → ``new`` is a legal move."""
        return new in _NEXT[self]

    @property
    def active(self) -> bool:
        """Pending or firing."""
        return self in (AlertState.PENDING, AlertState.FIRING)


_NEXT: dict[AlertState, frozenset[AlertState]] = {
    AlertState.PENDING: frozenset({AlertState.FIRING, AlertState.RESOLVED, AlertState.INACTIVE}),
    AlertState.FIRING: frozenset({AlertState.RESOLVED}),
    AlertState.RESOLVED: frozenset(),
    AlertState.INACTIVE: frozenset(),
}


class Notified(StrEnum):
    """The last state people were told about (stored: a restart does not tell them again)."""

    NONE = "none"
    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex chars identifying a label set (order-independent)."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Alert:
    """One alert from its start to its end; a new firing after a resolution is a new Alert."""

    id: str
    rule: str | None  # None: raised by hand through the API
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    state: AlertState = AlertState.PENDING
    value: float | None = None
    fired_at: float | None = None
    ends_at: float | None = None
    acknowledged: bool = False
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    notified: Notified = Notified.NONE
    last_notified_at: float | None = None
    escalated_at: float | None = None
    resolved_by: str | None = None
    seq: int | None = None
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.labels)

    @property
    def severity(self) -> str:
        """The ``severity`` label."""
        return self.labels.get("severity", "medium")

    @property
    def type(self) -> str:
        """The ``type`` label."""
        return self.labels.get("type", "system")

    @property
    def name(self) -> str:
        """The ``alertname`` label."""
        return self.labels.get("alertname", "")

    def move(self, new: AlertState, now: float) -> None:
        """Change state, stamping ``fired_at``/``ends_at``; IllegalTransition if not allowed."""
        if not self.state.can_become(new):
            raise IllegalTransition(f"alert {self.id}: {self.state} cannot become {new}")
        self.state = new
        if new is AlertState.FIRING:
            self.fired_at = now
        elif new in (AlertState.RESOLVED, AlertState.INACTIVE):
            self.ends_at = now

    def to_json(self, *, silenced: bool = False) -> dict[str, Any]:
        """The alert as the API shows it (times as RFC 3339 UTC)."""
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "state": self.state.value,
            "rule": self.rule,
            "manual": self.rule is None,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "value": self.value,
            "starts_at": iso_time(self.starts_at),
            "fired_at": None if self.fired_at is None else iso_time(self.fired_at),
            "ends_at": None if self.ends_at is None else iso_time(self.ends_at),
            "acknowledged": self.acknowledged,
            "acknowledged_at": (
                None if self.acknowledged_at is None else iso_time(self.acknowledged_at)
            ),
            "acknowledged_by": self.acknowledged_by,
            "silenced": silenced,
            "notified": self.notified.value,
            "escalated_at": None if self.escalated_at is None else iso_time(self.escalated_at),
        }
