"""Read-only figures about AI spend from the stored messages."""

from __future__ import annotations

from sqlalchemy import func, select

from chatwatch.store.db import Database
from chatwatch.store.tables import messages

__all__ = ["spent_between"]


async def spent_between(db: Database, start: float, end: float) -> float:
    """The summed ``cost_usd`` of replies stored in ``[start, end)`` (epoch seconds)."""
    query = select(func.coalesce(func.sum(messages.c.cost_usd), 0.0)).where(
        messages.c.role == "assistant",
        messages.c.created_at >= start,
        messages.c.created_at < end,
    )
    async with db.engine.connect() as conn:
        value = (await conn.execute(query)).scalar_one()
    return float(value or 0.0)
