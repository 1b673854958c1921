"""Alerts: stored rules, alerts (state and history), silences and the notification outbox.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the four alert tables."""
    op.create_table(
        "alert_rules",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(128), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("annotations", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float, nullable=True),
        sa.Column("ends_at", sa.Float, nullable=True),
        sa.Column("acknowledged", sa.Integer, nullable=False, server_default="0"),
        sa.Column("acknowledged_at", sa.Float, nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("notified", sa.String(16), nullable=False, server_default="none"),
        sa.Column("last_notified_at", sa.Float, nullable=True),
        sa.Column("escalated_at", sa.Float, nullable=True),
        sa.Column("resolved_by", sa.String(32), nullable=True),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_index("ix_alerts_fingerprint", "alerts", ["fingerprint"])
    op.create_table(
        "alert_silences",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("matchers", sa.Text, nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_alert_silences_ends_at", "alert_silences", ["ends_at"])
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("group_key", sa.String(256), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_until", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=True),
    )
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["state", "next_attempt_at"])


def downgrade() -> None:
    """Drop the alert tables."""
    op.drop_table("alert_outbox")
    op.drop_table("alert_silences")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
