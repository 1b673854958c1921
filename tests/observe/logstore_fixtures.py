"""Migrated databases for the log store tests: SQLite in tmp_path, PostgreSQL in a schema.

Each PostgreSQL test gets a schema of its own (dropped afterwards), so tests running
against the shared test database never see each other's rows.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chatwatch.clock import Clock
from chatwatch.observe.logs.pipeline import LogMetrics
from chatwatch.observe.logs.store import LogStore
from chatwatch.store.db import Database
from tests.fakes.services import require_postgres

__all__ = ["make_record", "migrated_db", "new_store"]


@asynccontextmanager
async def migrated_db(dialect: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated Database of ``dialect`` that is gone after the block."""
    if dialect == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}")
        await db.migrate()
        try:
            yield db
        finally:
            await db.dispose()
        return
    url = require_postgres()
    schema = f"logs_test_{secrets.token_hex(6)}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    db = Database(url)
    await db.engine.dispose()
    db.engine = create_async_engine(
        url, connect_args={"server_settings": {"search_path": schema}}, pool_size=5
    )
    try:
        await db.migrate()
        yield db
    finally:
        await db.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def new_store(db: Database, clock: Clock, metrics: LogMetrics, **kwargs: Any) -> LogStore:
    """A LogStore with test-friendly defaults (no retry delay)."""
    options: dict[str, Any] = {"queue_size": 1000, "batch_size": 50, "retry_delay": 0.0}
    options.update(kwargs)
    return LogStore(db, clock, metrics=metrics, **options)


def make_record(event: str, ts: float, **fields: Any) -> dict[str, Any]:
    """A record as the logging pipeline hands it over."""
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    record: dict[str, Any] = {
        "event": event,
        "level": "info",
        "component": "chat",
        "correlation_id": None,
        "timestamp": stamp,
    }
    record.update(fields)
    return record
