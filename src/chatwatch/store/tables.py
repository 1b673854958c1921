"""The chat tables (SQLAlchemy Core). Other parts add their tables to the same ``metadata``."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["messages", "metadata", "metrics_history", "sessions", "users"]

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # guest | user
    Column("created_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(64), ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    # An integer key that grows with time keeps history reads in insertion order for free.
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("session_id", String(64), ForeignKey("sessions.id"), nullable=False),
    Column("role", String(16), nullable=False),  # user | assistant | system
    Column("client_id", String(64), nullable=True),  # the client's message id
    Column("correlation_id", String(64), nullable=False),
    Column("content", Text, nullable=False),
    Column("model", String(128), nullable=True),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("cost_usd", Float, nullable=True),
    Column("cached", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_messages_session_seq", "session_id", "seq"),
)

metrics_history = Table(
    "metrics_history",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("timestamp", Float, nullable=False, index=True),
    Column("data", Text, nullable=False),  # the headline figures as JSON
)
