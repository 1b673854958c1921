"""The chat store on SQLite and on PostgreSQL: migrations, sessions, messages, history."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from chatwatch.store.chat_store import ChatStore, StoredMessage, StoredSession
from chatwatch.store.db import Database
from tests.fakes.services import require_postgres, unused_tcp_port

MIGRATIONS = Path(__file__).resolve().parents[2] / "src" / "chatwatch" / "store" / "migrations"


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def uid(prefix: str) -> str:
    """A unique id, so tests sharing the PostgreSQL database never collide."""
    return f"{prefix}{uuid.uuid4().hex}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database: a fresh SQLite file, or the test PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    else:
        url = require_postgres()
    database = Database(url)
    try:
        await database.migrate()
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def store(db: Database) -> ChatStore:
    return ChatStore(db)


async def new_session(store: ChatStore, now: float = 100.0) -> tuple[str, str]:
    session_id, user_id = uid("s-"), uid("u-")
    await store.create_session(session_id, user_id, "guest", now)
    return session_id, user_id


async def add(store: ChatStore, session_id: str, content: str, now: float = 100.0) -> int:
    return await store.add_message(
        session_id=session_id, role="user", correlation_id=uid("c"), content=content, now=now
    )


# --- migrations -------------------------------------------------------------------------


async def test_migrations_reach_head_and_create_the_tables(db: Database) -> None:
    """After migrate() the schema is at the newest revision with users, sessions, messages."""
    async with db.engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert (head_revision(), True) == (version, {"users", "sessions", "messages"} <= tables)


async def test_migrate_again_is_a_no_op_that_keeps_data(db: Database, store: ChatStore) -> None:
    """Running migrate() twice more changes nothing and loses no stored message."""
    session_id, _ = await new_session(store)
    await add(store, session_id, "kept")
    await db.migrate()
    await db.migrate()
    async with db.engine.connect() as conn:
        versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    assert ([(head_revision(),)], ["kept"]) == (
        [tuple(v) for v in versions],
        [m.content for m in await store.list_messages(session_id)],
    )


async def test_ping_answers_true_when_reachable(db: Database) -> None:
    """ping() is True for a working database."""
    assert await db.ping() is True


async def test_ping_is_false_when_postgres_is_unreachable() -> None:
    """ping() on a PostgreSQL URL where nothing listens is False, not an exception."""
    database = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{unused_tcp_port()}/nope")
    try:
        assert await database.ping(limit=2) is False
    finally:
        await database.dispose()


async def test_sqlite_directory_is_created(tmp_path: Path) -> None:
    """A SQLite URL under a missing directory gets the directory made, then migrates."""
    path = tmp_path / "deep" / "er" / "chat.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await database.migrate()
    finally:
        await database.dispose()
    assert path.is_file()


async def test_sqlite_data_survives_reopening(tmp_path: Path) -> None:
    """Messages written through one engine are read back by a new engine on the same file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    first = Database(url)
    await first.migrate()
    session_id, _ = await new_session(ChatStore(first))
    await add(ChatStore(first), session_id, "durable")
    await first.dispose()
    second = Database(url)
    try:
        await second.migrate()
        contents = [m.content for m in await ChatStore(second).list_messages(session_id)]
    finally:
        await second.dispose()
    assert contents == ["durable"]


# --- sessions ---------------------------------------------------------------------------


async def test_session_round_trip(store: ChatStore) -> None:
    """create_session then get_session returns the same id, user and timestamps."""
    session_id, user_id = await new_session(store, now=123.5)
    assert StoredSession(session_id, user_id, 123.5, 123.5) == await store.get_session(session_id)


async def test_unknown_session_is_none(store: ChatStore) -> None:
    """get_session of an id never created is None."""
    assert await store.get_session(uid("s-")) is None


async def test_touch_session_moves_last_seen_only(store: ChatStore) -> None:
    """touch_session updates last_seen_at and leaves created_at alone."""
    session_id, user_id = await new_session(store, now=100.0)
    await store.touch_session(session_id, 250.25)
    assert StoredSession(session_id, user_id, 100.0, 250.25) == await store.get_session(session_id)


