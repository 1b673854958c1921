"""Metrics history snapshots.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the snapshot table: one row per snapshot, the figures as JSON text."""
    op.create_table(
        "metrics_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("timestamp", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_metrics_history_timestamp", "metrics_history", ["timestamp"])


def downgrade() -> None:
    """Drop the snapshot table."""
    op.drop_table("metrics_history")
