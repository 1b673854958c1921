"""Forgetting people: the retention purge of chat data and the erasure of one user.

Purge (``store.retention_days``, run every ``store.purge_interval``), in this order:

1. messages older than the retention;
2. sessions with no message (left), not used for a day — or for the retention if that is
   shorter: every WebSocket connect makes a session, and most never carry a message;
3. guest users with no session left, created over a day ago.

Erasure of one user removes their messages, sessions and user row, and the stored log
records carrying their ``user_id``.

Every delete is a short transaction over a bounded set of primary keys (``chunk`` rows,
or a ``log_scan`` range of log record ids), with a pause between transactions, so a
large purge never holds the database — SQLite's single write lock above all — for long
while visitors' messages and log batches wait to be written. The candidate rows are
found through indexes (migration 0005), and each delete re-checks its condition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Delete, Select, delete, exists, select
from sqlalchemy.exc import IntegrityError

from chatwatch.clock import Clock
from chatwatch.observe.logs import get_logger
from chatwatch.store.db import Database
from chatwatch.store.log_tables import log_records
from chatwatch.store.tables import messages, sessions, users

__all__ = [
    "EMPTY_SESSION_SECONDS",
    "MAX_USER_ID",
    "Erasure",
    "ErasureConflict",
    "PurgeResult",
    "Retention",
    "check_user_id",
]

EMPTY_SESSION_SECONDS = 86400.0  # an empty session (or a guest with none) is kept a day
MAX_USER_ID = 64  # users.id is VARCHAR(64); tokens are minted for 1-64 character names
_log = get_logger("store")
# Subqueries choosing the rows to delete read from an alias of the table deleted from, so
# SQLAlchemy does not correlate them with the DELETE itself.
_MESSAGES = messages.alias("old_messages")


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """How many rows one purge deleted."""

    messages: int = 0
    sessions: int = 0
    users: int = 0


@dataclass(frozen=True, slots=True)
class Erasure:
    """What the erasure of one user removed."""

    user_id: str
    sessions: int
    messages: int
    log_records: int

    def as_json(self) -> dict[str, Any]:
        """``{"user_id", "sessions", "messages", "log_records"}``."""
        return asdict(self)


class ErasureConflict(Exception):
    """The user wrote while being erased (a new session or message): some data is left;
    erasing again, once they are gone, removes it."""


def check_user_id(user_id: str) -> str:
    """``user_id`` if it could name a stored user; ValueError saying why not."""
    if not 1 <= len(user_id) <= MAX_USER_ID:
        raise ValueError(f"user_id: must be 1-{MAX_USER_ID} characters")
    if not user_id.isprintable():
        raise ValueError("user_id: control characters are not allowed")
    return user_id


class Retention:
    """Deletes expired chat data in the background and erases users on request."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        retention_days: float = 90.0,
        interval: float = 3600.0,
        first_delay: float = 60.0,
        chunk: int = 1000,
        log_scan: int = 20_000,
        pause: float = 0.02,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.clock = clock
        self.retention_days = retention_days
        self.interval = interval
        self.first_delay = first_delay
        self.chunk = chunk
        self.log_scan = log_scan
        self.pause = pause
        self._sleep = sleep

    # --- purge ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Purge every ``interval`` seconds until cancelled (run it as a task)."""
        # The first purge waits a little: a restart loop must not turn into a purge loop,
        # and start-up has better things to do with the database.
        await self._sleep(self.first_delay)
        while True:
            try:
                result = await self.purge()
                if result != PurgeResult():
                    _log.info("store.purged", **asdict(result))
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("store.purge_failed")
            await self._sleep(self.interval)

    async def purge(self) -> PurgeResult:
        """Delete expired messages, then empty sessions, then orphan guests; say how many."""
        now = self.clock.time()
        retention = self.retention_days * 86400.0
        idle = min(EMPTY_SESSION_SECONDS, retention)
        return PurgeResult(
            messages=await self._purge_messages(now - retention),
            sessions=await self._purge_sessions(now - idle),
            users=await self._purge_guests(now - EMPTY_SESSION_SECONDS),
        )

    async def _purge_messages(self, cutoff: float) -> int:
        m = _MESSAGES.c
        old = self._lockable(
            select(m.seq).where(m.created_at < cutoff).order_by(m.created_at).limit(self.chunk)
        )
        return await self._in_chunks(delete(messages).where(messages.c.seq.in_(old)))

    async def _purge_sessions(self, cutoff: float) -> int:
        s = sessions.alias("s")
        idle = self._lockable(
            select(s.c.id)
            .where(s.c.last_seen_at < cutoff, ~_has_messages(s.c.id))
            .order_by(s.c.last_seen_at)
            .limit(self.chunk)
        )
        return await self._in_chunks(
            delete(sessions).where(sessions.c.id.in_(idle), ~_has_messages(sessions.c.id))
        )

    async def _purge_guests(self, cutoff: float) -> int:
        # No index finds orphans, so walk the users by primary key, a chunk at a time:
        # each read is bounded and only the delete takes the write lock.
        page = select(users.c.id).order_by(users.c.id).limit(self.chunk)
        deleted, after = 0, ""
        while True:
            async with self.db.engine.connect() as conn:
                ids = list(await conn.scalars(page.where(users.c.id > after)))
            if not ids:
                return deleted
            after = ids[-1]
            deleted += await self._delete(
                delete(users).where(
                    users.c.id.in_(ids),
                    users.c.kind == "guest",
                    users.c.created_at < cutoff,
                    ~_has_sessions(users.c.id),
                )
            )
            await self._sleep(self.pause)

    async def _in_chunks(self, statement: Delete, *, strict: bool = False) -> int:
        """Run a delete of at most ``chunk`` rows until it deletes fewer (``strict``: an
        IntegrityError propagates instead of ending the run)."""
        deleted = 0
        while True:
            count = await (self._delete_strictly if strict else self._delete)(statement)
            deleted += count
            if count < self.chunk:
                return deleted
            await self._sleep(self.pause)

    async def _delete(self, statement: Delete) -> int:
        try:
            return await self._delete_strictly(statement)
        except IntegrityError:
            # A message or session arrived for a row being deleted (PostgreSQL checks the
            # reference after our snapshot): that row is in use again, so keep it.
            _log.info("store.purge_chunk_skipped")
            return 0

    async def _delete_strictly(self, statement: Delete) -> int:
        async with self.db.engine.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount or 0)

    def _lockable(self, query: Select[Any]) -> Select[Any]:
        # Two nodes purging at once take different rows instead of queueing on the same.
        if self.db.dialect == "postgresql":
            return query.with_for_update(skip_locked=True)
        return query

    # --- erasure -------------------------------------------------------------------------

    async def erase_user(self, user_id: str) -> Erasure | None:
        """Remove the user's messages, sessions, user row and log records; None when
        nothing at all is stored about ``user_id``.

        Raises ErasureConflict when the user added a session or message meanwhile (their
        log records are erased all the same).
        """
        async with self.db.engine.connect() as conn:
            known = await conn.scalar(select(exists().where(users.c.id == user_id)))
            session_ids = list(
                await conn.scalars(select(sessions.c.id).where(sessions.c.user_id == user_id))
            )
        message_count = session_count = 0
        try:
            for i in range(0, len(session_ids), 100):
                some = session_ids[i : i + 100]
                message_count += await self._erase_messages(some)
                session_count += await self._delete_strictly(
                    delete(sessions).where(sessions.c.id.in_(some))
                )
            await self._delete_strictly(delete(users).where(users.c.id == user_id))
        except IntegrityError:
            await self._erase_log_records(user_id)
            raise ErasureConflict(user_id) from None
        log_count = await self._erase_log_records(user_id)
        if not known and log_count == 0:
            return None
        return Erasure(user_id, session_count, message_count, log_count)

    async def _erase_messages(self, session_ids: Sequence[str]) -> int:
        m = _MESSAGES.c
        some = select(m.seq).where(m.session_id.in_(session_ids)).limit(self.chunk)
        return await self._in_chunks(delete(messages).where(messages.c.seq.in_(some)), strict=True)

    async def _erase_log_records(self, user_id: str) -> int:
        """Delete the user's log records one id range at a time (``log_scan`` records each):
        there is no index on ``user_id`` — the ingest path would pay for it on every record."""
        r = log_records.c
        deleted, lo = 0, -1
        while True:
            async with self.db.engine.connect() as conn:
                hi = await conn.scalar(
                    select(r.id).where(r.id > lo).order_by(r.id).offset(self.log_scan - 1).limit(1)
                )
            bounds = [r.id > lo] if hi is None else [r.id > lo, r.id <= hi]
            statement = delete(log_records).where(*bounds, r.user_id == user_id)
            async with self.db.engine.begin() as conn:
                result = await conn.execute(statement)
            deleted += int(result.rowcount or 0)
            if hi is None:
                return deleted
            lo = hi
            await self._sleep(self.pause)


def _has_messages(session_id: Any) -> Any:
    return exists().where(messages.c.session_id == session_id)


def _has_sessions(user_id: Any) -> Any:
    return exists().where(sessions.c.user_id == user_id)
