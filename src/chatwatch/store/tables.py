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
    text,
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
    Column("role", String(16), nullable=False),  # user | assistant | error | system
    Column("client_id", String(64), nullable=True),  # the client's message id
    Column("correlation_id", String(64), nullable=False),
    Column("content", Text, nullable=False),
    Column("model", String(128), nullable=True),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("cost_usd", Float, nullable=True),
    Column("cached", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("reply_to", String(64), nullable=True),  # answers: the client id they answer
    Column("error_code", String(32), nullable=True),  # role "error": the frame's code
    Column("latency_ms", Float, nullable=True),  # assistant: message in → reply out
    Column("meta", Text, nullable=True),  # assistant: the frame's extra fields as JSON
    Index("ix_messages_session_seq", "session_id", "seq"),
    # A client id names one message per session: a repeat is a retry (SPEC §4).
    Index(
        "ux_messages_session_client",
        "session_id",
        "client_id",
        unique=True,
        sqlite_where=text("role = 'user'"),
        postgresql_where=text("role = 'user'"),
    ),
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
