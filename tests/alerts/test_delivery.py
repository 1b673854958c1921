"""Delivery through the stored outbox to real loopback receivers: retries with back-off,
permanent failures, timeouts, restarts, HMAC, idempotency keys and exclusive claims."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from chatwatch.alerts.channels import build_channel
from chatwatch.alerts.channels.base import Channel
from chatwatch.alerts.notification import (
    AlertView,
    Notification,
    NotificationKind,
    new_notification_id,
)
from chatwatch.alerts.outbox import Dispatcher, backoff
from chatwatch.alerts.store import AlertStore, OutboxState
from chatwatch.clock import FakeClock
from chatwatch.config import AlertChannelSettings, MetricsSettings
from chatwatch.events import EventBus
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.store.db import Database
from tests.alerts.receiver import Receiver, run_receiver
from tests.fakes.services import unused_tcp_port
from tests.observe.live import LiveChat
from tests.observe.logcapture import capture_logging

SECRET = "webhook-secret-0123456789"


def notification(channel: str = "hook", alerts: int = 1, status: str = "firing") -> Notification:
    """A notification of ``alerts`` per-IP alerts."""
    views = tuple(
        AlertView(
            id=f"a{i}",
            status=status,
            labels={
                "alertname": "AuthFailureBurstByIP",
                "severity": "high",
                "type": "security",
                "client_ip": f"203.0.113.{i}",
            },
            annotations={
                "summary": "More than 10 authentication failures a minute from one address",
                "value": "12",
            },
            starts_at=1_800_000_000.0,
            ends_at=None if status == "firing" else 1_800_000_060.0,
            fingerprint=f"{i:016x}",
            url=f"http://chat.example/api/v1/admin/chat/alerts/a{i}",
        )
        for i in range(alerts)
    )
    return Notification(
        id=new_notification_id(),
        channel=channel,
        kind=NotificationKind.FIRING if status == "firing" else NotificationKind.RESOLVED,
        group_key='{}:{alertname="AuthFailureBurstByIP"}',
        group_labels={"alertname": "AuthFailureBurstByIP"},
        alerts=views,
        external_url="http://chat.example",
        created_at=1_800_000_000.0,
    )


_OPEN: list[Channel] = []


def webhook(
    url: str, *, secret: str | None = None, timeout: float = 5.0, name: str = "hook"
) -> Channel:
    settings = AlertChannelSettings(name=name, kind="webhook", url=url, secret=secret)
    channel = build_channel(settings, timeout=timeout)
    _OPEN.append(channel)
    return channel


@pytest.fixture(autouse=True)
async def close_channels() -> AsyncIterator[None]:
    """Every channel a test built is closed (its HTTP client) when the test ends."""
    yield
    while _OPEN:
        await _OPEN.pop().aclose()


def dispatcher(
    db: Database,
    clock: FakeClock,
    channel: Channel,
    metrics: ChatMetrics | None = None,
    node: str = "n1",
    **kw: object,
) -> Dispatcher:
    options: dict[str, object] = {
        "attempts": 4,
        "retry_initial": 1.0,
        "retry_max": 30.0,
        "rand": lambda: 0.0,
    }
    options.update(kw)
    return Dispatcher(
        AlertStore(db), {channel.name: channel}, clock, counter=metrics, node=node, **options
    )  # type: ignore[arg-type]


def counted(registry: CollectorRegistry, outcome: str, channel: str = "hook") -> float:
    return (
        registry.get_sample_value(
            "chat_alert_notifications_total", {"channel": channel, "outcome": outcome}
        )
        or 0.0
    )


@pytest.fixture
def metrics(clock: FakeClock) -> ChatMetrics:
    return ChatMetrics(
        CollectorRegistry(), clock, MetricsSettings(), live=LiveChat(EventBus(), clock).hub
    )


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    """1, 2, 4, 8 … capped at retry_max, each scaled into [0.5, 1) by the jitter."""
    low = [backoff(n, 1.0, 10.0, lambda: 0.0) for n in range(1, 7)]
    high = [backoff(n, 1.0, 10.0, lambda: 0.999999) for n in range(1, 7)]
    assert low == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [round(h, 3) for h in high] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_webhook_is_alertmanager_v4_signed_and_keyed(db: Database, clock: FakeClock) -> None:
    """The receiver gets an Alertmanager v4 body, verifies the HMAC over the exact bytes,
    and sees the notification id as Idempotency-Key."""
    async with run_receiver() as rx:
        n = notification(alerts=2)
        await AlertStore(db).enqueue([n], [], clock.time())
        await dispatcher(db, clock, webhook(rx.url, secret=SECRET)).dispatch_once()
    [req] = rx.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-chatwatch-signature"], expected)
    assert req.headers["idempotency-key"] == n.id
    body = req.json()
    assert {
        k: body[k] for k in ("version", "status", "receiver", "groupKey", "truncatedAlerts")
    } == {
        "version": "4",
        "status": "firing",
        "receiver": "hook",
        "groupKey": '{}:{alertname="AuthFailureBurstByIP"}',
        "truncatedAlerts": 0,
    }
    assert body["groupLabels"] == {"alertname": "AuthFailureBurstByIP"}
    assert body["commonLabels"] == {
        "alertname": "AuthFailureBurstByIP",
        "severity": "high",
        "type": "security",
    }
    assert body["externalURL"] == "http://chat.example"
    first = body["alerts"][0]
    assert set(first) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert (first["startsAt"], first["endsAt"]) == (
        "2027-01-15T08:00:00.000000Z",
        "0001-01-01T00:00:00Z",
    )


async def test_no_signature_without_a_secret(db: Database, clock: FakeClock) -> None:
    """Without ``secret`` there is no signature header (and still an Idempotency-Key)."""
    async with run_receiver() as rx:
        await AlertStore(db).enqueue([notification()], [], clock.time())
        await dispatcher(db, clock, webhook(rx.url)).dispatch_once()
    assert "x-chatwatch-signature" not in rx.requests[0].headers
    assert rx.requests[0].headers["idempotency-key"]


async def test_500_then_200_retries_with_the_same_key(
    db: Database, clock: FakeClock, metrics: ChatMetrics
) -> None:
    """A 500 is retried after the back-off (not before), with the same Idempotency-Key,
    body and signature; then it is sent. Counted retry=1, sent=1."""
    async with run_receiver(Receiver(script=[(500, 0.0)])) as rx:
        await AlertStore(db).enqueue([notification()], [], clock.time())
        d = dispatcher(db, clock, webhook(rx.url, secret=SECRET), metrics)
        await d.dispatch_once()
        clock.advance(0.49)
        await d.dispatch_once()
        assert len(rx.requests) == 1
        clock.advance(0.01)
        await d.dispatch_once()
    first, second = rx.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert (first.body, first.headers["x-chatwatch-signature"]) == (
        second.body,
        second.headers["x-chatwatch-signature"],
    )
    [row], _ = await AlertStore(db).notifications(10)
    assert (row.state, row.attempts) == (OutboxState.SENT, 2)
    assert (counted(metrics.registry, "retry"), counted(metrics.registry, "sent")) == (1.0, 1.0)


async def test_400_fails_at_once_and_is_visible(
    db: Database, clock: FakeClock, metrics: ChatMetrics
) -> None:
    """A 4xx is not retried: the notification is failed after one attempt, with the reason
    in the API listing, an ``alert.delivery_failed`` error log and outcome=failed."""
    async with run_receiver(Receiver(default=400)) as rx:
        await AlertStore(db).enqueue([notification()], [], clock.time())
        with capture_logging() as logs:
            d = dispatcher(db, clock, webhook(rx.url), metrics)
            await d.dispatch_once()
            clock.advance(3600)
            await d.dispatch_once()
    assert len(rx.requests) == 1
    [row], _ = await AlertStore(db).notifications(10, state=OutboxState.FAILED)
    assert row.attempts == 1 and row.last_error is not None and "HTTP 400" in row.last_error
    [record] = logs.events("alert.delivery_failed")
    assert record["level"] == "error" and record["channel"] == "hook"
    assert counted(metrics.registry, "failed") == 1.0


async def test_receiver_down_is_retried_then_failed_after_bounded_attempts(
    db: Database, clock: FakeClock, metrics: ChatMetrics
) -> None:
    """Nothing listening: each attempt fails to connect and is retried at 0.5, 1, 2 s (back-off
    with the jitter at its low end); after 4 attempts the notification is failed."""
    url = f"http://127.0.0.1:{unused_tcp_port()}/hook"
    store = AlertStore(db)
    await store.enqueue([notification()], [], clock.time())
    d = dispatcher(db, clock, webhook(url), metrics)
    start = clock.time()
    due_times = []
    for _ in range(3):
        await d.dispatch_once()
        [row], _ = await store.notifications(1)
        due_times.append(round(row.next_attempt_at - clock.time(), 3))
        clock.advance(row.next_attempt_at - clock.time())
    await d.dispatch_once()
    [row], _ = await store.notifications(1)
    assert due_times == [0.5, 1.0, 2.0]
    assert (row.state, row.attempts) == (OutboxState.FAILED, 4)
    assert row.last_error is not None and "after 4 attempts" in row.last_error
    assert clock.time() - start == pytest.approx(3.5)
    assert (counted(metrics.registry, "retry"), counted(metrics.registry, "failed")) == (3.0, 1.0)


async def test_slow_receiver_times_out_and_is_retried(db: Database, clock: FakeClock) -> None:
    """A receiver slower than the timeout counts as down: retried, then delivered."""
    async with run_receiver(Receiver(script=[(200, 4.0)])) as rx:
        await AlertStore(db).enqueue([notification()], [], clock.time())
        d = dispatcher(db, clock, webhook(rx.url, timeout=1.5))
        await d.dispatch_once()
        [row], _ = await AlertStore(db).notifications(1)
        assert row.state == OutboxState.QUEUED and "timed out" in (row.last_error or "")
        clock.advance(1)
        await d.dispatch_once()
        [row], _ = await AlertStore(db).notifications(1)
    assert row.state == OutboxState.SENT


async def test_delivery_resumes_after_a_restart(db: Database, clock: FakeClock) -> None:
    """Queued for a retry when the process stopped: a new dispatcher over the same
    database delivers it, with the same key."""
    async with run_receiver(Receiver(script=[(503, 0.0)])) as rx:
        n = notification()
        await AlertStore(db).enqueue([n], [], clock.time())
        await dispatcher(db, clock, webhook(rx.url), node="before").dispatch_once()
        clock.advance(10)
        await dispatcher(db, clock, webhook(rx.url), node="after").dispatch_once()
    assert [r.headers["idempotency-key"] for r in rx.requests] == [n.id, n.id]
    [row], _ = await AlertStore(db).notifications(1)
    assert row.state == OutboxState.SENT


async def test_a_claim_abandoned_mid_send_is_taken_over_after_its_lease(
    db: Database, clock: FakeClock
) -> None:
    """A process that claimed a row and died holds it only for the lease; then another
    process sends it (same key), and the dead one's late outcome is ignored."""
    store = AlertStore(db)
    n = notification()
    await store.enqueue([n], [], clock.time())
    [claimed] = await store.claim("dead", clock.time(), 60.0, 10)
    assert await store.claim("alive", clock.time() + 59, 60.0, 10) == []
    async with run_receiver() as rx:
        clock.advance(61)
        await dispatcher(db, clock, webhook(rx.url), node="alive").dispatch_once()
    assert [r.headers["idempotency-key"] for r in rx.requests] == [claimed.id]
    assert not await store.finish(claimed.id, "dead", OutboxState.QUEUED, clock.time())
    [row], _ = await store.notifications(1)
    assert row.state == OutboxState.SENT


