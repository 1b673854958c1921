"""Notification channels: one class per kind behind ``Channel``; ``build_channel`` picks it."""

from __future__ import annotations

from chatwatch.alerts.channels.base import Channel, DeliveryError, HttpChannel
from chatwatch.alerts.channels.email import EmailChannel
from chatwatch.alerts.channels.slack import SlackChannel
from chatwatch.alerts.channels.teams import TeamsChannel
from chatwatch.alerts.channels.webhook import WebhookChannel
from chatwatch.config import AlertChannelSettings

__all__ = [
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "HttpChannel",
    "SlackChannel",
    "TeamsChannel",
    "WebhookChannel",
    "build_channel",
]

_KINDS: dict[str, type[Channel]] = {
    "webhook": WebhookChannel,
    "slack": SlackChannel,
    "teams": TeamsChannel,
    "email": EmailChannel,
}


def build_channel(settings: AlertChannelSettings, *, timeout: float = 10.0) -> Channel:
    """The channel object for one ``[[alerts.channels]]`` entry."""
    return _KINDS[settings.kind](settings, timeout=timeout)
