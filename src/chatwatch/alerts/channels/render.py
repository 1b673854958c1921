"""Text shared by the human-facing channels (Slack, Teams, email): colours, lines, links."""

from __future__ import annotations

from chatwatch.alerts.notification import AlertView, Notification

__all__ = ["MAX_LISTED", "SEVERITY_COLOURS", "alert_line", "colour_of", "link_of", "listed"]

# Hex colours by severity; resolved notifications are green.
SEVERITY_COLOURS = {
    "critical": "#B00020",
    "high": "#E8590C",
    "medium": "#F2C744",
    "low": "#3B82F6",
}
RESOLVED_COLOUR = "#2EB886"
MAX_LISTED = 20  # alerts listed one by one in a message; the rest are counted


def colour_of(n: Notification) -> str:
    """The message colour: severity while firing, green once resolved."""
    if n.status == "resolved":
        return RESOLVED_COLOUR
    severity = n.common("labels").get("severity", "")
    return SEVERITY_COLOURS.get(severity, SEVERITY_COLOURS["medium"])


def link_of(n: Notification) -> str:
    """The alert's own page for one alert, the alerts list for a group."""
    if len(n.alerts) == 1:
        return n.alerts[0].url
    return n.external_url.rstrip("/") + "/api/v1/admin/chat/alerts"


def alert_line(a: AlertView) -> str:
    """``firing: AuthFailureBurstByIP client_ip=203.0.113.9 (value 12)``."""
    shown = {k: v for k, v in a.labels.items() if k not in ("alertname", "severity", "type")}
    extra = " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    value = a.annotations.get("value")
    text = f"{a.status}: {a.labels.get('alertname', '')}"
    if extra:
        text += f" {extra}"
    if value:
        text += f" (value {value})"
    return text


def listed(n: Notification) -> tuple[list[AlertView], int]:
    """The alerts to list one by one, and how many more there are."""
    return list(n.alerts[:MAX_LISTED]), max(0, len(n.alerts) - MAX_LISTED)
