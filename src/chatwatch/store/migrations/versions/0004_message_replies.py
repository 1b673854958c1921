"""Message ids unique within a session; each answer row names the message it answers.

Revision ID: 0004
Revises: 0003

A retried message (same client id, same session) must find its first attempt and that
attempt's answer (SPEC §4: an idempotent retry), so user messages get a unique
(session_id, client_id) and answers (assistant replies and error outcomes) a ``reply_to``.
``latency_ms`` keeps each reply's latency for the conversation view; ``meta`` the frame's
extra fields (quick actions, hand-off, estimated usage) so a replay is the same frame.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the answer columns and the per-session uniqueness of client ids."""
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("reply_to", sa.String(64), nullable=True))
        batch.add_column(sa.Column("error_code", sa.String(32), nullable=True))
        batch.add_column(sa.Column("latency_ms", sa.Float, nullable=True))
        batch.add_column(sa.Column("meta", sa.Text, nullable=True))
    # Earlier versions accepted a repeated id as a new message: keep the first of each.
    op.execute(
        "DELETE FROM messages WHERE role = 'user' AND client_id IS NOT NULL AND seq NOT IN "
        "(SELECT MIN(seq) FROM messages WHERE role = 'user' AND client_id IS NOT NULL "
        "GROUP BY session_id, client_id)"
    )
    op.create_index(
        "ux_messages_session_client",
        "messages",
        ["session_id", "client_id"],
        unique=True,
        sqlite_where=sa.text("role = 'user'"),
        postgresql_where=sa.text("role = 'user'"),
    )


def downgrade() -> None:
    """Drop the answer columns and the uniqueness."""
    op.drop_index("ux_messages_session_client", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("meta")
        batch.drop_column("latency_ms")
        batch.drop_column("error_code")
        batch.drop_column("reply_to")
