"""The webhook channel: the Alertmanager webhook body (version "4"), so an existing
Alertmanager receiver works unchanged, signed with HMAC-SHA256 when a secret is set."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from chatwatch.alerts.channels.base import HttpChannel
from chatwatch.alerts.notification import AlertView, Notification
from chatwatch.timefmt import format_time as iso_time

__all__ = ["ZERO_TIME", "WebhookChannel", "alertmanager_body", "sign"]

# Alertmanager's "no end time yet" for firing alerts.
ZERO_TIME = "0001-01-01T00:00:00Z"


def sign(secret: str, body: bytes) -> str:
    """The ``X-Chatwatch-Signature`` value: ``sha256=<hex HMAC of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _alert(a: AlertView) -> dict[str, Any]:
    return {
        "status": a.status,
        "labels": dict(a.labels),
        "annotations": dict(a.annotations),
        "startsAt": iso_time(a.starts_at),
        "endsAt": ZERO_TIME if a.ends_at is None else iso_time(a.ends_at),
        "generatorURL": a.url,
        "fingerprint": a.fingerprint,
    }


def alertmanager_body(n: Notification) -> dict[str, Any]:
    """The Alertmanager webhook payload (version 4) for ``n``."""
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.channel,
        "groupLabels": dict(n.group_labels),
        "commonLabels": n.common("labels"),
        "commonAnnotations": n.common("annotations"),
        "externalURL": n.external_url,
        "alerts": [_alert(a) for a in n.alerts],
    }


class WebhookChannel(HttpChannel):
    """POSTs the Alertmanager body; ``X-Chatwatch-Signature`` when ``secret`` is set."""

    def body(self, notification: Notification) -> dict[str, Any]:
        """The Alertmanager webhook body."""
        return alertmanager_body(notification)

    def headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        """Content type, idempotency key and, with a secret, the signature."""
        headers = super().headers(notification, body)
        if self.settings.secret:
            headers["X-Chatwatch-Signature"] = sign(self.settings.secret, body)
        return headers
