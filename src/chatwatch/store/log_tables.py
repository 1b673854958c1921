"""The stored log records (SQLAlchemy Core), on the shared ``metadata``.

One lean table: the id encodes the time (microseconds since the epoch, shifted left
10 bits, plus a per-writer node number), so "newest first", cursors, time ranges and
retention are all primary-key range scans and need no index of their own. Full-text
search lives beside it (FTS5 on SQLite, a generated ``tsv`` column with a GIN index on
PostgreSQL); see migration 0003, which is the schema of record.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, String, Table, Text

from chatwatch.store.tables import metadata

__all__ = ["ID_NODE_BITS", "log_records"]

ID_NODE_BITS = 10

log_records = Table(
    "log_records",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),  # epoch seconds, as in the record's timestamp
    Column("level", String(16), nullable=False),
    Column("event", String(128), nullable=False),
    Column("component", String(64), nullable=True),
    Column("correlation_id", String(64), nullable=True),
    Column("user_id", String(128), nullable=True),
    Column("session_id", String(128), nullable=True),
    Column("message", Text, nullable=True),  # short searchable text (message, detail, error)
    Column("data", Text, nullable=False),  # the whole record as JSON
)
