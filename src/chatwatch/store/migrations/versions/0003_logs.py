"""Stored log records with full-text search.

SQLite: a rowid table (the id is time-ordered, so no time index is needed) and an FTS5
index over the short text (event, message) and the correlation id, kept by triggers
(external content: the text is not stored twice). A B-tree index on random correlation
ids would cost more at ingest than the FTS5 segment writes it rides on.
PostgreSQL: the same table, a generated ``tsv`` column with a GIN index, and a B-tree on
(correlation_id, id) for the trail of one message.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SQLITE = (
    """
    CREATE TABLE log_records (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        level TEXT NOT NULL,
        event TEXT NOT NULL,
        component TEXT,
        correlation_id TEXT,
        user_id TEXT,
        session_id TEXT,
        message TEXT,
        data TEXT NOT NULL
    )
    """,
    """
    CREATE VIRTUAL TABLE log_fts USING fts5(
        event, message, correlation_id,
        content='log_records', content_rowid='id', columnsize=0
    )
    """,
    """
    CREATE TRIGGER log_records_ai AFTER INSERT ON log_records BEGIN
        INSERT INTO log_fts(rowid, event, message, correlation_id)
        VALUES (new.id, new.event, new.message, new.correlation_id);
    END
    """,
    """
    CREATE TRIGGER log_records_ad AFTER DELETE ON log_records BEGIN
        INSERT INTO log_fts(log_fts, rowid, event, message, correlation_id)
        VALUES ('delete', old.id, old.event, old.message, old.correlation_id);
    END
    """,
)

_POSTGRES = (
    """
    CREATE TABLE log_records (
        id BIGINT PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        level VARCHAR(16) NOT NULL,
        event VARCHAR(128) NOT NULL,
        component VARCHAR(64),
        correlation_id VARCHAR(64),
        user_id VARCHAR(128),
        session_id VARCHAR(128),
        message TEXT,
        data TEXT NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (
            to_tsvector('simple'::regconfig,
                regexp_replace(event || ' ' || coalesce(message, ''), '[^[:alnum:]]+', ' ', 'g'))
        ) STORED
    )
    """,
    "CREATE INDEX ix_log_records_tsv ON log_records USING gin (tsv)",
    """
    CREATE INDEX ix_log_records_correlation_id ON log_records (correlation_id, id)
    WHERE correlation_id IS NOT NULL
    """,
)


def upgrade() -> None:
    """Create the log table and its search index for this database."""
    statements = _SQLITE if op.get_bind().dialect.name == "sqlite" else _POSTGRES
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    """Drop the log table and its search index."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS log_records_ad")
        op.execute("DROP TRIGGER IF EXISTS log_records_ai")
        op.execute("DROP TABLE IF EXISTS log_fts")
    op.execute("DROP TABLE IF EXISTS log_records")
