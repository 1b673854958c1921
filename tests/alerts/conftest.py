"""Fixtures for the alert tests: a fake clock and signal source, a migrated database
(SQLite, and PostgreSQL in a schema of its own), and an engine wired to recording channels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chatwatch.alerts.channels.base import Channel, DeliveryError
from chatwatch.alerts.defaults import compile_rules
from chatwatch.alerts.engine import AlertEngine, EngineOptions
from chatwatch.alerts.notification import Notification
from chatwatch.alerts.outbox import Dispatcher
from chatwatch.alerts.rules import Rule, RuleSource, build_rule
from chatwatch.alerts.signals_port import StaticReading
from chatwatch.alerts.store import AlertStore
from chatwatch.clock import FakeClock
from chatwatch.config import AlertChannelSettings, AlertsSettings
from chatwatch.store.db import Database
from tests.observe.logstore_fixtures import migrated_db


class FakeSource:
    """A signal source whose reading the test sets."""

    def __init__(self) -> None:
        self.reading = StaticReading()

    def read(self) -> StaticReading:
        return self.reading

    def set(
        self, signal: str, value: float | None, samples: float | None = None, **labels: str
    ) -> None:
        self.reading.set(signal, value, samples, **labels)

    def clear(self, signal: str) -> None:
        self.reading.data.pop(signal, None)


class RecordingChannel(Channel):
    """An in-memory channel (like httpx's MockTransport): records what it is sent and
    fails while ``failures`` holds errors to raise."""

    def __init__(self, name: str, **filters: Any) -> None:
        super().__init__(
            AlertChannelSettings(name=name, kind="webhook", url="http://unused.invalid", **filters)
        )
        self.sent: list[Notification] = []
        self.failures: list[DeliveryError] = []

    async def send(self, notification: Notification) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(notification)


def rule(
    name: str = "R", signal: str = "error_rate", op: str = ">", threshold: float = 0.5, **extra: Any
) -> Rule:
    """A rule from keyword arguments (``for_`` for ``for``)."""
    if "for_" in extra:
        extra["for"] = extra.pop("for_")
    return build_rule(
        {"name": name, "signal": signal, "op": op, "threshold": threshold, **extra},
        source=RuleSource.CONFIG,
    )


class Harness:
    """An engine over a fake source and clock, with recording channels and a dispatcher."""

    def __init__(
        self,
        db: Database,
        clock: FakeClock,
        rules: list[Rule],
        channels: list[RecordingChannel],
        **options: Any,
    ) -> None:
        self.db = db
        self.clock = clock
        self.source = FakeSource()
        self.channels = {c.name: c for c in channels}
        self.store = AlertStore(db)
        self.dispatcher = Dispatcher(
            self.store,
            self.channels,
            clock,
            attempts=3,
            retry_initial=1.0,
            retry_max=10.0,
            rand=lambda: 0.0,
        )
        opts = {"group_wait": 0.0, "evaluation_interval": 15.0, **options}
        self.engine = AlertEngine(
            self.store,
            self.source,
            clock,
            rules=rules,
            channels=self.channels,
            options=EngineOptions(**opts),
            dispatcher=self.dispatcher,
        )

    async def start(self) -> Harness:
        await self.engine.start(background=False)
        return self

    async def tick(self, advance: float = 0.0) -> None:
        """Move time, evaluate, flush due groups and deliver what is due."""
        if advance:
            self.clock.advance(advance)
        await self.engine.evaluate()
        await self.engine.flush()
        await self.dispatcher.dispatch_once()

    def sent(self, channel: str = "ops") -> list[Notification]:
        return self.channels[channel].sent

    def states(self) -> dict[str, str]:
        return {
            a.name
            + "".join(
                f"|{k}={v}" for k, v in sorted(a.labels.items()) if k == "client_ip"
            ): a.state.value
            for a in self.engine.active()
        }


HarnessFactory = Callable[..., Any]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of each kind."""
    async with migrated_db(request.param, tmp_path) as db:
        yield db


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database (for logic that does not depend on the store's kind)."""
    async with migrated_db("sqlite", tmp_path) as database:
        yield database


@pytest.fixture
def harness(db: Database, clock: FakeClock) -> Callable[..., Harness]:
    """Build a Harness over the SQLite database: ``await harness([rules], ...).start()``."""

    def make(
        rules: list[Rule], channels: list[RecordingChannel] | None = None, **options: Any
    ) -> Harness:
        return Harness(
            db,
            clock,
            rules,
            channels if channels is not None else [RecordingChannel("ops")],
            **options,
        )

    return make


def default_rules(**settings: Any) -> list[Rule]:
    """The rules in force for ``AlertsSettings(**settings)``."""
    return compile_rules(AlertsSettings(**settings))
