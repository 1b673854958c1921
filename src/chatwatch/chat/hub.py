"""Every open chat connection on this process: limits, sessions, broadcast, shutdown."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from chatwatch.chat.providers.base import ChatTurn
from chatwatch.clock import Clock
from chatwatch.events import BroadcastSent, EventBus, SessionEnded, SessionStarted

__all__ = ["Hub", "HubEntry", "Reservation", "SessionLive"]

SendFn = Callable[[dict[str, Any]], Awaitable[None]]
CloseFn = Callable[[int, str], Awaitable[None]]


@dataclass(slots=True)
class Reservation:
    """A connection slot held for one handshake."""

    client_ip: str
    released: bool = False


@dataclass(slots=True)
class SessionLive:
    """A session with at least one open connection (tabs share it).

    ``context`` is what the AI remembers of the conversation, shared by every socket of
    the session so a second tab continues the same conversation; ``pending`` holds the
    messages being answered right now, by client id, so a retry of one waits for the first
    attempt's answer instead of asking the AI twice.
    """

    session_id: str
    user_id: str
    started: float
    context: deque[ChatTurn]
    connections: int = 0
    messages: int = 0
    pending: dict[str, asyncio.Future[None]] = field(default_factory=dict)


@dataclass(slots=True)
class HubEntry:
    """What the hub needs of a connection to reach and stop it."""

    connection_id: str
    user_id: str
    session_id: str
    client_ip: str
    send: SendFn
    close: CloseFn
    drain: Callable[[float], Awaitable[None]]


class Hub:
    """Registry of live connections; enforces the per-IP limit and drives shutdown."""

    def __init__(self, bus: EventBus, clock: Clock, connections_per_ip: int) -> None:
        self._bus = bus
        self._clock = clock
        self._per_ip_limit = connections_per_ip
        self._entries: dict[str, HubEntry] = {}
        self._per_ip: Counter[str] = Counter()
        self._sessions: dict[str, SessionLive] = {}
        self._reserved: Counter[str] = Counter()
        self.draining = False

    @property
    def active_connections(self) -> int:
        """Open connections."""
        return len(self._entries)

    @property
    def active_sessions(self) -> int:
        """Sessions with an open connection."""
        return len(self._sessions)

    @property
    def active_users(self) -> int:
        """Distinct users with an open connection."""
        return len({e.user_id for e in self._entries.values()})

    def reserve(self, client_ip: str) -> Reservation | None:
        """Hold a connection slot for ``client_ip`` during the handshake; None if over limit."""
        if self._per_ip[client_ip] + self._reserved[client_ip] >= self._per_ip_limit:
            return None
        self._reserved[client_ip] += 1
        return Reservation(client_ip)

    def release(self, reservation: Reservation) -> None:
        """Give back a slot (idempotent: a consumed or released reservation is a no-op)."""
        if reservation.released:
            return
        reservation.released = True
        ip = reservation.client_ip
        self._reserved[ip] -= 1
        if self._reserved[ip] <= 0:
            del self._reserved[ip]

    def register(
        self,
        entry: HubEntry,
        reservation: Reservation,
        *,
        resumed: bool,
        history: Iterable[ChatTurn] = (),
        max_context: int = 20,
    ) -> SessionLive:
        """Turn a reservation into an open connection; returns its (maybe shared) session."""
        self.release(reservation)
        self._entries[entry.connection_id] = entry
        self._per_ip[entry.client_ip] += 1
        live = self._sessions.get(entry.session_id)
        if live is None:
            live = SessionLive(
                entry.session_id,
                entry.user_id,
                self._clock.monotonic(),
                deque(history, maxlen=max_context),
            )
            self._sessions[entry.session_id] = live
            self._bus.emit(
                SessionStarted(session_id=entry.session_id, user_id=entry.user_id, resumed=resumed)
            )
        live.connections += 1
        return live

    def count_message(self, session_id: str) -> None:
        """One more user message on a live session."""
        live = self._sessions.get(session_id)
        if live is not None:
            live.messages += 1

    def unregister(self, connection_id: str) -> None:
        """Forget a closed connection; ends its session when it was the last one."""
        entry = self._entries.pop(connection_id, None)
        if entry is None:
            return
        self._per_ip[entry.client_ip] -= 1
        if self._per_ip[entry.client_ip] <= 0:
            del self._per_ip[entry.client_ip]
        live = self._sessions.get(entry.session_id)
        if live is not None:
            live.connections -= 1
            if live.connections <= 0:
                del self._sessions[entry.session_id]
                self._bus.emit(
                    SessionEnded(
                        session_id=live.session_id,
                        user_id=live.user_id,
                        duration_s=self._clock.monotonic() - live.started,
                        messages=live.messages,
                    )
                )

    async def broadcast(self, frame: dict[str, Any]) -> int:
        """Send ``frame`` to every open connection; returns how many got it."""
        entries = list(self._entries.values())
        results = await asyncio.gather(*(e.send(frame) for e in entries), return_exceptions=True)
        delivered = sum(1 for r in results if not isinstance(r, BaseException))
        self._bus.emit(BroadcastSent(recipients=delivered))
        return delivered

    async def shutdown(self, grace: float, code: int = 1001) -> None:
        """Refuse new sockets, let in-flight replies finish within ``grace``, close the rest."""
        self.draining = True
        entries = list(self._entries.values())
        await asyncio.gather(*(e.drain(grace) for e in entries), return_exceptions=True)
        await asyncio.gather(
            *(e.close(code, "server shutting down") for e in entries), return_exceptions=True
        )
