"""The Microsoft Teams channel: an Adaptive Card (schema 1.4) posted to an incoming
webhook or a Workflows "post to a channel when a webhook request is received" URL."""

from __future__ import annotations

from typing import Any

from chatwatch.alerts.channels.base import HttpChannel
from chatwatch.alerts.channels.render import alert_line, link_of, listed
from chatwatch.alerts.notification import Notification

__all__ = ["ADAPTIVE_CARD_CONTENT_TYPE", "TeamsChannel", "teams_body"]

ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
# Adaptive Cards have no free colours: TextBlock colours are named.
_COLOURS = {"critical": "Attention", "high": "Attention", "medium": "Warning", "low": "Accent"}


def teams_body(n: Notification) -> dict[str, Any]:
    """The Teams message (one Adaptive Card attachment) for ``n``."""
    labels = n.common("labels")
    colour = (
        "Good" if n.status == "resolved" else _COLOURS.get(labels.get("severity", ""), "Default")
    )
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": n.title,
            "weight": "Bolder",
            "size": "Medium",
            "color": colour,
            "wrap": True,
        }
    ]
    summary = n.common("annotations").get("summary")
    if summary:
        body.append({"type": "TextBlock", "text": summary, "wrap": True})
    facts = [{"title": k, "value": labels[k]} for k in ("severity", "type") if k in labels]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    shown, more = listed(n)
    for a in shown:
        body.append({"type": "TextBlock", "text": alert_line(a), "wrap": True, "spacing": "Small"})
    if more:
        body.append({"type": "TextBlock", "text": f"… and {more} more", "isSubtle": True})
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": ADAPTIVE_CARD_CONTENT_TYPE,
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                    "actions": [
                        {"type": "Action.OpenUrl", "title": "Open in chatwatch", "url": link_of(n)}
                    ],
                },
            }
        ],
    }


class TeamsChannel(HttpChannel):
    """Posts an Adaptive Card to a Teams webhook."""

    def body(self, notification: Notification) -> dict[str, Any]:
        """The Teams message."""
        return teams_body(notification)
