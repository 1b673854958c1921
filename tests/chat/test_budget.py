"""The daily AI budget on a fake clock, and today's spend read back from the store."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatwatch.chat.budget import BudgetState, DailyBudget, utc_day_bounds
from chatwatch.clock import FakeClock
from chatwatch.events import AIBudgetChanged, ErrorOccurred, Event, EventBus
from chatwatch.store.chat_store import ChatStore
from chatwatch.store.db import Database
from chatwatch.store.spend import spent_between
from tests.fakes.services import require_postgres

# 2027-01-15 08:00:00 UTC, FakeClock's default start.
DAY = "2027-01-15"
MIDNIGHT = 1_800_057_600.0  # 2027-01-16 00:00:00 UTC


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def bus(events: list[Event]) -> EventBus:
    bus = EventBus()
    bus.subscribe_all(events.append)
    return bus


def marks(events: list[Event]) -> list[tuple[str, float, str]]:
    return [
        (e.state, round(e.spent_usd, 6), e.day) for e in events if isinstance(e, AIBudgetChanged)
    ]


def test_day_bounds_are_utc_midnights() -> None:
    """FakeClock's start lies in 2027-01-15 (UTC), which ends at the next UTC midnight."""
    assert utc_day_bounds(1_800_000_000.0) == (DAY, MIDNIGHT - 86400, MIDNIGHT)


async def test_spend_under_the_limit_is_allowed(
    clock: FakeClock, bus: EventBus, events: list[Event]
) -> None:
    """$0.50 of $1.00 spent: calls allowed, state ok, no event."""
    budget = DailyBudget(1.0, clock, bus)
    budget.spend(0.5)
    assert (await budget.allows(), budget.state, budget.spent_usd, events) == (
        True,
        BudgetState.OK,
        0.5,
        [],
    )


async def test_crossing_80_percent_warns_once(
    clock: FakeClock, bus: EventBus, events: list[Event]
) -> None:
    """Reaching $8 of $10 emits warning once; more spend below $10 emits nothing more."""
    budget = DailyBudget(10.0, clock, bus)
    for _ in range(8):
        budget.spend(1.0)
    budget.spend(1.5)
    assert (await budget.allows(), budget.state, marks(events)) == (
        True,
        BudgetState.WARNING,
        [("warning", 8.0, DAY)],
    )


async def test_reaching_the_limit_stops_calls(
    clock: FakeClock, bus: EventBus, events: list[Event]
) -> None:
    """At $1 of $1 the budget is exhausted (one event) and no AI call is allowed."""
    budget = DailyBudget(1.0, clock, bus)
    budget.spend(0.9)
    budget.spend(0.1)
    budget.spend(0.1)
    assert (await budget.allows(), budget.state, [m[0] for m in marks(events)]) == (
        False,
        BudgetState.EXHAUSTED,
        ["warning", "exhausted"],
    )


async def test_one_big_reply_reports_both_marks(
    clock: FakeClock, bus: EventBus, events: list[Event]
) -> None:
    """A single $2 reply against $1 reports warning then exhausted, in that order."""
    budget = DailyBudget(1.0, clock, bus)
    budget.spend(2.0)
    assert marks(events) == [("warning", 2.0, DAY), ("exhausted", 2.0, DAY)]


async def test_new_utc_day_resets_it(clock: FakeClock, bus: EventBus, events: list[Event]) -> None:
    """Exhausted before midnight; one second after the UTC midnight calls are allowed again,
    spend is 0 and a reset is reported for the new day."""
    budget = DailyBudget(1.0, clock, bus)
    budget.spend(1.5)
    clock.advance(MIDNIGHT - 1 - clock.time())
    before = await budget.allows()
    clock.advance(2)
    after = await budget.allows()
    assert (before, after, budget.spent_usd, budget.day, marks(events)[-1]) == (
        False,
        True,
        0.0,
        "2027-01-16",
        ("reset", 0.0, "2027-01-16"),
    )


async def test_custom_warning_ratio(clock: FakeClock, bus: EventBus, events: list[Event]) -> None:
    """With budget_warning_ratio 0.5, $5 of $10 warns."""
    budget = DailyBudget(10.0, clock, bus, warning_ratio=0.5)
    budget.spend(4.99)
    quiet = list(events)
    budget.spend(0.01)
    assert (quiet, [m[0] for m in marks(events)]) == ([], ["warning"])


