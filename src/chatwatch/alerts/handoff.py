"""Hand-offs reach a person: a ``handoff`` notification per hand-off, through the outbox.

When the consultant offers a visitor a human (``HandoffRequested``), every channel whose
``types`` filter lets ``handoff`` through (or that has no filter) gets one notification
carrying the conversation link. It is stored in the outbox like any alert notification, so
it is retried with back-off and every attempt carries its id as ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping
from urllib.parse import quote

from chatwatch.alerts.channels.base import Channel
from chatwatch.alerts.engine import AlertEngine
from chatwatch.alerts.notification import (
    AlertView,
    Notification,
    NotificationKind,
    new_notification_id,
)
from chatwatch.alerts.outbox import Dispatcher
from chatwatch.alerts.store import AlertStore
from chatwatch.clock import Clock
from chatwatch.events import HandoffRequested
from chatwatch.observe.logs.pipeline import get_logger

__all__ = ["HANDOFF_ALERTNAME", "HANDOFF_TYPE", "HandoffNotifier", "conversation_url"]

HANDOFF_TYPE = "handoff"  # the channel ``types`` value that lets hand-offs through
HANDOFF_ALERTNAME = "HandoffRequested"
# Receivers page a person on it, and a visitor waiting for a human is urgent.
_SEVERITY = "high"
_log = get_logger("alerts")


def conversation_url(public_url: str, session_id: str) -> str:
    """The session's messages in the chat API (where the person picks the thread up)."""
    return f"{public_url.rstrip('/')}/api/v1/chat/sessions/{quote(session_id, safe='')}/messages"


class HandoffNotifier:
    """Queues one ``handoff`` notification per hand-off for every channel that takes them."""

    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        clock: Clock,
        *,
        public_url: str,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock
        self.public_url = public_url
        self.dispatcher = dispatcher
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def of(cls, engine: AlertEngine) -> HandoffNotifier:
        """A notifier sharing ``engine``'s store, channels, clock, link base and dispatcher."""
        return cls(
            engine.store,
            engine.channels,
            engine.clock,
            public_url=engine.options.public_url,
            dispatcher=engine.dispatcher,
        )

    def on_handoff(self, event: HandoffRequested) -> None:
        """Bus listener: queue the notification in the background (the chat never waits)."""
        task = asyncio.get_running_loop().create_task(self._queue(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _queue(self, event: HandoffRequested) -> None:
        try:
            await self.notify(event)
        except Exception:
            _log.exception("error.alert_handoff", session_id=event.session_id)

    async def notify(self, event: HandoffRequested) -> list[Notification]:
        """Store the hand-off's notifications in the outbox and wake the dispatcher."""
        targets = [n for n, ch in self.channels.items() if ch.accepts(_SEVERITY, HANDOFF_TYPE)]
        if not targets:
            _log.info("alert.not_routed", group=HANDOFF_TYPE, session_id=event.session_id)
            return []
        now = self.clock.time()
        link = conversation_url(self.public_url, event.session_id)
        view = AlertView(
            id=uuid.uuid4().hex,
            status="firing",
            labels={
                "alertname": HANDOFF_ALERTNAME,
                "severity": _SEVERITY,
                "type": HANDOFF_TYPE,
                "session_id": event.session_id,
            },
            annotations={
                "summary": "A visitor asked for a person: pick up the conversation",
                "conversation_url": link,
                "user_id": event.user_id,
                "correlation_id": event.correlation_id,
            },
            starts_at=now,
            ends_at=None,
            fingerprint=uuid.uuid5(uuid.NAMESPACE_URL, link).hex[:16],
            url=link,
        )
        notifications = [
            Notification(
                id=new_notification_id(),
                channel=channel,
                kind=NotificationKind.HANDOFF,
                group_key=f"{{}}/handoff:{{session_id={event.session_id[:128]}}}",
                group_labels={"alertname": HANDOFF_ALERTNAME, "session_id": event.session_id},
                alerts=(view,),
                external_url=self.public_url,
                created_at=now,
            )
            for channel in targets
        ]
        await self.store.enqueue(notifications, (), now)
        if self.dispatcher is not None:
            self.dispatcher.wake()
        for n in notifications:
            _log.info(
                "alert.handoff_queued",
                notification_id=n.id,
                channel=n.channel,
                session_id=event.session_id,
            )
        return notifications

    async def drain(self) -> None:
        """Wait for the hand-offs being queued (at shutdown)."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
