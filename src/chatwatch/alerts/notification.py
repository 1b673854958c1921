"""A notification: what one channel is told about one group of alerts, in a neutral shape.

The engine builds it, the outbox stores it as JSON before any send, and each channel
renders its own body from it at send time. Its ``id`` is the ``Idempotency-Key`` of every
delivery attempt. ``status`` follows Alertmanager: ``firing`` while any alert in the group
fires, else ``resolved``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

__all__ = ["AlertView", "Notification", "NotificationKind", "new_notification_id"]


class NotificationKind(StrEnum):
    """Why a notification is sent."""

    FIRING = "firing"
    RESOLVED = "resolved"
    REPEAT = "repeat"  # still firing after its cooldown
    ESCALATION = "escalation"  # critical and not acknowledged in time
    TEST = "test"  # ``chatwatch alerts test``
    HANDOFF = "handoff"  # a visitor asked for a person (``alerts.handoff``)


def new_notification_id() -> str:
    """A fresh notification id (32 hex chars)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as a notification carries it."""

    id: str
    status: str  # firing | resolved
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None
    fingerprint: str
    url: str

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for storage."""
        return {
            "id": self.id,
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "fingerprint": self.fingerprint,
            "url": self.url,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AlertView:
        """Back from ``to_json``."""
        return cls(
            id=data["id"],
            status=data["status"],
            labels=dict(data["labels"]),
            annotations=dict(data["annotations"]),
            starts_at=float(data["starts_at"]),
            ends_at=None if data.get("ends_at") is None else float(data["ends_at"]),
            fingerprint=data["fingerprint"],
            url=data["url"],
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """One group of alerts for one channel."""

    id: str
    channel: str
    kind: NotificationKind
    group_key: str
    group_labels: Mapping[str, str]
    alerts: Sequence[AlertView]
    external_url: str
    created_at: float

    @property
    def status(self) -> str:
        """``firing`` when any alert fires, else ``resolved``."""
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    @property
    def firing(self) -> list[AlertView]:
        """The firing alerts."""
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[AlertView]:
        """The resolved alerts."""
        return [a for a in self.alerts if a.status == "resolved"]

    def common(self, attr: str) -> dict[str, str]:
        """Labels (``attr="labels"``) or annotations every alert shares."""
        maps = [getattr(a, attr) for a in self.alerts]
        if not maps:
            return {}
        first = maps[0]
        return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}

    @property
    def title(self) -> str:
        """``[FIRING:2] [high] AuthFailureBurstByIP`` — the subject line of every channel."""
        labels = self.common("labels")
        name = labels.get("alertname") or self.group_labels.get("alertname", "alerts")
        severity = labels.get("severity")
        count = len(self.firing) if self.status == "firing" else len(self.alerts)
        head = f"[{self.status.upper()}:{count}]"
        if self.kind is NotificationKind.ESCALATION:
            head = f"[ESCALATED] {head}"
        elif self.kind is NotificationKind.TEST:
            head = f"[TEST] {head}"
        elif self.kind is NotificationKind.HANDOFF:
            head = "[HANDOFF]"
        return f"{head} [{severity}] {name}" if severity else f"{head} {name}"

    def to_json(self) -> bytes:
        """The stored payload."""
        return orjson.dumps(
            {
                "kind": self.kind.value,
                "group_key": self.group_key,
                "group_labels": dict(self.group_labels),
                "alerts": [a.to_json() for a in self.alerts],
                "external_url": self.external_url,
                "created_at": self.created_at,
            }
        )

    @classmethod
    def from_row(cls, id: str, channel: str, payload: str | bytes) -> Notification:
        """Rebuild from an outbox row."""
        data = orjson.loads(payload)
        return cls(
            id=id,
            channel=channel,
            kind=NotificationKind(data["kind"]),
            group_key=data["group_key"],
            group_labels=dict(data["group_labels"]),
            alerts=tuple(AlertView.from_json(a) for a in data["alerts"]),
            external_url=data["external_url"],
            created_at=float(data["created_at"]),
        )