async def test_second_session_of_a_user_reuses_the_user(store: ChatStore) -> None:
    """A user's second session is created without a duplicate-user error."""
    user_id = uid("u-")
    first, second = uid("s-"), uid("s-")
    await store.create_session(first, user_id, "user", 1.0)
    await store.create_session(second, user_id, "user", 2.0)
    found = [await store.get_session(first), await store.get_session(second)]
    assert [user_id, user_id] == [s.user_id for s in found if s is not None]


async def test_ensure_user_is_idempotent(store: ChatStore) -> None:
    """ensure_user twice for one id is fine, and a session can then be made for that user."""
    user_id = uid("u-")
    await store.ensure_user(user_id, "user", 1.0)
    await store.ensure_user(user_id, "user", 2.0)
    session_id = uid("s-")
    await store.create_session(session_id, user_id, "user", 3.0)
    found = await store.get_session(session_id)
    assert user_id == (found.user_id if found else None)


async def test_concurrent_first_sessions_of_a_new_user_both_succeed(store: ChatStore) -> None:
    """Two sockets of a brand-new user opening sessions at once both get a session (x5 users)."""
    for _ in range(5):
        user_id = uid("u-")
        ids = [uid("s-"), uid("s-")]
        results = await asyncio.gather(
            *(store.create_session(s, user_id, "user", 1.0) for s in ids), return_exceptions=True
        )
        assert results == [None, None]


async def test_concurrent_ensure_user_both_succeed(store: ChatStore) -> None:
    """Two ensure_user calls racing for one new user both succeed (x5 users)."""
    for _ in range(5):
        user_id = uid("u-")
        results = await asyncio.gather(
            store.ensure_user(user_id, "user", 1.0),
            store.ensure_user(user_id, "user", 1.0),
            return_exceptions=True,
        )
        assert results == [None, None]


# --- messages ---------------------------------------------------------------------------


async def test_message_round_trip_keeps_every_field(store: ChatStore) -> None:
    """A user and an assistant message come back field for field, unicode content intact."""
    session_id, _ = await new_session(store)
    user_seq = await store.add_message(
        session_id=session_id,
        role="user",
        correlation_id="corr-1",
        content="Prix? 💶 <b>ü</b>\nzweite Zeile",
        now=100.25,
        client_id="m1",
    )
    bot_seq = await store.add_message(
        session_id=session_id,
        role="assistant",
        correlation_id="corr-1",
        content="Here is an overview.",
        now=101.5,
        model="chatwatch-consultant",
        input_tokens=12,
        output_tokens=34,
        cost_usd=0.000125,
        cached=True,
    )
    expected = [
        StoredMessage(
            user_seq,
            session_id,
            "user",
            "m1",
            "corr-1",
            "Prix? 💶 <b>ü</b>\nzweite Zeile",
            None,
            None,
            None,
            None,
            None,
            100.25,
        ),
        StoredMessage(
            bot_seq,
            session_id,
            "assistant",
            None,
            "corr-1",
            "Here is an overview.",
            "chatwatch-consultant",
            12,
            34,
            0.000125,
            True,
            101.5,
        ),
    ]
    assert expected == await store.list_messages(session_id)


async def test_cached_false_is_stored_as_false(store: ChatStore) -> None:
    """cached=False comes back False, not None."""
    session_id, _ = await new_session(store)
    await store.add_message(
        session_id=session_id,
        role="assistant",
        correlation_id="c",
        content="x",
        now=1.0,
        cached=False,
    )
    assert [m.cached for m in await store.list_messages(session_id)] == [False]


async def test_large_message_round_trip(store: ChatStore) -> None:
    """A 1 MiB message (the largest max_message_bytes allows) is stored whole."""
    session_id, _ = await new_session(store)
    content = "é" * (512 * 1024)
    await add(store, session_id, content)
    assert [content] == [m.content for m in await store.list_messages(session_id)]


