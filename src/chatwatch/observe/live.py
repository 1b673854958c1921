"""What is live right now, read from its one owner (the hub), never kept again by a listener."""

from __future__ import annotations

from typing import Protocol

__all__ = ["LiveCounts"]


class LiveCounts(Protocol):
    """Open connections, sessions with an open connection, and distinct users behind them.

    ``chatwatch.chat.hub.Hub`` is the owner; metrics, signals and health only read it.
    """

    @property
    def active_connections(self) -> int:
        """Open connections."""
        ...

    @property
    def active_sessions(self) -> int:
        """Sessions with at least one open connection."""
        ...

    @property
    def active_users(self) -> int:
        """Distinct users with at least one open connection."""
        ...
