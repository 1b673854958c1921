"""Users, sessions and messages: the chat's durable record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from chatwatch.store.db import Database
from chatwatch.store.tables import messages, sessions, users

__all__ = ["ChatStore", "StoredMessage", "StoredSession"]


@dataclass(frozen=True, slots=True)
class StoredSession:
    id: str
    user_id: str
    created_at: float
    last_seen_at: float


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    session_id: str
    role: str
    client_id: str | None
    correlation_id: str
    content: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    cached: bool | None
    created_at: float

    def as_json(self) -> dict[str, Any]:
        """The message as the history endpoint returns it."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "role": self.role,
            "id": self.client_id,
            "correlation_id": self.correlation_id,
            "content": self.content,
            "created_at": self.created_at,
        }
        if self.role == "assistant":
            out.update(
                model=self.model,
                usage={"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
                cost_usd=self.cost_usd,
                cached=bool(self.cached),
            )
        return out


class ChatStore:
    """Reads and writes the chat tables; every write is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _insert_user(self, user_id: str, kind: str, now: float) -> Any:
        # ON CONFLICT DO NOTHING: two sockets of a new user may arrive at the same moment.
        make = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
        return (
            make(users)
            .values(id=user_id, kind=kind, created_at=now)
            .on_conflict_do_nothing(index_elements=["id"])
        )

    async def ensure_user(self, user_id: str, kind: str, now: float) -> None:
        """Record a user the first time it is seen."""
        async with self._db.engine.begin() as conn:
            await conn.execute(self._insert_user(user_id, kind, now))

    async def create_session(self, session_id: str, user_id: str, kind: str, now: float) -> None:
        """Create a session (and its user, if new)."""
        async with self._db.engine.begin() as conn:
            await conn.execute(self._insert_user(user_id, kind, now))
            await conn.execute(
                insert(sessions).values(
                    id=session_id, user_id=user_id, created_at=now, last_seen_at=now
                )
            )

    async def get_session(self, session_id: str) -> StoredSession | None:
        """The session with this id, if any."""
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.id == session_id))).first()
        return None if row is None else StoredSession(*row)

    async def touch_session(self, session_id: str, now: float) -> None:
        """Mark a session as seen now."""
        async with self._db.engine.begin() as conn:
            await conn.execute(
                update(sessions).where(sessions.c.id == session_id).values(last_seen_at=now)
            )

    async def add_message(
        self,
        *,
        session_id: str,
        role: str,
        correlation_id: str,
        content: str,
        now: float,
        client_id: str | None = None,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost_usd: float | None = None,
        cached: bool | None = None,
    ) -> int:
        """Store one message; returns its sequence number."""
        async with self._db.engine.begin() as conn:
            result = await conn.execute(
                insert(messages)
                .values(
                    session_id=session_id,
                    role=role,
                    client_id=client_id,
                    correlation_id=correlation_id,
                    content=content,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cost_usd=cost_usd,
                    cached=None if cached is None else int(cached),
                    created_at=now,
                )
                .returning(messages.c.seq)
            )
            return int(result.scalar_one())

    async def list_messages(
        self, session_id: str, *, after: int = 0, limit: int = 200
    ) -> list[StoredMessage]:
        """Messages of a session in order, ``limit`` at most, after sequence ``after``."""
        async with self._db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(messages)
                    .where(messages.c.session_id == session_id, messages.c.seq > after)
                    .order_by(messages.c.seq)
                    .limit(limit)
                )
            ).all()
        return [_message(r) for r in rows]

    async def recent_messages(self, session_id: str, limit: int) -> list[StoredMessage]:
        """The newest ``limit`` messages of a session, oldest first (the AI's context)."""
        async with self._db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(messages)
                    .where(messages.c.session_id == session_id)
                    .order_by(messages.c.seq.desc())
                    .limit(limit)
                )
            ).all()
        return [_message(r) for r in reversed(rows)]


def _message(row: Any) -> StoredMessage:
    m = row._mapping
    return StoredMessage(
        seq=m["seq"],
        session_id=m["session_id"],
        role=m["role"],
        client_id=m["client_id"],
        correlation_id=m["correlation_id"],
        content=m["content"],
        model=m["model"],
        input_tokens=m["input_tokens"],
        output_tokens=m["output_tokens"],
        cost_usd=m["cost_usd"],
        cached=None if m["cached"] is None else bool(m["cached"]),
        created_at=m["created_at"],
    )
