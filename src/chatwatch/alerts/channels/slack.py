"""The Slack channel: an incoming-webhook message with a severity-coloured attachment
that links to the alert (``text`` is the notification fallback)."""

from __future__ import annotations

from typing import Any

from chatwatch.alerts.channels.base import HttpChannel
from chatwatch.alerts.channels.render import alert_line, colour_of, link_of, listed
from chatwatch.alerts.notification import Notification

__all__ = ["SlackChannel", "escape", "slack_body"]


def escape(text: str) -> str:
    """Slack mrkdwn escaping of ``&``, ``<`` and ``>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(n: Notification) -> dict[str, Any]:
    """The incoming-webhook JSON for ``n``."""
    shown, more = listed(n)
    lines = [f"• <{a.url}|{escape(alert_line(a))}>" for a in shown]
    if more:
        lines.append(f"… and {more} more")
    summary = n.common("annotations").get("summary", "")
    labels = n.common("labels")
    fields = [
        {"title": key, "value": escape(labels[key]), "short": True}
        for key in ("severity", "type")
        if key in labels
    ]
    return {
        "text": escape(n.title),
        "attachments": [
            {
                "fallback": escape(n.title),
                "color": colour_of(n),
                "title": escape(n.title),
                "title_link": link_of(n),
                "text": "\n".join(([escape(summary)] if summary else []) + lines),
                "fields": fields,
                "footer": "chatwatch",
                "ts": int(n.created_at),
            }
        ],
    }


class SlackChannel(HttpChannel):
    """Posts to a Slack incoming webhook."""

    def body(self, notification: Notification) -> dict[str, Any]:
        """The Slack message."""
        return slack_body(notification)
