"""What the ``rules export`` and ``alerts test`` commands do, kept out of the CLI module."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chatwatch.alerts.channels import DeliveryError, build_channel
from chatwatch.alerts.defaults import compile_rules
from chatwatch.alerts.factory import public_url
from chatwatch.alerts.notification import (
    AlertView,
    Notification,
    NotificationKind,
    new_notification_id,
)
from chatwatch.alerts.rules import Rule, RuleError, RuleSource, build_rule
from chatwatch.alerts.state import fingerprint
from chatwatch.clock import SystemClock
from chatwatch.config import Settings

__all__ = ["all_rules", "send_test", "test_notification"]


async def _stored_rules(url: str) -> list[Rule]:
    from chatwatch.alerts.store import AlertStore
    from chatwatch.store.db import Database

    db = Database(url)
    try:
        specs = await AlertStore(db).list_rules()
    finally:
        await db.dispose()
    rules = []
    for spec in specs:
        try:
            rules.append(build_rule(spec, source=RuleSource.API))
        except RuleError:
            continue
    return rules


def all_rules(settings: Settings) -> tuple[list[Rule], str | None]:
    """The configured rules plus the API's stored ones; a warning when the store is unread."""
    rules = compile_rules(settings.alerts)
    url = settings.database_url
    if url.startswith("sqlite") and not Path(url.split(":///", 1)[-1]).exists():
        return rules, None  # no database yet: no stored rules
    try:
        stored = asyncio.run(_stored_rules(url))
    except Exception as err:
        return rules, f"stored API rules were not read ({type(err).__name__}); exporting the rest"
    names = {r.name for r in rules}
    return rules + [r for r in stored if r.name not in names], None


def test_notification(channel: str, base_url: str, now: float) -> Notification:
    """A harmless firing notification that says it is a test."""
    labels = {"alertname": "ChatwatchTest", "severity": "low", "type": "system"}
    alert = AlertView(
        id="test",
        status="firing",
        labels=labels,
        annotations={"summary": "Test notification from chatwatch: this channel works"},
        starts_at=now,
        ends_at=None,
        fingerprint=fingerprint(labels),
        url=f"{base_url}/api/v1/admin/chat/alerts",
    )
    return Notification(
        id=new_notification_id(),
        channel=channel,
        kind=NotificationKind.TEST,
        group_key='{}:{alertname="ChatwatchTest"}',
        group_labels={"alertname": "ChatwatchTest"},
        alerts=(alert,),
        external_url=base_url,
        created_at=now,
    )


def send_test(settings: Settings, name: str) -> str | None:
    """Send a test notification through channel ``name``; the error text, or None if sent."""
    config = next(c for c in settings.alerts.channels if c.name == name)

    async def send() -> None:
        channel = build_channel(config, timeout=settings.alerts.delivery_timeout)
        try:
            note = test_notification(name, public_url(settings), SystemClock().time())
            await channel.send(note)
        finally:
            await channel.aclose()

    try:
        asyncio.run(send())
    except DeliveryError as err:
        return str(err)
    return None