async def test_messages_are_listed_in_insertion_order(store: ChatStore) -> None:
    """Ten messages, even with decreasing timestamps, list in the order they were added."""
    session_id, _ = await new_session(store)
    seqs = [await add(store, session_id, f"m{i}", now=1000.0 - i) for i in range(10)]
    listed = await store.list_messages(session_id)
    assert (seqs, [f"m{i}" for i in range(10)], True) == (
        [m.seq for m in listed],
        [m.content for m in listed],
        seqs == sorted(seqs) and len(set(seqs)) == 10,
    )


async def test_sessions_do_not_see_each_others_messages(store: ChatStore) -> None:
    """Interleaved writes to two sessions list separately, each in its own order."""
    a, _ = await new_session(store)
    b, _ = await new_session(store)
    for i in range(3):
        await add(store, a, f"a{i}")
        await add(store, b, f"b{i}")
    assert (
        [m.content for m in await store.list_messages(a)],
        [m.content for m in await store.list_messages(b)],
    ) == (["a0", "a1", "a2"], ["b0", "b1", "b2"])


async def test_list_after_and_limit_page_through_history(store: ChatStore) -> None:
    """after=<seq of m1>, limit=2 gives m2, m3; paging on from m3 gives m4 and then nothing."""
    session_id, _ = await new_session(store)
    seqs = [await add(store, session_id, f"m{i}") for i in range(5)]
    page1 = await store.list_messages(session_id, after=seqs[1], limit=2)
    page2 = await store.list_messages(session_id, after=page1[-1].seq, limit=2)
    page3 = await store.list_messages(session_id, after=page2[-1].seq, limit=2)
    assert (
        [m.content for m in page1],
        [m.content for m in page2],
        [m.content for m in page3],
    ) == (["m2", "m3"], ["m4"], [])


async def test_list_of_unknown_session_is_empty(store: ChatStore) -> None:
    """Listing a session that does not exist returns no messages."""
    assert await store.list_messages(uid("s-")) == []


async def test_recent_messages_are_the_newest_oldest_first(store: ChatStore) -> None:
    """recent_messages(limit=3) of m0..m5 is m3, m4, m5 in that order."""
    session_id, _ = await new_session(store)
    for i in range(6):
        await add(store, session_id, f"m{i}")
    assert [m.content for m in await store.recent_messages(session_id, 3)] == ["m3", "m4", "m5"]


async def test_recent_messages_with_a_large_limit_is_everything(store: ChatStore) -> None:
    """A limit above the count returns all messages, oldest first."""
    session_id, _ = await new_session(store)
    for i in range(3):
        await add(store, session_id, f"m{i}")
    assert [m.content for m in await store.recent_messages(session_id, 50)] == ["m0", "m1", "m2"]


async def test_message_for_unknown_session_is_refused(store: ChatStore) -> None:
    """A message pointing at a session that does not exist violates the foreign key."""
    with pytest.raises(IntegrityError):
        await add(store, uid("s-"), "orphan")


async def test_as_json_of_user_and_assistant_messages(store: ChatStore) -> None:
    """The history JSON of a user message has no AI fields; an assistant's has usage and cost."""
    session_id, _ = await new_session(store)
    await store.add_message(
        session_id=session_id,
        role="user",
        correlation_id="c1",
        content="hi",
        now=1.0,
        client_id="m1",
    )
    await store.add_message(
        session_id=session_id,
        role="assistant",
        correlation_id="c1",
        content="hello",
        now=2.0,
        model="m",
        input_tokens=3,
        output_tokens=4,
        cost_usd=0.5,
        cached=None,
    )
    user, bot = await store.list_messages(session_id)
    assert (
        {
            "seq": user.seq,
            "role": "user",
            "id": "m1",
            "correlation_id": "c1",
            "content": "hi",
            "created_at": 1.0,
        },
        {
            "seq": bot.seq,
            "role": "assistant",
            "id": None,
            "correlation_id": "c1",
            "content": "hello",
            "created_at": 2.0,
            "model": "m",
            "usage": {"input_tokens": 3, "output_tokens": 4},
            "cost_usd": 0.5,
            "cached": False,
            "latency_ms": None,
        },
    ) == (user.as_json(), bot.as_json())