async def test_two_dispatchers_never_send_one_notification_twice(
    any_db: Database, clock: FakeClock
) -> None:
    """Two dispatchers racing over 40 stored notifications deliver each exactly once."""
    async with run_receiver() as rx:
        notes = [notification() for _ in range(40)]
        await AlertStore(any_db).enqueue(notes, [], clock.time())
        a = dispatcher(any_db, clock, webhook(rx.url), node="a", concurrency=4)
        b = dispatcher(any_db, clock, webhook(rx.url), node="b", concurrency=4)
        await asyncio.gather(
            a.dispatch_once(), b.dispatch_once(), a.dispatch_once(), b.dispatch_once()
        )
    keys = [r.headers["idempotency-key"] for r in rx.requests]
    assert sorted(keys) == sorted(n.id for n in notes)


async def test_outbox_and_alert_history_have_their_own_retention(db: Database) -> None:
    """Delivered and failed notifications go after `alerts.outbox_retention`, independently
    of the alert history's retention; queued ones are never pruned."""
    store = AlertStore(db)
    sent, failed, queued = notification(), notification(), notification()
    await store.enqueue([sent, failed, queued], [], now=1000.0)
    for row in await store.claim("n1", 1000.0, lease=30.0, limit=2):
        state = OutboxState.SENT if row.id == sent.id else OutboxState.FAILED
        assert await store.finish(row.id, "n1", state, 1000.0)
    await store.prune(before=0.0, outbox_before=999.0)  # nothing is old enough yet
    rows, _ = await store.notifications(10)
    assert len(rows) == 3
    await store.prune(before=0.0, outbox_before=2000.0)
    rows, _ = await store.notifications(10)
    assert [r.id for r in rows] == [queued.id]