async def test_zero_budget_allows_nothing(clock: FakeClock, bus: EventBus) -> None:
    """A $0 budget is a kill switch: the first check already refuses."""
    assert await DailyBudget(0.0, clock, bus).allows() is False


async def test_start_from_stored_spend(
    clock: FakeClock, bus: EventBus, events: list[Event]
) -> None:
    """The first check reads today's stored spend (for today's UTC bounds) once: $0.90 of
    $1 warns at start, and one more $0.10 reply exhausts it."""
    calls: list[tuple[float, float]] = []

    async def load(start: float, end: float) -> float:
        calls.append((start, end))
        return 0.9

    budget = DailyBudget(1.0, clock, bus, load_spent=load)
    first = await budget.allows()
    await budget.allows()
    budget.spend(0.1)
    assert (first, calls, [m[0] for m in marks(events)], await budget.allows()) == (
        True,
        [(MIDNIGHT - 86400, MIDNIGHT)],
        ["warning", "exhausted"],
        False,
    )


async def test_unreadable_store_counts_from_zero_and_says_so(
    clock: FakeClock, bus: EventBus, events: list[Event]
) -> None:
    """A store that cannot be read fails open (calls allowed) and reports a system error."""

    async def load(start: float, end: float) -> float:
        raise OSError("database is down")

    budget = DailyBudget(1.0, clock, bus, load_spent=load)
    allowed = await budget.allows()
    errors = [e for e in events if isinstance(e, ErrorOccurred)]
    assert (allowed, budget.spent_usd, [(e.type, e.code) for e in errors]) == (
        True,
        0.0,
        [("system", "ai_budget_load_failed")],
    )


# --- the stored figure -------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database: a fresh SQLite file, or the test PostgreSQL server."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}" if request.param == "sqlite" else None
    database = Database(url or require_postgres())
    try:
        await database.migrate()
        yield database
    finally:
        await database.dispose()


async def test_spent_between_sums_todays_replies(db: Database) -> None:
    """Only assistant replies inside [start, end) count: yesterday's, tomorrow's, user turns
    and cost-less rows do not."""
    store = ChatStore(db)
    # A day of its own far from other tests' rows (the PostgreSQL database is shared).
    start = 3_000_000_000.0 + random.randrange(100_000) * 86400.0
    end = start + 86400.0
    session = f"s-{uuid.uuid4().hex}"
    await store.create_session(session, f"u-{uuid.uuid4().hex}", "guest", start)
    rows = [
        ("assistant", start - 1, 5.0),  # yesterday
        ("assistant", start, 0.25),
        ("assistant", start + 3600, 0.5),
        ("assistant", start + 7200, None),  # no cost recorded
        ("user", start + 10, 9.0),  # not a reply (never has a cost, but just in case)
        ("assistant", end - 0.001, 0.125),
        ("assistant", end, 7.0),  # tomorrow
    ]
    for role, now, cost in rows:
        await store.add_message(
            session_id=session, role=role, correlation_id="c", content="x", now=now, cost_usd=cost
        )
    assert (
        await spent_between(db, start, end),
        await spent_between(db, end + 86400, end + 2 * 86400),
    ) == (
        pytest.approx(0.875),
        0.0,
    )


async def test_budget_restarts_from_the_store(
    db: Database, bus: EventBus, events: list[Event]
) -> None:
    """A new process (a new DailyBudget) on the same store starts from the day's spend."""
    store = ChatStore(db)
    start = 3_000_000_000.0 + random.randrange(100_000) * 86400.0
    clock = FakeClock(start + 3600)
    session = f"s-{uuid.uuid4().hex}"
    await store.create_session(session, f"u-{uuid.uuid4().hex}", "guest", start)
    for cost in (0.5, 0.5):
        await store.add_message(
            session_id=session,
            role="assistant",
            correlation_id="c",
            content="x",
            now=start + 60,
            cost_usd=cost,
        )

    async def load(a: float, b: float) -> float:
        return await spent_between(db, a, b)

    budget = DailyBudget(1.0, clock, bus, load_spent=load)
    assert (await budget.allows(), budget.spent_usd, [m[0] for m in marks(events)]) == (
        False,
        1.0,
        ["warning", "exhausted"],
    )
