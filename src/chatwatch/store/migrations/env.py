"""Alembic environment: migrations run on the connection the application hands over."""

from __future__ import annotations

from alembic import context

from chatwatch.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("chatwatch runs its migrations itself at start (Database.migrate)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
