"""Fixtures for the observability tests: a fake clock, a fresh registry, a real hub, and
metrics, security and signals listening on one bus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from chatwatch.clock import FakeClock
from chatwatch.config import MetricsSettings
from chatwatch.events import EventBus, attach
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.security import SecurityMonitor
from chatwatch.observe.signals import Signals
from tests.observe.live import LiveChat


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test says so."""
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own: no sample leaks between tests."""
    return CollectorRegistry()


@pytest.fixture
def bus() -> Iterator[EventBus]:
    """An event bus whose listener errors fail the test (the bus itself swallows them)."""
    errors: list[BaseException] = []
    yield EventBus(on_listener_error=lambda _event, exc: errors.append(exc))
    assert not errors, f"a listener raised: {errors!r}"


@pytest.fixture
def live(bus: EventBus, clock: FakeClock) -> LiveChat:
    """A real hub on the bus: the one owner of live connections, sessions and users."""
    return LiveChat(bus, clock)


@pytest.fixture
def metrics(
    registry: CollectorRegistry, clock: FakeClock, bus: EventBus, live: LiveChat
) -> ChatMetrics:
    """ChatMetrics with a 300 s window, reading live counts from the hub, attached to ``bus``."""
    m = ChatMetrics(registry, clock, MetricsSettings(window=300), live=live.hub)
    attach(bus, m)
    return m


@pytest.fixture
def security(bus: EventBus, clock: FakeClock) -> SecurityMonitor:
    """A security monitor on the bus (60 s window)."""
    return SecurityMonitor(bus, clock)


@pytest.fixture
def signals(metrics: ChatMetrics, security: SecurityMonitor) -> Signals:
    """The signals over ``metrics`` and ``security``."""
    return Signals(metrics, security)
