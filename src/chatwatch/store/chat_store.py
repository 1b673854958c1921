"""Users, sessions and messages: the chat's durable record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from chatwatch.store.db import Database
from chatwatch.store.tables import messages, sessions, users

__all__ = ["ChatStore", "DuplicateMessage", "Exchange", "StoredMessage", "StoredSession"]


class DuplicateMessage(Exception):
    """A user message whose client id the session already holds: a retry, not a new one."""


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
    reply_to: str | None = None
    error_code: str | None = None
    latency_ms: float | None = None
    meta: dict[str, Any] | None = None

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
                latency_ms=self.latency_ms,
            )
        if self.reply_to is not None:
            out["reply_to"] = self.reply_to
        if self.role == "error":
            out["code"] = self.error_code
        return out


@dataclass(frozen=True, slots=True)
class Exchange:
    """A stored user message and its answer (a reply or an error row), if it has one."""

    question: StoredMessage
    answer: StoredMessage | None


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
        reply_to: str | None = None,
        error_code: str | None = None,
        latency_ms: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Store one message; returns its sequence number.

        Raises DuplicateMessage for a user message whose ``client_id`` the session holds.
        """
        try:
            return await self._insert_message(
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
                reply_to=reply_to,
                error_code=error_code,
                latency_ms=latency_ms,
                meta=None if meta is None else orjson.dumps(meta).decode(),
            )
        except IntegrityError as err:
            if role == "user" and _is_unique_violation(err):
                raise DuplicateMessage(client_id) from err
            raise

    async def _insert_message(self, **values: Any) -> int:
        async with self._db.engine.begin() as conn:
            result = await conn.execute(insert(messages).values(**values).returning(messages.c.seq))
            return int(result.scalar_one())

    async def find_exchange(self, session_id: str, client_id: str) -> Exchange | None:
        """The stored message ``client_id`` of a session and its answer, if any."""
        async with self._db.engine.connect() as conn:
            question = (
                await conn.execute(
                    select(messages).where(
                        messages.c.session_id == session_id,
                        messages.c.client_id == client_id,
                        messages.c.role == "user",
                    )
                )
            ).first()
            if question is None:
                return None
            answer = (
                await conn.execute(
                    select(messages)
                    .where(
                        messages.c.session_id == session_id,
                        messages.c.seq > question.seq,
                        messages.c.reply_to == client_id,
                        messages.c.role.in_(("assistant", "error")),
                    )
                    .order_by(messages.c.seq)
                    .limit(1)
                )
            ).first()
        return Exchange(_message(question), None if answer is None else _message(answer))

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


def _is_unique_violation(err: IntegrityError) -> bool:
    """True for a unique-key clash (not, say, a missing session), on SQLite and PostgreSQL."""
    orig = err.orig
    for candidate in (orig, getattr(orig, "__cause__", None)):
        if getattr(candidate, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
            return True
    return "UNIQUE constraint failed" in str(orig)


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
        reply_to=m["reply_to"],
        error_code=m["error_code"],
        latency_ms=m["latency_ms"],
        meta=None if m["meta"] is None else orjson.loads(m["meta"]),
    )
