"""Fixtures for the metrics tests: a fake clock, a fresh registry and metrics listening on a bus."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from chatwatch.clock import FakeClock
from chatwatch.config import MetricsSettings
from chatwatch.events import EventBus
from chatwatch.observe.metrics.recorder import ChatMetrics


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
    assert not errors, f"a metrics listener raised: {errors!r}"


@pytest.fixture
def metrics(registry: CollectorRegistry, clock: FakeClock, bus: EventBus) -> ChatMetrics:
    """ChatMetrics with a 300 s window, attached to ``bus``."""
    m = ChatMetrics(registry, clock, MetricsSettings(window=300))
    m.attach(bus)
    return m
