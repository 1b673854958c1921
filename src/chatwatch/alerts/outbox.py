"""The outbox dispatcher: sends stored notifications, retrying with back-off and jitter.

A notification is in the database before any attempt (``AlertStore.enqueue``). The
dispatcher claims due rows (a claim is a lease: a process that dies mid-send loses it and
another takes the row over, with the same ``Idempotency-Key``), sends through the row's
channel, and records the outcome: ``sent``; ``queued`` again after a transient failure
(timeouts, connection errors, 5xx, 408/425/429), ``delay = min(retry_max, retry_initial ·
2^(attempt-1))`` scaled by a random factor in [0.5, 1); ``failed`` after a permanent
failure (another 4xx) or after ``attempts`` tries — logged as ``alert.delivery_failed``,
counted as ``chat_alert_notifications_total{outcome="failed"}`` and listed by the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from chatwatch.alerts.channels.base import Channel, DeliveryError
from chatwatch.alerts.notification import Notification
from chatwatch.alerts.store import AlertStore, OutboxRow, OutboxState
from chatwatch.clock import Clock
from chatwatch.observe.context import background_job
from chatwatch.observe.logs.pipeline import get_logger

__all__ = ["DeliveryOutcome", "Dispatcher", "NotificationCounter", "backoff", "node_id"]

_log = get_logger("alerts")


class DeliveryOutcome:
    """The ``outcome`` label of ``chat_alert_notifications_total``."""

    SENT = "sent"
    RETRY = "retry"  # an attempt failed; another will follow
    FAILED = "failed"  # given up: permanent error or attempts exhausted


class NotificationCounter(Protocol):
    """Where delivery attempts are counted (``ChatMetrics`` is one)."""

    def count_notification(self, channel: str, outcome: str) -> None:
        """Count one attempt's outcome."""
        ...


def node_id() -> str:
    """This process's name in outbox claims."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def backoff(attempt: int, initial: float, cap: float, rand: Callable[[], float]) -> float:
    """Delay before attempt ``attempt + 1``: exponential, capped, with jitter in [0.5, 1)."""
    base = min(cap, initial * 2.0 ** max(0, attempt - 1))
    return base * (0.5 + 0.5 * rand())


class Dispatcher:
    """Delivers outbox rows through their channels."""

    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        clock: Clock,
        *,
        counter: NotificationCounter | None = None,
        attempts: int = 10,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        lease: float = 60.0,
        concurrency: int = 8,
        poll: float = 5.0,
        node: str | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.channels = channels
        self.clock = clock
        self.counter = counter
        self.attempts = attempts
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.lease = lease
        self.concurrency = concurrency
        self.poll = poll
        self.node = node or node_id()
        self._rand = rand
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New rows were stored: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever (run as a task; cancel to stop)."""
        while True:
            self._wake.clear()
            try:
                with background_job("alerts"):
                    await self.dispatch_once()
                due = await self.store.next_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("error.alert_dispatch")
                due = None
            delay = self.poll if due is None else due - self.clock.time()
            delay = min(self.poll, max(0.02, delay))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def dispatch_once(self) -> int:
        """Send every row due now; returns how many attempts were made."""
        made = 0
        while True:
            rows = await self.store.claim(
                self.node, self.clock.time(), self.lease, self.concurrency
            )
            if not rows:
                return made
            made += len(rows)
            await asyncio.gather(*(self._deliver(row) for row in rows))

    async def _deliver(self, row: OutboxRow) -> None:
        channel = self.channels.get(row.channel)
        notification = Notification.from_row(row.id, row.channel, row.payload)
        fields: dict[str, Any] = {
            "channel": row.channel,
            "notification_id": row.id,
            "kind": row.kind,
            "group_key": row.group_key,
            "attempt": row.attempts,
            "alerts": len(notification.alerts),
        }
        if channel is None:
            await self._fail(row, "channel is no longer configured", fields)
            return
        try:
            await channel.send(notification)
        except DeliveryError as err:
            if err.retryable and row.attempts < self.attempts:
                await self._retry(row, str(err), fields)
            else:
                reason = str(err) if not err.retryable else f"{err} (after {row.attempts} attempts)"
                await self._fail(row, reason, fields)
            return
        except Exception as err:  # a rendering bug must not lose the notification silently
            _log.exception("error.alert_channel", **fields)
            if row.attempts < self.attempts:
                await self._retry(row, f"{type(err).__name__}: {err}", fields)
            else:
                await self._fail(row, f"{type(err).__name__}: {err}", fields)
            return
        now = self.clock.time()
        await self.store.finish(row.id, self.node, OutboxState.SENT, now)
        self._count(row.channel, DeliveryOutcome.SENT)
        _log.info("alert.notified", status=notification.status, **fields)

    async def _retry(self, row: OutboxRow, error: str, fields: dict[str, Any]) -> None:
        delay = backoff(row.attempts, self.retry_initial, self.retry_max, self._rand)
        now = self.clock.time()
        await self.store.finish(
            row.id, self.node, OutboxState.QUEUED, now, error=error, next_at=now + delay
        )
        self._count(row.channel, DeliveryOutcome.RETRY)
        _log.warning("alert.delivery_retry", error=error, retry_in_s=round(delay, 3), **fields)

    async def _fail(self, row: OutboxRow, error: str, fields: dict[str, Any]) -> None:
        await self.store.finish(
            row.id, self.node, OutboxState.FAILED, self.clock.time(), error=error
        )
        self._count(row.channel, DeliveryOutcome.FAILED)
        _log.error("alert.delivery_failed", error=error, **fields)

    def _count(self, channel: str, outcome: str) -> None:
        if self.counter is not None:
            self.counter.count_notification(channel, outcome)
