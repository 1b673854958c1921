"""Indexes the retention purge reads by: messages by time, sessions by last use.

Without them every purge chunk would scan the whole messages or sessions table to find
the expired rows; with them it reads just the rows it deletes (store/retention.py).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two indexes."""
    op.create_index("ix_messages_created_at", "messages", ["created_at"])
    op.create_index("ix_sessions_last_seen_at", "sessions", ["last_seen_at"])


def downgrade() -> None:
    """Drop the two indexes."""
    op.drop_index("ix_sessions_last_seen_at", table_name="sessions")
    op.drop_index("ix_messages_created_at", table_name="messages")
