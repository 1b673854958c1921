"""Metrics history: a snapshot of the headline figures every interval, kept for a retention.

Rows live in ``metrics_history`` (timestamp as epoch seconds, the figures as JSON text), so
one schema serves SQLite and PostgreSQL. A failed write is logged and the loop goes on: losing
one snapshot must never take anything else down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete, func, insert, select

from chatwatch.clock import Clock
from chatwatch.observe.logs import get_logger
from chatwatch.store.db import Database
from chatwatch.store.tables import metrics_history

__all__ = ["MAX_LIMIT", "MetricsHistory"]

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
_log = get_logger("metrics")


class MetricsHistory:
    """Stores ``snapshot()`` every ``interval`` s and forgets rows older than ``retention`` s."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        snapshot: Callable[[], dict[str, Any]],
        interval: float,
        retention: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.clock = clock
        self.snapshot = snapshot
        self.interval = interval
        self.retention = retention
        self._sleep = sleep

    async def run(self) -> None:
        """Record and prune forever (run it as a task; cancel it to stop)."""
        while True:
            await self._sleep(self.interval)
            try:
                await self.record()
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("error.metrics_history", component="metrics")

    async def record(self) -> float:
        """Store one snapshot now; returns its timestamp."""
        now = self.clock.time()
        data = json.dumps(self.snapshot(), separators=(",", ":"), allow_nan=False)
        async with self.db.engine.begin() as conn:
            await conn.execute(insert(metrics_history).values(timestamp=now, data=data))
        return now

    async def prune(self) -> int:
        """Delete snapshots older than the retention; returns how many went."""
        cutoff = self.clock.time() - self.retention
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                delete(metrics_history).where(metrics_history.c.timestamp < cutoff)
            )
        return int(result.rowcount or 0)

    async def query(
        self,
        since: float | None = None,
        until: float | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[dict[str, Any]]:
        """Snapshots with ``since <= timestamp <= until``, oldest first, at most ``limit``."""
        # With since: the first `limit` from there (page forward from the last timestamp
        # seen); without: the latest `limit`, still oldest first.
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        t = metrics_history.c
        conds = []
        if since is not None:
            conds.append(t.timestamp >= since)
        if until is not None:
            conds.append(t.timestamp <= until)
        stmt = select(t.timestamp, t.data).where(*conds)
        if since is None:
            stmt = stmt.order_by(t.timestamp.desc(), t.id.desc()).limit(limit)
        else:
            stmt = stmt.order_by(t.timestamp.asc(), t.id.asc()).limit(limit)
        async with self.db.engine.connect() as conn:
            rows = list((await conn.execute(stmt)).all())
        if since is None:
            rows.reverse()
        return [{"timestamp": ts, **json.loads(data)} for ts, data in rows]

    async def count(self) -> int:
        """How many snapshots are stored."""
        async with self.db.engine.connect() as conn:
            value = await conn.scalar(select(func.count()).select_from(metrics_history))
        return int(value or 0)
