"""A PostgreSQL database of a test's own, for servers that cannot be pointed at a schema.

The shared test database's ``public`` schema is used by many test runs at once (other
branches included, with their own migrations); a server started on a fresh database
migrates it from scratch and sees no one else's rows.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fakes.services import require_postgres

__all__ = ["fresh_postgres_url"]


@asynccontextmanager
async def fresh_postgres_url() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped after the block (skips without PostgreSQL)."""
    url = require_postgres()
    name = f"chatwatch_test_{secrets.token_hex(6)}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.rsplit("/", 1)[0] + "/" + name
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
