"""The database: one async engine for SQLite or PostgreSQL, migrated at start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["Database", "sqlite_path"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x63686174  # "chat": the advisory lock every replica's migration takes
_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


class Database:
    """An async engine plus the operations every store module needs."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            self._ensure_sqlite_dir(url)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @staticmethod
    def _ensure_sqlite_dir(url: str) -> None:
        path = sqlite_path(url)
        if path is None:
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # SQLite creates the database 0644 and gives its -wal and -shm the database's mode:
        # created here first as 0600, all three are private whatever the process umask.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    async def migrate(self) -> None:
        """Apply every Alembic migration not yet applied."""
        # Alembic keeps its migration context in module globals: one migration at a time
        # per process. Across processes, PostgreSQL serialises with an advisory lock and
        # SQLite with its write lock (the CLI also migrates once before forking workers).
        loop = asyncio.get_running_loop()
        lock = _MIGRATION_LOCKS.setdefault(loop, asyncio.Lock())
        async with lock, self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            await conn.run_sync(_upgrade)

    async def ping(self, limit: float = 2.0) -> bool:
        """True when the database answers a trivial query within ``limit`` seconds."""
        try:
            async with asyncio.timeout(limit), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite+aiosqlite:///`` URL (None for PostgreSQL or an in-memory one)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    path = path.split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the log writer and chat requests proceed together; NORMAL sync is safe with WAL.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _upgrade(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
