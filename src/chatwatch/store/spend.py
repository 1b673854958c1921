"""Read-only figures about AI spend from the stored messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from chatwatch.store.db import Database
from chatwatch.store.tables import messages, sessions

__all__ = ["TOP_USERS", "SpendByUser", "spend_by_user", "spent_between"]

# Bounds the per-user alert series: an alert label per user, never a metric label.
TOP_USERS = 50


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


@dataclass(frozen=True, slots=True)
class SpendByUser:
    """Spend over a span: the total and the biggest spenders, largest first."""

    total: float
    users: list[tuple[str, float]] = field(default_factory=list)


async def spend_by_user(
    db: Database, start: float, end: float, limit: int = TOP_USERS
) -> SpendByUser:
    """Total spend in ``[start, end)`` and the ``limit`` users who spent most (cost > 0)."""
    m = messages.c
    span = (m.role == "assistant", m.created_at >= start, m.created_at < end)
    cost = func.sum(m.cost_usd).label("cost")
    top = (
        select(sessions.c.user_id, cost)
        .select_from(messages.join(sessions, sessions.c.id == m.session_id))
        .where(*span, m.cost_usd > 0)
        .group_by(sessions.c.user_id)
        .order_by(cost.desc(), sessions.c.user_id)
        .limit(limit)
    )
    total_q = select(func.coalesce(func.sum(m.cost_usd), 0.0)).where(*span)
    async with db.engine.connect() as conn:
        total = (await conn.execute(total_q)).scalar_one()
        rows = (await conn.execute(top)).all()
    return SpendByUser(float(total or 0.0), [(str(u), float(c)) for u, c in rows])
