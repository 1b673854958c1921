"""The alert tables (SQLAlchemy Core) on the shared ``metadata``; migration 0005 is the
schema of record. Times are epoch seconds (floats), label sets and bodies JSON text, so
one schema serves SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from chatwatch.store.tables import metadata

__all__ = ["alert_outbox", "alert_rules", "alert_silences", "alerts"]

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("spec", Text, nullable=False),  # the rule definition as JSON
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    # The sequence orders history newest first and is its cursor.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(32), nullable=False, unique=True),
    Column("fingerprint", String(16), nullable=False),
    Column("rule", String(128), nullable=True),  # null: a manual alert
    Column("state", String(16), nullable=False),
    Column("labels", Text, nullable=False),
    Column("annotations", Text, nullable=False),
    Column("value", Float, nullable=True),
    Column("starts_at", Float, nullable=False),
    Column("fired_at", Float, nullable=True),
    Column("ends_at", Float, nullable=True),
    Column("acknowledged", Integer, nullable=False, server_default="0"),
    Column("acknowledged_at", Float, nullable=True),
    Column("acknowledged_by", String(128), nullable=True),
    Column("notified", String(16), nullable=False, server_default="none"),
    Column("last_notified_at", Float, nullable=True),
    Column("escalated_at", Float, nullable=True),
    Column("resolved_by", String(32), nullable=True),
    Index("ix_alerts_state", "state"),
    Index("ix_alerts_fingerprint", "fingerprint"),
)

alert_silences = Table(
    "alert_silences",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("matchers", Text, nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False, index=True),
    Column("comment", Text, nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("created_at", Float, nullable=False),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", String(32), primary_key=True),  # also the Idempotency-Key
    Column("channel", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # firing | resolved | repeat | escalation | test
    Column("group_key", String(256), nullable=False),
    Column("payload", Text, nullable=False),  # the notification as JSON
    Column("state", String(16), nullable=False),  # queued | sending | sent | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_until", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
    Index("ix_alert_outbox_due", "state", "next_attempt_at"),
)
