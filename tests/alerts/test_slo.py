"""SLO burn-rate rules over stored metrics-history rows, with an injected clock: window
sums, both windows of a pair must burn, severity per pair, no data, and validation."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert

from chatwatch.alerts.defaults import compile_rules
from chatwatch.alerts.engine import AlertEngine, EngineOptions
from chatwatch.alerts.rules import Rule, RuleError, RuleKind, build_rule
from chatwatch.alerts.slo import retention_warnings, window_counts
from chatwatch.alerts.store import AlertStore
from chatwatch.alerts.stored_signals import StoredSignalsSource
from chatwatch.clock import FakeClock
from chatwatch.config import AlertsSettings
from chatwatch.store.db import Database
from chatwatch.store.tables import metrics_history
from tests.alerts.conftest import FakeSource
from tests.alerts.test_stored_spend import base_time


def slo(**extra: object) -> Rule:
    return build_rule({"name": "Availability", "kind": "slo", "objective": 0.995, **extra})


async def history(db: Database, rows: list[tuple[float, int, int]]) -> None:
    """Store history rows of (timestamp, handled messages, service failures)."""
    values = [
        {
            "timestamp": ts,
            "data": json.dumps(
                {"interval": {"seconds": 60, "handled_messages": h, "service_failures": f}}
            ),
        }
        for ts, h, f in rows
    ]
    async with db.engine.begin() as conn:
        await conn.execute(insert(metrics_history), values)


def minutes(
    now: float, count: int, handled: int, failed: int, *, end: int = 0
) -> list[tuple[float, int, int]]:
    """One row a minute for ``count`` minutes ending ``end`` minutes before ``now``."""
    return [(now - 60.0 * (end + i), handled, failed) for i in range(count)]


async def engine_over(db: Database, clock: FakeClock, rules: list[Rule]) -> AlertEngine:
    source = StoredSignalsSource(FakeSource(), db, clock, max_age=15.0)
    engine = AlertEngine(
        AlertStore(db),
        source,
        clock,
        rules=rules,
        options=EngineOptions(group_wait=0.0, evaluation_interval=15.0),
    )
    source.rules = engine.rules
    await engine.start(background=False)
    return engine


def active(engine: AlertEngine) -> dict[str, tuple[str, str]]:
    return {a.labels["burn"]: (a.labels["severity"], a.state.value) for a in engine.active()}


async def test_window_counts_sum_rows_inside_each_window(any_db: Database) -> None:
    """A row exactly 5 min old is outside the 5 min window but inside the 1 h one."""
    now = base_time()
    await history(any_db, [(now, 10, 1), (now - 299, 10, 2), (now - 300, 10, 4)])
    await history(any_db, [(now - 3600, 99, 99), (now + 1, 99, 99)])  # both outside
    counts = await window_counts(any_db, now, [300.0, 3600.0])
    assert (counts[300.0].handled, counts[300.0].failures) == (20, 3)
    assert (counts[3600.0].handled, counts[3600.0].failures) == (30, 7)


async def test_fast_burn_fires_both_pairs_with_their_severities(any_db: Database) -> None:
    """10% failing for an hour on a 99.5% SLO burns 20×: 1h/5m is critical, 6h/30m high."""
    clock = FakeClock(base_time())
    await history(any_db, minutes(clock.time(), 60, 100, 10))
    engine = await engine_over(any_db, clock, [slo()])
    try:
        await engine.evaluate()
        assert active(engine) == {"1h/5m": ("critical", "firing"), "6h/30m": ("high", "firing")}
    finally:
        await engine.stop()


async def test_a_pair_needs_both_windows_over_its_burn_rate(any_db: Database) -> None:
    """Failing 10% from 60 to 6 min ago, then 0% for 6 min: the 5 m window is calm, so
    only 6h/30m fires (its 30 m window still burns 6×+), and 1h/5m stays quiet."""
    clock = FakeClock(base_time())
    now = clock.time()
    await history(any_db, minutes(now, 6, 100, 0) + minutes(now, 54, 100, 10, end=6))
    engine = await engine_over(any_db, clock, [slo()])
    try:
        await engine.evaluate()
        assert active(engine) == {"6h/30m": ("high", "firing")}
    finally:
        await engine.stop()


async def test_slow_burn_under_six_times_fires_nothing(any_db: Database) -> None:
    """2% failing (4× the 0.5% budget) for six hours stays below both factors."""
    clock = FakeClock(base_time())
    await history(any_db, minutes(clock.time(), 360, 100, 2))
    engine = await engine_over(any_db, clock, [slo()])
    try:
        await engine.evaluate()
        assert active(engine) == {}
    finally:
        await engine.stop()


async def test_no_data_neither_fires_nor_resolves(any_db: Database) -> None:
    """Without handled messages nothing fires; a firing pair stays firing when data stops,
    and resolves once a window with traffic is clean."""
    clock = FakeClock(base_time())
    engine = await engine_over(any_db, clock, [slo()])
    try:
        await engine.evaluate()
        assert active(engine) == {}
        await history(any_db, minutes(clock.time(), 60, 100, 10))
        clock.advance(15)
        await engine.evaluate()
        assert active(engine)["1h/5m"] == ("critical", "firing")
        clock.advance(7 * 3600)  # every window is empty now: no data
        await engine.evaluate()
        assert active(engine)["1h/5m"] == ("critical", "firing")
        await history(any_db, minutes(clock.time(), 10, 100, 0))
        clock.advance(15)
        await engine.evaluate()
        assert active(engine) == {}
    finally:
        await engine.stop()


def test_slo_rule_validation() -> None:
    """objective must lie strictly in (0, 1); threshold fields are refused; window parses."""
    rule = slo(window="30d")
    assert (rule.kind, rule.objective, rule.window_s) == (RuleKind.SLO, 0.995, 30 * 86400.0)
    assert rule.spec()["window"] == "30d" and rule.spec()["kind"] == "slo"
    for bad, field in (
        ({"objective": 1.0}, "objective"),
        ({"objective": 0}, "objective"),
        ({"objective": "x"}, "objective"),
        ({"objective": None}, "objective"),
        ({"threshold": 3}, "threshold"),
        ({"window": "soon"}, "window"),
        ({"kind": "ratio"}, "kind"),
    ):
        with pytest.raises(RuleError) as err:
            slo(**bad)
        assert err.value.field == field, bad


def test_slo_rule_from_configuration() -> None:
    """An ``[[alerts.rules]]`` entry of kind slo compiles; a bad objective names its key."""
    settings = {"default_rules": False, "rules": [{"name": "A", "kind": "slo", "objective": 0.99}]}
    [rule] = compile_rules(AlertsSettings(**settings))
    assert (rule.kind, rule.objective, rule.window_s) == (RuleKind.SLO, 0.99, 28 * 86400.0)
    bad = {"default_rules": False, "rules": [{"name": "A", "kind": "slo", "objective": 2}]}
    with pytest.raises(ValueError, match=r"alerts\.rules\.0\.objective"):
        compile_rules(AlertsSettings(**bad))


def test_retention_warnings_name_the_rule_and_the_shortfall() -> None:
    """Default 7 d retention with a 28 d SLO warns about the window only; 1 h retention
    warns that burn-rate alerts are blind; 30 d retention or no SLO rule: no warning."""
    rule = slo()
    [week] = retention_warnings([rule], 7 * 86400.0)
    assert "objective window" in week and week.startswith("Availability:")
    [hour] = retention_warnings([rule], 3600.0)
    assert "burn-rate window" in hour
    assert retention_warnings([rule], 30 * 86400.0) == []
    assert retention_warnings(compile_rules(AlertsSettings()), 60.0) == []
