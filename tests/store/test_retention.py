"""Retention purge and erasure on SQLite and PostgreSQL, with an injected clock (no sleeping).

PostgreSQL runs in a schema of each test's own (tests/observe/logstore_fixtures.py), so a
purge here never touches another test's rows. PostgreSQL is required under CI=true.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import ColumnElement, Table, func, select

from chatwatch.clock import FakeClock
from chatwatch.observe.logs.pipeline import LogMetrics
from chatwatch.store.chat_store import ChatStore
from chatwatch.store.db import Database
from chatwatch.store.log_tables import log_records
from chatwatch.store.retention import (
    Erasure,
    ErasureConflict,
    PurgeResult,
    Retention,
    check_user_id,
)
from chatwatch.store.tables import messages, sessions, users
from tests.observe.logstore_fixtures import make_record, migrated_db, new_store

DAY = 86400.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of each kind, empty."""
    async with migrated_db(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def clock() -> FakeClock:
    """Now is 2027-01-15T08:00:00Z and moves only when told."""
    return FakeClock()


class NoSleep:
    """Records the pauses asked for instead of taking them."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def uid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def session_with(
    store: ChatStore, user_id: str, at: float, message_times: list[float]
) -> str:
    """A session of ``user_id`` opened at ``at`` with one message at each time given."""
    session_id = uid("s-")
    kind = "guest" if user_id.startswith("guest-") else "user"
    await store.create_session(session_id, user_id, kind, at)
    for t in message_times:
        await store.add_message(
            session_id=session_id, role="user", correlation_id=uid("c"), content="hi", now=t
        )
    return session_id


async def count(db: Database, table: Table, *where: ColumnElement[bool]) -> int:
    """Rows of ``table`` matching every condition."""
    async with db.engine.connect() as conn:
        value = await conn.scalar(select(func.count()).select_from(table).where(*where))
    return int(value or 0)


async def test_old_messages_go_and_new_ones_stay(db: Database, clock: FakeClock) -> None:
    """Messages older than retention_days are deleted, newer ones kept, in the same session;
    a session whose messages all expired goes too, a session with a recent one stays."""
    store, now = ChatStore(db), clock.time()
    mixed = await session_with(store, "guest-a", now - 100 * DAY, [now - 100 * DAY, now - DAY])
    expired = await session_with(store, "guest-b", now - 95 * DAY, [now - 95 * DAY] * 3)
    result = await Retention(db, clock, retention_days=90, sleep=NoSleep()).purge()
    assert result == PurgeResult(messages=4, sessions=1, users=1)
    kept = await store.list_messages(mixed)
    assert [m.created_at for m in kept] == [now - DAY]
    assert await store.get_session(expired) is None
    assert await store.get_session(mixed) is not None


async def test_a_message_just_inside_the_retention_is_kept(db: Database, clock: FakeClock) -> None:
    """The boundary: one second older than retention_days goes, one second younger stays."""
    store, now = ChatStore(db), clock.time()
    sid = await session_with(store, "u-1", now - 31 * DAY, [now - 30 * DAY - 1, now - 30 * DAY + 1])
    await Retention(db, clock, retention_days=30, sleep=NoSleep()).purge()
    assert [m.created_at for m in await store.list_messages(sid)] == [now - 30 * DAY + 1]


async def test_empty_sessions_go_after_a_day(db: Database, clock: FakeClock) -> None:
    """A session that never got a message is deleted once it is a day old, not before."""
    store, now = ChatStore(db), clock.time()
    old = await session_with(store, "u-1", now - DAY - 1, [])
    young = await session_with(store, "u-1", now - DAY + 60, [])
    result = await Retention(db, clock, sleep=NoSleep()).purge()
    assert result.sessions == 1
    assert (await store.get_session(old), await store.get_session(young) is not None) == (
        None,
        True,
    )
    clock.advance(61)
    assert (await Retention(db, clock, sleep=NoSleep()).purge()).sessions == 1
    assert await store.get_session(young) is None


async def test_resumed_sessions_count_from_their_last_use(db: Database, clock: FakeClock) -> None:
    """An empty session created long ago but resumed within the day is kept."""
    store, now = ChatStore(db), clock.time()
    sid = await session_with(store, "u-1", now - 10 * DAY, [])
    await store.touch_session(sid, now - 3600)
    assert (await Retention(db, clock, sleep=NoSleep()).purge()).sessions == 0


async def test_orphan_guests_go_other_users_stay(db: Database, clock: FakeClock) -> None:
    """A guest with no session left, over a day old, is deleted; a registered user without
    sessions, a guest with a session and a guest created today are kept."""
    store, now = ChatStore(db), clock.time()
    await store.ensure_user("guest-orphan", "guest", now - 2 * DAY)
    await store.ensure_user("guest-today", "guest", now - 3600)
    await store.ensure_user("alice", "user", now - 200 * DAY)
    await session_with(store, "guest-active", now - 2 * DAY, [now - 3600])
    gone_with_session = "guest-expired"
    await session_with(store, gone_with_session, now - 120 * DAY, [now - 120 * DAY])
    result = await Retention(db, clock, sleep=NoSleep(), chunk=2).purge()
    assert result == PurgeResult(messages=1, sessions=1, users=2)
    async with db.engine.connect() as conn:
        left = set((await conn.scalars(select(users.c.id))).all())
    assert left == {"guest-today", "alice", "guest-active"}


async def test_a_big_purge_is_cut_into_short_transactions(db: Database, clock: FakeClock) -> None:
    """With chunk=3, 10 expired messages go in four deletes with a pause between each, and
    every one of them goes."""
    store, now = ChatStore(db), clock.time()
    sid = await session_with(
        store, "u-1", now - 100 * DAY, [now - 100 * DAY + i for i in range(10)]
    )
    await session_with(store, "u-1", now, [now])
    sleep = NoSleep()
    result = await Retention(db, clock, chunk=3, pause=0.5, sleep=sleep).purge()
    assert result.messages == 10
    assert await count(db, messages, messages.c.session_id == sid) == 0
    assert await count(db, messages) == 1
    assert sleep.calls.count(0.5) >= 3  # between the message chunks (and user chunks)


async def test_run_waits_then_purges_every_interval(db: Database, clock: FakeClock) -> None:
    """run() waits first_delay, purges, then waits interval between purges (cancel stops it)."""
    store, now = ChatStore(db), clock.time()
    await session_with(store, "u-1", now - 100 * DAY, [now - 100 * DAY])
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            raise asyncio.CancelledError

    retention = Retention(db, clock, interval=3600, first_delay=60, pause=0, sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await retention.run()
    assert (pauses[0], pauses[-1]) == (60, 3600)
    assert await count(db, messages) == 0


# --- erasure ----------------------------------------------------------------------------


async def store_logs(db: Database, clock: FakeClock, user_counts: dict[str | None, int]) -> None:
    """Log records carrying each user id (None: records of no user), written for real."""
    logstore = new_store(db, clock, LogMetrics(CollectorRegistry()))
    t = clock.time() - 600
    for user_id, n in user_counts.items():
        for i in range(n):
            fields = {"user_id": user_id} if user_id else {}
            logstore.submit(make_record("message.received", t + i, **fields))
    await logstore.close()


async def test_erasure_counts_exactly_and_spares_everyone_else(
    db: Database, clock: FakeClock
) -> None:
    """Erasing a user removes exactly their sessions, messages, user row and log records
    (scanned a few ids at a time) and leaves another user's data as it was."""
    store, now = ChatStore(db), clock.time()
    for at, times in ((now - 3 * DAY, [now - 3 * DAY] * 3), (now - DAY, [now - DAY] * 2)):
        await session_with(store, "guest-x", at, times)
    await session_with(store, "guest-x", now, [])
    other = await session_with(store, "guest-y", now - DAY, [now - DAY] * 4)
    await store_logs(db, clock, {"guest-x": 7, "guest-y": 5, None: 3})
    retention = Retention(db, clock, log_scan=4, sleep=NoSleep())
    erased = await retention.erase_user("guest-x")
    assert erased == Erasure("guest-x", sessions=3, messages=5, log_records=7)
    assert erased.as_json() == {
        "user_id": "guest-x",
        "sessions": 3,
        "messages": 5,
        "log_records": 7,
    }
    assert await count(db, users, users.c.id == "guest-x") == 0
    assert await count(db, sessions, sessions.c.user_id == "guest-x") == 0
    assert len(await store.list_messages(other)) == 4
    assert await count(db, sessions) == 1
    assert await count(db, log_records, log_records.c.user_id == "guest-y") == 5
    assert await count(db, log_records) == 5 + 3
    assert await retention.erase_user("guest-x") is None  # nothing is left to find


async def test_erasure_of_a_user_known_only_from_logs(db: Database, clock: FakeClock) -> None:
    """A user who never opened a session but appears in log records is erased (not a 404);
    an id stored nowhere is None."""
    await store_logs(db, clock, {"guest-logs-only": 2, "guest-z": 1})
    retention = Retention(db, clock, sleep=NoSleep())
    assert await retention.erase_user("guest-logs-only") == Erasure("guest-logs-only", 0, 0, 2)
    assert await retention.erase_user("nobody-at-all") is None
    assert await count(db, log_records) == 1


class WritesDuringErasure(Retention):
    """Retention where the user sends one more message just after their messages went."""

    def __init__(self, *args: Any, store: ChatStore, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = store

    async def _erase_messages(self, session_ids: Sequence[str]) -> int:
        deleted = await super()._erase_messages(session_ids)
        await self.store.add_message(
            session_id=session_ids[0], role="user", correlation_id="late", content="x", now=1.0
        )
        return deleted


async def test_a_user_writing_during_erasure_is_a_conflict_not_a_partial_success(
    db: Database, clock: FakeClock
) -> None:
    """A message stored between erasing the messages and the session is an ErasureConflict
    (the session stays; the answer does not claim it went); erasing again finishes the job."""
    store = ChatStore(db)
    await session_with(store, "guest-w", clock.time(), [clock.time()] * 2)
    await store_logs(db, clock, {"guest-w": 2})
    racing = WritesDuringErasure(db, clock, sleep=NoSleep(), store=store)
    with pytest.raises(ErasureConflict):
        await racing.erase_user("guest-w")
    assert await count(db, log_records) == 0  # the log records go regardless
    again = await Retention(db, clock, sleep=NoSleep()).erase_user("guest-w")
    assert again == Erasure("guest-w", sessions=1, messages=1, log_records=0)


@pytest.mark.parametrize("user_id", ["", "x" * 65, "a\x00b", "line\nbreak"])
def test_ids_no_user_can_have_are_refused(user_id: str) -> None:
    """Empty, over 64 characters, or with control characters: a ValueError naming user_id."""
    with pytest.raises(ValueError, match=r"^user_id: "):
        check_user_id(user_id)
