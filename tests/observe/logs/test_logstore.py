"""The log store on SQLite and PostgreSQL: ingest, overflow, search, stats, retention."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from chatwatch.clock import FakeClock
from chatwatch.observe.logs.pipeline import LogMetrics, get_logger
from chatwatch.observe.logs.query import LogFilters, parse_filters
from chatwatch.observe.logs.store import LogStore
from chatwatch.store.db import Database
from tests.observe.logcapture import capture_logging
from tests.observe.logstore_fixtures import make_record, migrated_db, new_store

DAY = 86400.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of each dialect."""
    async with migrated_db(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def log_metrics() -> LogMetrics:
    """Log metrics on a registry of the test's own."""
    return LogMetrics(CollectorRegistry())


@pytest.fixture
async def store(db: Database, clock: FakeClock, log_metrics: LogMetrics) -> AsyncIterator[LogStore]:
    """A started LogStore, closed after the test."""
    logstore = new_store(db, clock, log_metrics)
    await logstore.start()
    yield logstore
    await logstore.close()


def dropped(metrics: LogMetrics) -> float:
    """chat_log_records_dropped_total."""
    return float(metrics.dropped._value.get())


async def find(store: LogStore, clock: FakeClock, **params: str) -> list[dict[str, Any]]:
    """Items found by query parameters as the API receives them."""
    filters, cursor, limit = parse_filters(params, clock.time())
    items: list[dict[str, Any]] = (await store.search(filters, cursor, limit))["items"]
    return items


async def test_records_are_stored_and_found_newest_first(store: LogStore, clock: FakeClock) -> None:
    """Submitted records come back whole, newest first, with an id."""
    for i in range(5):
        store.submit(make_record("message.sent", clock.time() + i, n=i))
    items = await find(store, clock)
    assert [item["n"] for item in items] == [4, 3, 2, 1, 0]
    assert items[0]["event"] == "message.sent"
    assert isinstance(items[0]["id"], str)


async def test_correlation_id_finds_its_trail_and_nothing_else(
    store: LogStore, clock: FakeClock
) -> None:
    """A correlation id finds every record of its message and none of another's."""
    now = clock.time()
    trail = ["message.received", "ai.request.started", "ai.request.completed", "message.sent"]
    for i, event in enumerate(trail):
        store.submit(make_record(event, now + i, correlation_id="a1b2c3d4e5f6a7b8"))
        store.submit(make_record(event, now + i, correlation_id="a1b2c3d4e5f6a7b9"))
    store.submit(make_record("message.sent", now, correlation_id="a1b2c3d4e5f6a7b8-x"))
    items = await find(store, clock, correlation_id="a1b2c3d4e5f6a7b8")
    assert [i["event"] for i in items] == trail[::-1]
    assert {i["correlation_id"] for i in items} == {"a1b2c3d4e5f6a7b8"}


async def test_client_supplied_correlation_id_with_punctuation(
    store: LogStore, clock: FakeClock
) -> None:
    """A correlation id with dots and dashes is matched exactly, not as loose words."""
    store.submit(make_record("a", clock.time(), correlation_id="req-1.abc"))
    store.submit(make_record("b", clock.time(), correlation_id="abc-req-1"))
    items = await find(store, clock, correlation_id="req-1.abc")
    assert [i["event"] for i in items] == ["a"]


async def test_filters_combine(store: LogStore, clock: FakeClock) -> None:
    """level, component, event, family, user, session and time filters all hold together."""
    t = clock.time()
    store.submit(make_record("security.auth_failed", t, level="warning", component="security"))
    store.submit(make_record("security.admin_denied", t + 1, level="warning", user_id="u1"))
    store.submit(make_record("security.admin_denied", t + 2, level="error", user_id="u1"))
    store.submit(make_record("message.sent", t + 3, level="warning", user_id="u1", session_id="s1"))
    store.submit(make_record("security.rate_limited", t + 4, user_id="u1", session_id="s1"))

    async def events(**params: str) -> list[object]:
        return [i["event"] for i in await find(store, clock, **params)]

    assert await events(event="security.*") == [
        "security.rate_limited",
        "security.admin_denied",
        "security.admin_denied",
        "security.auth_failed",
    ]
    assert await events(event="security.*", level="warning") == [
        "security.admin_denied",
        "security.auth_failed",
    ]
    assert await events(event="security.admin_denied", level="warning,error", user_id="u1") == [
        "security.admin_denied",
        "security.admin_denied",
    ]
    assert await events(component="security") == ["security.auth_failed"]
    assert await events(session_id="s1", level="warning") == ["message.sent"]
    assert await events(user_id="u1", since=str(t + 2), until=str(t + 4)) == [
        "message.sent",
        "security.admin_denied",
    ]


async def test_family_filter_does_not_treat_underscore_as_wildcard(
    store: LogStore, clock: FakeClock
) -> None:
    """event=a_b.* matches the a_b family only, not aXb."""
    store.submit(make_record("a_b.x", clock.time()))
    store.submit(make_record("aXb.x", clock.time()))
    assert [i["event"] for i in await find(store, clock, event="a_b.*")] == ["a_b.x"]


async def test_full_text_over_event_and_message(store: LogStore, clock: FakeClock) -> None:
    """q matches words of event names and messages: words, phrases, prefixes, OR, NOT."""
    t = clock.time()
    store.submit(make_record("ai.request.completed", t, message="reply from upstream"))
    store.submit(make_record("ai.request.failed", t + 1, message="upstream timeout after 30s"))
    store.submit(make_record("log.httpx", t + 2, message="HTTP Request: POST gpt-4o-mini"))
    store.submit(make_record("security.auth_failed", t + 3, detail="invalid token signature"))

    async def events(q: str) -> list[object]:
        return [i["event"] for i in await find(store, clock, q=q)]

    assert await events("upstream") == ["ai.request.failed", "ai.request.completed"]
    assert await events("ai.request") == ["ai.request.failed", "ai.request.completed"]
    assert await events('"upstream timeout"') == ["ai.request.failed"]
    assert await events("upstream -timeout") == ["ai.request.completed"]
    assert await events("upstream AND NOT timeout") == ["ai.request.completed"]
    assert await events("time*") == ["ai.request.failed"]
    assert await events("auth_failed OR gpt-4o") == ["security.auth_failed", "log.httpx"]
    assert await events("(signature OR reply) request") == ["ai.request.completed"]
    assert await events("nothing-like-this") == []


async def test_cursor_pages_cover_everything_once(store: LogStore, clock: FakeClock) -> None:
    """Following next_cursor visits every record once, newest first, then stops."""
    for i in range(23):
        store.submit(make_record("e", clock.time() + i * 0.001, n=i))
    seen: list[object] = []
    cursor = None
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        filters, cursor_id, limit = parse_filters(params, clock.time())
        page = await store.search(filters, cursor_id, limit)
        seen += [item["n"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(22, -1, -1))


async def test_queue_overflow_counts_drops_and_keeps_the_rest(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """Past queue_size records are dropped and counted; the queued ones are all stored."""
    store = new_store(db, clock, log_metrics, queue_size=5)
    for i in range(8):
        store.submit(make_record("e", clock.time(), n=i))
    assert dropped(log_metrics) == 3
    await store.close()
    items = await find(store, clock)
    assert sorted(item["n"] for item in items) == [0, 1, 2, 3, 4]


def shed(metrics: LogMetrics, level: str) -> float:
    """chat_log_records_shed_total{level}."""
    return float(metrics.shed.labels(level)._value.get())


async def test_a_full_queue_sheds_info_records_for_errors(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """With the queue full of info records, every error submitted after is still stored.

    Tried before issue 8: 10 info records then 4 errors into a queue of 10 stored the
    info records and dropped all 4 errors.
    """
    store = new_store(db, clock, log_metrics, queue_size=10)
    for i in range(10):
        store.submit(make_record("message.received", clock.time(), n=i))
    for i in range(4):
        store.submit(make_record("error.unhandled", clock.time(), level="error", n=100 + i))
    assert dropped(log_metrics) == 4
    assert shed(log_metrics, "info") == 4
    assert shed(log_metrics, "error") == 0
    await store.close()
    items = await find(store, clock, limit="100")
    assert sorted(i["n"] for i in items if i["level"] == "error") == [100, 101, 102, 103]
    # The oldest info records made room, the newer ones stay, in order.
    assert sorted(i["n"] for i in items if i["level"] == "info") == [4, 5, 6, 7, 8, 9]


async def test_shedding_takes_the_least_valuable_first(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """Abusive-source records go before other info, info before warnings; errors stay."""
    store = new_store(db, clock, log_metrics, queue_size=4)
    now = clock.time()
    store.submit(make_record("connection.opened", now, n=1))
    store.submit(make_record("message.rejected", now, n=2, level="warning"))
    store.submit(make_record("security.rate_limited", now, n=3))
    store.submit(make_record("ai.request.failed", now, n=4, level="warning"))
    # Full. An info record evicts the noisy info (3); the next info finds nothing lower.
    store.submit(make_record("message.received", now, n=5))
    store.submit(make_record("message.received", now, n=6))
    # A warning evicts the oldest info (1), the next one the last info (5); then an
    # error evicts the noisy warning (2) before the plain one (4).
    store.submit(make_record("ai.request.retried", now, n=7, level="warning"))
    store.submit(make_record("ai.request.retried", now, n=8, level="warning"))
    store.submit(make_record("error.unhandled", now, n=9, level="error"))
    await store.close()
    kept = sorted(i["n"] for i in await find(store, clock, limit="100"))
    assert kept == [4, 7, 8, 9]
    assert dropped(log_metrics) == 5
    assert (shed(log_metrics, "info"), shed(log_metrics, "warning")) == (4, 1)


async def test_a_queue_full_of_errors_refuses_more_and_counts_them(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """Errors are never evicted: when only errors are queued, the newcomer is dropped."""
    store = new_store(db, clock, log_metrics, queue_size=3)
    for i in range(5):
        store.submit(make_record("error.unhandled", clock.time(), level="error", n=i))
    assert (dropped(log_metrics), shed(log_metrics, "error")) == (2, 2)
    assert store.pending == 3
    await store.close()
    assert sorted(i["n"] for i in await find(store, clock)) == [0, 1, 2]


async def test_shedding_from_many_threads_loses_nothing_uncounted(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """Threads flooding a small queue while it drains: stored + dropped = submitted."""
    store = new_store(db, clock, log_metrics, queue_size=50, batch_size=20)
    await store.start()
    levels = ("info", "debug", "warning", "error")

    def work(k: int) -> None:
        for i in range(400):
            store.submit(make_record("flood", clock.time(), level=levels[(i + k) % 4], n=i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    await asyncio.gather(*(asyncio.to_thread(t.join) for t in threads))
    await store.close()
    stored = log_metrics.stored._value.get()
    assert stored + dropped(log_metrics) == 1600
    assert store.pending == 0
    stats = await store.stats(since=clock.time() - 60, until=clock.time() + 60)
    assert stats["total"] == stored


async def test_submit_from_another_thread(store: LogStore, clock: FakeClock) -> None:
    """Records submitted from a non-loop thread are stored too."""

    def work() -> None:
        for i in range(120):
            store.submit(make_record("thread", clock.time(), n=i))

    thread = threading.Thread(target=work)
    thread.start()
    await asyncio.to_thread(thread.join)
    items = await find(store, clock, limit="1000")
    assert len(items) == 120


async def test_close_writes_what_is_queued(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """Shutdown flushes the queue; later submissions are counted as dropped."""
    store = new_store(db, clock, log_metrics)
    await store.start()
    for i in range(30):
        store.submit(make_record("e", clock.time(), n=i))
    await store.close()
    store.submit(make_record("late", clock.time()))
    assert dropped(log_metrics) == 1
    assert len(await find(store, clock)) == 30
    assert log_metrics.stored._value.get() == 30


async def test_id_clash_between_writers_is_retried(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """Two writers with the same node and timestamps both get their records stored."""
    first, second = new_store(db, clock, log_metrics), new_store(db, clock, log_metrics)
    second._node = first._node
    for store in (first, second):
        store.submit(make_record("clash", clock.time()))
        await store.flush()
    assert len(await find(first, clock)) == 2
    assert dropped(log_metrics) == 0


async def test_write_failure_drops_and_counts(
    tmp_path: Path, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """When writes keep failing the batch is dropped, counted and reported on stdout only."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # never migrated
    store = new_store(db, clock, log_metrics)
    with capture_logging() as cap:
        store.submit(make_record("e", clock.time()))
        store.submit(make_record("e", clock.time()))
        await store.flush()
    await db.dispose()
    assert dropped(log_metrics) == 2
    (failure,) = cap.events("logstore.write_failed")
    assert failure["records"] == 2
    assert failure["error.type"] == "sqlalchemy.exc.OperationalError"
    assert cap.stored == []


async def test_retention_deletes_only_expired_records(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """Records older than retention_days go, in chunks; newer ones and their text stay."""
    store = new_store(db, clock, log_metrics, retention_days=7, delete_chunk=3)
    now = clock.time()
    for i in range(7):
        store.submit(make_record("old", now - 8 * DAY + i, message="ancient words"))
    store.submit(make_record("recent", now - 6 * DAY, message="fresh words"))
    await store.flush()
    assert await store.purge_expired() == 7
    assert [i["event"] for i in await find(store, clock)] == ["recent"]
    assert await find(store, clock, q="ancient") == []
    clock.advance(2 * DAY)
    assert await store.purge_expired() == 1
    assert await find(store, clock, q="words") == []


async def test_retention_leaves_the_search_index_consistent(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """After a purge the full-text index agrees with the table (FTS5 integrity check)."""
    store = new_store(db, clock, log_metrics, retention_days=1, delete_chunk=5)
    start = clock.time() - 2 * DAY
    for hour in range(40):  # 48 h old down to 9 h old
        store.submit(make_record("e", start + hour * 3600, message=f"word{hour}"))
    await store.flush()
    assert await store.purge_expired() == 24
    if db.dialect == "sqlite":
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO log_fts(log_fts) VALUES ('integrity-check')"))
    assert len(await find(store, clock, limit="100")) == 16
    assert await find(store, clock, q="word3") == []
    assert len(await find(store, clock, q="word30")) == 1


async def test_stats_counts_and_error_rate(store: LogStore, clock: FakeClock) -> None:
    """Stats count by level, component and family, and give the error rate per bucket."""
    t = clock.time()
    store.submit(make_record("message.sent", t - 3500, component="chat"))
    store.submit(make_record("message.rejected", t - 3500, level="warning", component="chat"))
    store.submit(make_record("ai.request.failed", t - 100, level="error", component="ai"))
    store.submit(make_record("ai.request.completed", t - 100, component="ai"))
    store.submit(make_record("too.old", t - 7200))
    stats = await store.stats(since=t - 3600, until=t)
    assert stats["total"] == 4
    assert stats["by_level"] == {"debug": 0, "info": 2, "warning": 1, "error": 1, "critical": 0}
    assert stats["by_component"] == {"chat": 2, "ai": 2}
    assert stats["by_event_family"] == {"message": 2, "ai": 2}
    rate = stats["error_rate"]
    assert rate["overall"] == 0.25
    assert rate["bucket_seconds"] == 60
    busy = [b for b in rate["buckets"] if b["total"]]
    assert [(b["total"], b["errors"], b["rate"]) for b in busy] == [(2, 0, 0.0), (2, 1, 0.5)]
    assert all(b["rate"] is None for b in rate["buckets"] if not b["total"])


async def test_search_filters_dataclass_directly(store: LogStore, clock: FakeClock) -> None:
    """search() accepts LogFilters built in code, not only from query parameters."""
    store.submit(make_record("x.y", clock.time(), level="error"))
    page = await store.search(LogFilters(levels=("error",)), None, 10)
    assert [i["event"] for i in page["items"]] == ["x.y"]
    assert page["next_cursor"] is None


async def test_pipeline_overflow_still_reaches_stdout(
    db: Database, clock: FakeClock, log_metrics: LogMetrics
) -> None:
    """With the store queue full, every record still reaches stdout and drops are counted."""
    store = new_store(db, clock, log_metrics, queue_size=4)
    with capture_logging(sink=store.submit, metrics=log_metrics) as cap:
        for i in range(10):
            get_logger().info("burst", n=i)
    await store.close()
    assert [r["n"] for r in cap.lines()] == list(range(10))
    assert dropped(log_metrics) == 6
    assert sorted(item["n"] for item in await find(store, clock)) == [0, 1, 2, 3]
