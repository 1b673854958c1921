"""Alert storage: stored rules, alerts (live state and history), silences, the outbox.

Every write the engine makes goes through here, so a new engine over the same database
finds the alerts it had (a pending alert keeps its start time, a notified one is not
notified again). Outbox rows are claimed with a conditional UPDATE that only one process
can win; on PostgreSQL the candidates are first locked with ``FOR UPDATE SKIP LOCKED`` so
concurrent dispatchers take different rows instead of racing for the same ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatwatch.alerts.notification import Notification
from chatwatch.alerts.silences import Silence, parse_matchers
from chatwatch.alerts.state import Alert, AlertState, Notified
from chatwatch.alerts.tables import alert_outbox, alert_rules, alert_silences, alerts
from chatwatch.store.db import Database

__all__ = ["AlertStore", "NameTaken", "OutboxRow", "OutboxState"]


class NameTaken(Exception):
    """A stored rule of that name exists already."""


class OutboxState:
    """Outbox row states."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored notification and its delivery progress."""

    id: str
    channel: str
    kind: str
    group_key: str
    payload: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created_at: float
    updated_at: float
    sent_at: float | None

    def to_json(self) -> dict[str, Any]:
        """What the API shows of a notification (its alerts by id)."""
        from chatwatch.timefmt import format_time as iso_time

        data = orjson.loads(self.payload)
        return {
            "id": self.id,
            "channel": self.channel,
            "kind": self.kind,
            "group_key": self.group_key,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "alert_ids": [a["id"] for a in data.get("alerts", [])],
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
            "next_attempt_at": (
                iso_time(self.next_attempt_at) if self.state == OutboxState.QUEUED else None
            ),
            "sent_at": None if self.sent_at is None else iso_time(self.sent_at),
        }


def _row_to_outbox(row: Any) -> OutboxRow:
    return OutboxRow(
        id=row.id,
        channel=row.channel,
        kind=row.kind,
        group_key=row.group_key,
        payload=row.payload,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
    )


def _alert_values(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "fingerprint": a.fingerprint,
        "rule": a.rule,
        "state": a.state.value,
        "labels": orjson.dumps(a.labels).decode(),
        "annotations": orjson.dumps(a.annotations).decode(),
        "value": a.value,
        "starts_at": a.starts_at,
        "fired_at": a.fired_at,
        "ends_at": a.ends_at,
        "acknowledged": int(a.acknowledged),
        "acknowledged_at": a.acknowledged_at,
        "acknowledged_by": a.acknowledged_by,
        "notified": a.notified.value,
        "last_notified_at": a.last_notified_at,
        "escalated_at": a.escalated_at,
        "resolved_by": a.resolved_by,
    }


def _row_to_alert(row: Any) -> Alert:
    return Alert(
        id=row.id,
        rule=row.rule,
        labels=orjson.loads(row.labels),
        annotations=orjson.loads(row.annotations),
        starts_at=row.starts_at,
        state=AlertState(row.state),
        value=row.value,
        fired_at=row.fired_at,
        ends_at=row.ends_at,
        acknowledged=bool(row.acknowledged),
        acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by,
        notified=Notified(row.notified),
        last_notified_at=row.last_notified_at,
        escalated_at=row.escalated_at,
        resolved_by=row.resolved_by,
        seq=row.seq,
        fingerprint=row.fingerprint,
    )


def _row_to_silence(row: Any) -> Silence:
    return Silence(
        id=row.id,
        matchers=parse_matchers(orjson.loads(row.matchers)),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        comment=row.comment,
        created_by=row.created_by,
        created_at=row.created_at,
    )


