"""The adapter from ``observe.signals`` to the engine's port, over real metrics and a real
security monitor: per-IP series, no data, and the events behind each rate."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from chatwatch.alerts.signal_adapter import SignalsSource
from chatwatch.alerts.signals_port import SIGNALS
from chatwatch.alerts.watcher import DroppedPerMinute, WatcherSource, disk_free
from chatwatch.clock import FakeClock
from chatwatch.config import MetricsSettings
from chatwatch.events import EventBus, SecurityEvent, attach
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.security import SecurityMonitor
from chatwatch.observe.signals import Signals
from tests.observe.live import LiveChat


def source() -> tuple[EventBus, SignalsSource]:
    clock = FakeClock()
    bus = EventBus()
    security = SecurityMonitor(bus, clock)
    metrics = ChatMetrics(
        CollectorRegistry(), clock, MetricsSettings(), live=LiveChat(bus, clock).hub
    )
    attach(bus, metrics)
    return bus, SignalsSource(Signals(metrics, security))


def auth_failed(ip: str) -> SecurityEvent:
    return SecurityEvent(
        type="auth_failed", client_ip=ip, user_agent="t", user_id=None, detail="bad token"
    )


async def test_every_catalogued_signal_is_read(tmp_path: Path) -> None:
    """Each signal the engine knows (but its own watchdog) comes out of a reading of the
    adapter wrapped in the watcher's source (as the app composes them)."""
    _, inner = source()

    async def backlog(created_before: float) -> int:
        return 0

    clock = FakeClock()
    src = WatcherSource(
        inner,
        clock,
        outbox_backlog=backlog,
        dropped=DroppedPerMinute(lambda: 0.0, clock),
        free_bytes=disk_free(tmp_path),
    )
    await src.refresh()
    reading = src.read()
    assert {name for name in SIGNALS if name != "watchdog" and not reading.series(name)} == set()


def test_quiet_service_rates_are_no_data_and_counts_zero() -> None:
    """With nothing happened: rates are None (no data) with 0 events behind; counts are 0."""
    _, src = source()
    reading = src.read()
    [error_rate] = reading.series("error_rate")
    [auth] = reading.series("auth_failures_per_minute")
    assert (error_rate.value, error_rate.samples) == (None, 0.0)
    assert (dict(auth.labels), auth.value) == ({}, 0.0)


def test_auth_failures_come_per_ip_as_client_ip_series() -> None:
    """Failures from two addresses: the total and one ``client_ip`` series each."""
    bus, src = source()
    for ip in ["198.51.100.7"] * 3 + ["198.51.100.8"]:
        bus.emit(auth_failed(ip))
    series = {
        tuple(sorted(s.labels.items())): s.value
        for s in src.read().series("auth_failures_per_minute")
    }
    assert series == {
        (): 4.0,
        (("client_ip", "198.51.100.7"),): 3.0,
        (("client_ip", "198.51.100.8"),): 1.0,
    }
