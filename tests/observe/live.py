"""A real hub on the test's bus, opening and closing connections as the WebSocket route does.

The hub owns live state (connections, sessions, users); listeners only read it. So a test
of what listeners make of live state registers connections in a real ``Hub`` first and
emits the event after, in the route's order.
"""

from __future__ import annotations

from typing import Any

from chatwatch.chat.hub import Hub, HubEntry
from chatwatch.clock import Clock
from chatwatch.events import EventBus
from tests.observe import factory as f


async def _send(_frame: dict[str, Any]) -> None:
    return None


async def _close(_code: int, _reason: str) -> None:
    return None


async def _drain(_grace: float) -> None:
    return None


class LiveChat:
    """Opens and closes connections on a real ``Hub`` and announces them on the bus."""

    def __init__(self, bus: EventBus, clock: Clock, *, per_ip: int = 10_000) -> None:
        self.bus = bus
        self.hub = Hub(bus, clock, per_ip)

    def open(
        self,
        conn: str = "c1",
        user: str = "u1",
        session: str = "s1",
        *,
        resumed: bool = False,
        ip: str = "127.0.0.1",
        announce: bool = True,
    ) -> None:
        """Register ``conn`` in the hub (starting its session if new), then emit it opened
        (unless ``announce`` is False: the hub knows it, the listeners have not heard)."""
        reservation = self.hub.reserve(ip)
        assert reservation is not None, "over the hub's per-IP limit"
        entry = HubEntry(conn, user, session, ip, send=_send, close=_close, drain=_drain)
        self.hub.register(entry, reservation, resumed=resumed)
        if announce:
            self.bus.emit(f.opened(conn, user, session, resumed=resumed))

    def close(
        self,
        conn: str = "c1",
        user: str = "u1",
        *,
        reason: str = "client_closed",
        duration: float = 1.0,
    ) -> None:
        """Unregister ``conn`` (ending its session if last), then emit it closed."""
        self.hub.unregister(conn)
        self.bus.emit(f.closed(conn, user, reason=reason, duration=duration))