class AlertStore:
    """Queries over the alert tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- rules ----------------------------------------------------------------------------

    async def list_rules(self) -> list[dict[str, Any]]:
        """Stored (API) rule definitions, by name."""
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(select(alert_rules.c.spec).order_by(alert_rules.c.name))
            ).all()
        return [orjson.loads(r.spec) for r in rows]

    async def insert_rule(self, spec: dict[str, Any], now: float) -> None:
        """Store a new rule; NameTaken if its name is stored already."""
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    insert(alert_rules).values(
                        name=spec["name"],
                        spec=orjson.dumps(spec).decode(),
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            raise NameTaken(spec["name"]) from None

    async def update_rule(self, spec: dict[str, Any], now: float) -> bool:
        """Replace a stored rule; False when there is none of that name."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(alert_rules)
                .where(alert_rules.c.name == spec["name"])
                .values(spec=orjson.dumps(spec).decode(), updated_at=now)
            )
        return bool(result.rowcount)

    async def delete_rule(self, name: str) -> bool:
        """Delete a stored rule; False when there is none of that name."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(delete(alert_rules).where(alert_rules.c.name == name))
        return bool(result.rowcount)

    # --- alerts ---------------------------------------------------------------------------

    async def save_alerts(
        self, inserts: Sequence[Alert], updates: Sequence[Alert], deletes: Sequence[str]
    ) -> None:
        """Write one evaluation's changes in one transaction (new rows get their ``seq``)."""
        if not (inserts or updates or deletes):
            return
        async with self.db.engine.begin() as conn:
            for a in inserts:
                result = await conn.execute(insert(alerts).values(**_alert_values(a)))
                key = result.inserted_primary_key
                a.seq = None if key is None else int(key[0])
            for a in updates:
                await self._update(conn, a)
            if deletes:
                await conn.execute(delete(alerts).where(alerts.c.id.in_(list(deletes))))

    @staticmethod
    async def _update(conn: AsyncConnection, a: Alert) -> None:
        values = _alert_values(a)
        values.pop("id")
        await conn.execute(update(alerts).where(alerts.c.id == a.id).values(**values))

    async def load_open(self) -> list[Alert]:
        """Alerts an engine must hold at start: pending, firing, or resolved but not yet
        notified as resolved after a firing notification."""
        query = select(alerts).where(
            or_(
                alerts.c.state.in_([AlertState.PENDING.value, AlertState.FIRING.value]),
                and_(
                    alerts.c.state == AlertState.RESOLVED.value,
                    alerts.c.notified == Notified.FIRING.value,
                ),
            )
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(alerts.c.seq))).all()
        return [_row_to_alert(r) for r in rows]

    async def get_alert(self, alert_id: str) -> Alert | None:
        """One alert by id."""
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(select(alerts).where(alerts.c.id == alert_id))).first()
        return None if row is None else _row_to_alert(row)

    async def history(
        self, limit: int, before: int | None = None, state: str | None = None
    ) -> tuple[list[Alert], int | None]:
        """Alerts newest first, ``limit`` of them below ``before`` (a seq); and the next cursor."""
        query = select(alerts).order_by(alerts.c.seq.desc()).limit(limit + 1)
        if before is not None:
            query = query.where(alerts.c.seq < before)
        if state is not None:
            query = query.where(alerts.c.state == state)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        items = [_row_to_alert(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return items, (items[-1].seq if more else None)

    async def prune(self, before: float, *, outbox_before: float | None = None) -> int:
        """Delete resolved alerts and silences that ended before ``before``, and delivered or
        failed notifications last touched before ``outbox_before`` (default ``before``);
        returns how many alerts went."""
        outbox_cutoff = before if outbox_before is None else outbox_before
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                delete(alerts).where(
                    alerts.c.state == AlertState.RESOLVED.value,
                    alerts.c.ends_at < before,
                    alerts.c.notified != Notified.FIRING.value,
                )
            )
            await conn.execute(
                delete(alert_outbox).where(
                    alert_outbox.c.state.in_([OutboxState.SENT, OutboxState.FAILED]),
                    alert_outbox.c.updated_at < outbox_cutoff,
                )
            )
            await conn.execute(delete(alert_silences).where(alert_silences.c.ends_at < before))
        return int(result.rowcount or 0)

    # --- silences -------------------------------------------------------------------------

    async def insert_silence(self, s: Silence) -> None:
        """Store a silence."""
        async with self.db.engine.begin() as conn:
            await conn.execute(
                insert(alert_silences).values(
                    id=s.id,
                    matchers=orjson.dumps([m.to_json() for m in s.matchers]).decode(),
                    starts_at=s.starts_at,
                    ends_at=s.ends_at,
                    comment=s.comment,
                    created_by=s.created_by,
                    created_at=s.created_at,
                )
            )

    async def list_silences(self) -> list[Silence]:
        """Every stored silence, newest first."""
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(alert_silences).order_by(alert_silences.c.created_at.desc())
                )
            ).all()
        return [_row_to_silence(r) for r in rows]

    async def end_silence(self, silence_id: str, now: float) -> bool:
        """Make a silence end now (kept for the record); False when unknown."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(alert_silences)
                .where(alert_silences.c.id == silence_id)
                .values(
                    ends_at=func.min(alert_silences.c.ends_at, now)
                    if self.db.dialect == "sqlite"
                    else func.least(alert_silences.c.ends_at, now)
                )
            )
        return bool(result.rowcount)

    # --- outbox ---------------------------------------------------------------------------

    async def enqueue(
        self, notifications: Iterable[Notification], alerts_done: Sequence[Alert], now: float
    ) -> None:
        """Store notifications and the alerts' new notified marks in one transaction."""
        rows = [
            {
                "id": n.id,
                "channel": n.channel,
                "kind": n.kind.value,
                "group_key": n.group_key[:256],
                "payload": n.to_json().decode(),
                "state": OutboxState.QUEUED,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for n in notifications
        ]
        async with self.db.engine.begin() as conn:
            if rows:
                await conn.execute(insert(alert_outbox), rows)
            for a in alerts_done:
                await self._update(conn, a)

    async def outbox_backlog(self, created_before: float) -> int:
        """Notifications still queued or being sent that were stored before ``created_before``."""
        waiting = alert_outbox.c.state.in_((OutboxState.QUEUED, OutboxState.SENDING))
        query = (
            select(func.count())
            .select_from(alert_outbox)
            .where(waiting, alert_outbox.c.created_at < created_before)
        )
        async with self.db.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def claim(self, node: str, now: float, lease: float, limit: int) -> list[OutboxRow]:
        """Take up to ``limit`` due rows for ``node`` until ``now + lease``: queued rows whose
        time has come, and rows whose sender's lease ran out (it died mid-send)."""
        due = or_(
            and_(alert_outbox.c.state == OutboxState.QUEUED, alert_outbox.c.next_attempt_at <= now),
            and_(alert_outbox.c.state == OutboxState.SENDING, alert_outbox.c.claimed_until < now),
        )
        claimed: list[OutboxRow] = []
        async with self.db.engine.begin() as conn:
            query = (
                select(alert_outbox.c.id)
                .where(due)
                .order_by(alert_outbox.c.next_attempt_at)
                .limit(limit)
            )
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = [r.id for r in (await conn.execute(query)).all()]
            for row_id in ids:
                result = await conn.execute(
                    update(alert_outbox)
                    .where(alert_outbox.c.id == row_id, due)
                    .values(
                        state=OutboxState.SENDING,
                        claimed_by=node,
                        claimed_until=now + lease,
                        attempts=alert_outbox.c.attempts + 1,
                        updated_at=now,
                    )
                )
                if result.rowcount == 1:
                    row = (
                        await conn.execute(select(alert_outbox).where(alert_outbox.c.id == row_id))
                    ).one()
                    claimed.append(_row_to_outbox(row))
        return claimed

    async def finish(
        self,
        row_id: str,
        node: str,
        state: str,
        now: float,
        *,
        error: str | None = None,
        next_at: float | None = None,
    ) -> bool:
        """Record the outcome of this node's attempt (only while it still holds the claim)."""
        values: dict[str, Any] = {
            "state": state,
            "updated_at": now,
            "claimed_by": None,
            "claimed_until": None,
        }
        if error is not None:
            values["last_error"] = error[:1000]
        if next_at is not None:
            values["next_attempt_at"] = next_at
        if state == OutboxState.SENT:
            values["sent_at"] = now
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(alert_outbox)
                .where(
                    alert_outbox.c.id == row_id,
                    alert_outbox.c.state == OutboxState.SENDING,
                    alert_outbox.c.claimed_by == node,
                )
                .values(**values)
            )
        return bool(result.rowcount)

    async def next_due(self) -> float | None:
        """When the earliest queued row is due (None when nothing waits)."""
        async with self.db.engine.connect() as conn:
            queued = (
                await conn.execute(
                    select(func.min(alert_outbox.c.next_attempt_at)).where(
                        alert_outbox.c.state == OutboxState.QUEUED
                    )
                )
            ).scalar()
            leased = (
                await conn.execute(
                    select(func.min(alert_outbox.c.claimed_until)).where(
                        alert_outbox.c.state == OutboxState.SENDING
                    )
                )
            ).scalar()
        times = [t for t in (queued, leased) if t is not None]
        return min(times) if times else None

    async def notifications(
        self, limit: int, *, state: str | None = None, before: str | None = None
    ) -> tuple[list[OutboxRow], str | None]:
        """Stored notifications newest first (``before``: the cursor, a row id)."""
        query = select(alert_outbox).order_by(
            alert_outbox.c.created_at.desc(), alert_outbox.c.id.desc()
        )
        if state is not None:
            query = query.where(alert_outbox.c.state == state)
        async with self.db.engine.connect() as conn:
            if before is not None:
                anchor = (
                    await conn.execute(
                        select(alert_outbox.c.created_at).where(alert_outbox.c.id == before)
                    )
                ).scalar()
                if anchor is not None:
                    query = query.where(
                        or_(
                            alert_outbox.c.created_at < anchor,
                            and_(alert_outbox.c.created_at == anchor, alert_outbox.c.id < before),
                        )
                    )
            rows = (await conn.execute(query.limit(limit + 1))).all()
        items = [_row_to_outbox(r) for r in rows[:limit]]
        return items, (items[-1].id if len(rows) > limit and items else None)

    async def outbox_row(self, row_id: str) -> OutboxRow | None:
        """One stored notification."""
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(select(alert_outbox).where(alert_outbox.c.id == row_id))
            ).first()
        return None if row is None else _row_to_outbox(row)
