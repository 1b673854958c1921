"""AI spend from the stored replies: the 24 h total and the top users, on SQLite and
PostgreSQL, read by the alert engine once per evaluation interval (injected clock)."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from chatwatch.alerts.defaults import DEFAULT_RULES
from chatwatch.alerts.engine import AlertEngine, EngineOptions
from chatwatch.alerts.rules import RuleSource, build_rule
from chatwatch.alerts.signals_port import StaticReading
from chatwatch.alerts.store import AlertStore
from chatwatch.alerts.stored_signals import StoredSignalsSource
from chatwatch.clock import FakeClock
from chatwatch.store.chat_store import ChatStore
from chatwatch.store.db import Database
from chatwatch.store.spend import spend_by_user
from tests.alerts.conftest import FakeSource
from tests.observe.logstore_fixtures import migrated_db

DAY = 86_400.0


def base_time() -> float:
    """A time far from every other test's rows (the PostgreSQL database is shared)."""
    return 2_000_000_000.0 + random.randrange(10**5) * 3 * DAY


async def user(store: ChatStore, now: float) -> tuple[str, str]:
    session_id, user_id = f"s-{uuid.uuid4().hex}", f"u-{uuid.uuid4().hex}"
    await store.create_session(session_id, user_id, "guest", now)
    return session_id, user_id


async def reply(store: ChatStore, session_id: str, cost: float, now: float) -> None:
    await store.add_message(
        session_id=session_id,
        role="assistant",
        correlation_id=uuid.uuid4().hex,
        content="ok",
        now=now,
        cost_usd=cost,
    )


async def test_spend_by_user_sums_the_last_day_and_ranks_users(any_db: Database) -> None:
    """Replies inside [now-24h, now) count, older ones do not; users come largest first."""
    now = base_time()
    store = ChatStore(any_db)
    (s1, u1), (s2, u2) = await user(store, now - 2 * DAY), await user(store, now - 2 * DAY)
    await reply(store, s1, 5.0, now - DAY - 1)  # a day and a second old: out
    await reply(store, s1, 1.5, now - DAY)
    await reply(store, s1, 0.5, now - 10)
    await reply(store, s2, 3.0, now - 60)
    spend = await spend_by_user(any_db, now - DAY, now)
    assert (spend.total, spend.users) == (5.0, [(u2, 3.0), (u1, 2.0)])


async def test_spend_by_user_keeps_only_the_top_n(any_db: Database) -> None:
    """With a limit of 2 of 4 spending users, the two biggest remain; the total has all."""
    now = base_time()
    store = ChatStore(any_db)
    users = []
    for cost in (1.0, 4.0, 2.0, 3.0):
        session_id, user_id = await user(store, now - 100)
        await reply(store, session_id, cost, now - 50)
        users.append(user_id)
    spend = await spend_by_user(any_db, now - DAY, now, limit=2)
    assert (spend.total, [c for _, c in spend.users]) == (10.0, [4.0, 3.0])


async def test_stored_source_queries_once_per_interval(any_db: Database) -> None:
    """Reads within the interval reuse one query; after it a new reply shows up."""
    clock = FakeClock(base_time())
    store = ChatStore(any_db)
    session_id, user_id = await user(store, clock.time() - 100)
    await reply(store, session_id, 2.0, clock.time() - 50)
    inner = FakeSource()
    inner.set("ai_cost_usd_24h", 999.0)  # the in-process figure, replaced by the stored one
    source = StoredSignalsSource(inner, any_db, clock, max_age=15.0)
    await source.refresh()
    await reply(store, session_id, 1.0, clock.time() - 1)
    clock.advance(14.0)
    await source.refresh()
    first = _values(source.read())
    clock.advance(1.0)
    await source.refresh()
    second = _values(source.read())
    assert source.queries == 2
    assert first == {(): 2.0, (("user_id", user_id),): 2.0}
    assert second == {(): 3.0, (("user_id", user_id),): 3.0}


def _values(reading: StaticReading) -> dict[tuple[tuple[str, str], ...], float | None]:
    return {tuple(sorted(s.labels.items())): s.value for s in reading.series("ai_cost_usd_24h")}


async def test_high_ai_cost_per_user_fires_for_one_user_only(any_db: Database) -> None:
    """Enabled, HighAICostPerUser fires labelled by the user over $20; HighAICost stays calm."""
    clock = FakeClock(base_time())
    store = ChatStore(any_db)
    (s1, big), (s2, _small) = await user(store, clock.time()), await user(store, clock.time())
    await reply(store, s1, 25.0, clock.time() - 10)
    await reply(store, s2, 1.0, clock.time() - 10)
    rules = [
        build_rule({"name": name, **spec}, source=RuleSource.DEFAULT)
        for name, spec in DEFAULT_RULES.items()
        if name in ("HighAICost", "HighAICostPerUser")
    ]
    assert [r.enabled for r in rules] == [True, False]
    per_user = build_rule(
        {"name": "HighAICostPerUser", **DEFAULT_RULES["HighAICostPerUser"], "enabled": True}
    )
    source = StoredSignalsSource(FakeSource(), any_db, clock, max_age=15.0)
    engine = AlertEngine(
        AlertStore(any_db),
        source,
        clock,
        rules=[rules[0], per_user],
        options=EngineOptions(group_wait=0.0, evaluation_interval=15.0),
    )
    await engine.start(background=False)
    try:
        await engine.evaluate()
        firing = [(a.rule, a.labels.get("user_id"), a.state.value) for a in engine.active()]
    finally:
        await engine.stop()
    assert firing == [("HighAICostPerUser", big, "firing")]


async def test_a_failed_query_leaves_the_other_signals_readable(tmp_path: Path) -> None:
    """With the database gone (disposed, file removed) refresh does not raise; the inner
    signals are still read and the stored spend is absent (no data), not stale."""
    clock = FakeClock(base_time())
    inner = FakeSource()
    inner.set("error_rate", 0.5)
    async with migrated_db("sqlite", tmp_path) as db:
        source = StoredSignalsSource(inner, db, clock, max_age=15.0)
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("DROP TABLE messages")
        await source.refresh()
        reading = source.read()
    assert [s.value for s in reading.series("error_rate")] == [0.5]
    assert [s.value for s in reading.series("ai_cost_usd_24h")] == []
