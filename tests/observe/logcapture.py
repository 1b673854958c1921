"""Logging configured into memory for a test, and reset afterwards."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from chatwatch.clock import Clock
from chatwatch.config import LoggingSettings
from chatwatch.observe.context import clear_context
from chatwatch.observe.logs.pipeline import LogMetrics, configure_logging, reset_logging

__all__ = ["Captured", "capture_logging"]


class Captured:
    """What the pipeline wrote: the stdout bytes and the copies handed to the store."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.stream = io.BytesIO()
        self.stored: list[dict[str, Any]] = []
        self.registry = registry
        self.metrics = LogMetrics(registry)

    @property
    def text(self) -> str:
        """Everything written to the stream."""
        return self.stream.getvalue().decode()

    def lines(self) -> list[dict[str, Any]]:
        """The stream's JSON records, one per line."""
        return [orjson.loads(line) for line in self.stream.getvalue().splitlines()]

    def events(self, name: str) -> list[dict[str, Any]]:
        """The records of one event name."""
        return [r for r in self.lines() if r.get("event") == name]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample value from this capture's registry (0 when absent)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0


@contextmanager
def capture_logging(
    *,
    clock: Clock | None = None,
    secrets: tuple[str, ...] = (),
    sink: Callable[[dict[str, Any]], None] | None = None,
    metrics: LogMetrics | None = None,
    **settings: Any,
) -> Iterator[Captured]:
    """Log into a Captured (or ``sink``) for the block; reset logging and context after."""
    captured = Captured(CollectorRegistry())
    clear_context()
    configure_logging(
        LoggingSettings(**settings),
        stream=captured.stream,
        sink=sink or captured.stored.append,
        metrics=metrics or captured.metrics,
        clock=clock,
        secrets=secrets,
    )
    try:
        yield captured
    finally:
        clear_context()
        reset_logging()
