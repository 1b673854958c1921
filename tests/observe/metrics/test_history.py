"""Metrics history against real SQLite and PostgreSQL: storing, retention, and queries.

PostgreSQL is required under CI=true and skipped with the reason otherwise (tests/fakes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatwatch.clock import FakeClock
from chatwatch.observe.metrics.history import MetricsHistory
from chatwatch.store.db import Database
from tests.observe.logstore_fixtures import migrated_db


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of each kind (PostgreSQL in a schema of this test's own)."""
    async with migrated_db(request.param, tmp_path) as database:
        yield database


def history_of(db: Database, clock: FakeClock, retention: float = 3600) -> MetricsHistory:
    """A history whose snapshots number themselves, so each row is recognisable."""
    n = {"i": 0}

    def snapshot() -> dict[str, Any]:
        n["i"] += 1
        return {"n": n["i"], "messages_per_second": 0.5, "ai_p95_seconds": None}

    return MetricsHistory(db, clock, snapshot, interval=60, retention=retention)


async def test_snapshots_are_stored_and_served_oldest_first(db: Database, clock: FakeClock):
    """Each record() stores one row; query returns them oldest first with their figures."""
    history = history_of(db, clock)
    for _ in range(3):
        await history.record()
        clock.advance(60)
    items = await history.query()
    assert [i["n"] for i in items] == [1, 2, 3]
    assert items[0]["timestamp"] == clock.time() - 180
    assert items[0]["ai_p95_seconds"] is None


async def test_retention_deletes_only_older_snapshots(db: Database, clock: FakeClock):
    """prune() removes rows older than the retention and keeps the rest."""
    history = history_of(db, clock, retention=600)
    for _ in range(20):  # one a minute for 20 minutes
        await history.record()
        clock.advance(60)
    removed = await history.prune()
    assert removed == 10
    items = await history.query()
    assert [i["n"] for i in items] == list(range(11, 21))
    assert all(i["timestamp"] >= clock.time() - 600 for i in items)


async def test_since_until_and_limit(db: Database, clock: FakeClock):
    """since/until are inclusive; limit keeps the first from since, else the latest."""
    start = clock.time()
    history = history_of(db, clock)
    for _ in range(10):
        await history.record()
        clock.advance(60)
    got = await history.query(since=start + 120, until=start + 300)
    assert [i["n"] for i in got] == [3, 4, 5, 6]
    assert [i["n"] for i in await history.query(since=start + 120, limit=2)] == [3, 4]
    assert [i["n"] for i in await history.query(limit=3)] == [8, 9, 10]
    with pytest.raises(ValueError):
        await history.query(limit=0)


async def test_run_records_every_interval_and_survives_a_failure(db: Database, clock: FakeClock):
    """The loop stores a snapshot per interval; a snapshot that raises is skipped, not fatal."""
    calls = {"n": 0}

    def snapshot() -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return {"n": calls["n"]}

    async def fake_sleep(seconds: float) -> None:
        clock.advance(seconds)
        if calls["n"] >= 4:
            raise _Stop

    class _Stop(Exception):
        pass

    history = MetricsHistory(db, clock, snapshot, interval=60, retention=3600, sleep=fake_sleep)
    with pytest.raises(_Stop):
        await history.run()
    assert [i["n"] for i in await history.query()] == [1, 3, 4]
