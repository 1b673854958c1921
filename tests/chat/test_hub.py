"""The hub: per-IP limits, session start/end events, broadcast and graceful shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatwatch.chat.hub import Hub, HubEntry
from chatwatch.clock import FakeClock
from chatwatch.events import BroadcastSent, Event, EventBus, SessionEnded, SessionStarted


class FakeSocket:
    """What the hub sees of one connection; records everything done to it."""

    def __init__(self, log: list[tuple[Any, ...]], name: str, *, broken: bool = False) -> None:
        self.log = log
        self.name = name
        self.broken = broken
        self.sent: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        if self.broken:
            raise ConnectionResetError("peer went away")
        self.sent.append(frame)

    async def close(self, code: int, reason: str) -> None:
        self.log.append(("close", self.name, code))

    async def drain(self, grace: float) -> None:
        await asyncio.sleep(0)  # let other drains interleave, as real ones would
        self.log.append(("drain", self.name, grace))


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hub(events: list[Event], clock: FakeClock) -> Hub:
    bus = EventBus()
    bus.subscribe_all(events.append)
    return Hub(bus, clock, connections_per_ip=2)


def entry(
    conn: str,
    *,
    session: str = "s1",
    user: str = "u1",
    ip: str = "10.0.0.1",
    socket: FakeSocket | None = None,
    log: list[tuple[Any, ...]] | None = None,
) -> HubEntry:
    sock = socket or FakeSocket(log if log is not None else [], conn)
    return HubEntry(
        connection_id=conn,
        user_id=user,
        session_id=session,
        client_ip=ip,
        send=sock.send,
        close=sock.close,
        drain=sock.drain,
    )


def connect(hub: Hub, e: HubEntry, resumed: bool = False) -> None:
    reservation = hub.reserve(e.client_ip)
    assert reservation is not None
    hub.register(e, reservation, resumed=resumed)


def of_type(events: list[Event], kind: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


# --- per-IP limit -----------------------------------------------------------------------


def test_reservations_stop_at_the_per_ip_limit(hub: Hub) -> None:
    """With a limit of 2, a third handshake from one IP is refused; another IP is not."""
    actual = [hub.reserve("10.0.0.1") is not None for _ in range(3)] + [
        hub.reserve("10.0.0.2") is not None
    ]
    assert actual == [True, True, False, True]


def test_open_connections_count_against_the_limit(hub: Hub) -> None:
    """Two registered sockets from one IP use its two slots: a third reservation is refused."""
    connect(hub, entry("c1"))
    connect(hub, entry("c2"))
    assert (hub.reserve("10.0.0.1"), hub.active_connections) == (None, 2)


def test_released_reservation_frees_the_slot(hub: Hub) -> None:
    """A handshake that failed and released its reservation gives the slot back."""
    first = hub.reserve("10.0.0.1")
    hub.reserve("10.0.0.1")
    assert first is not None
    hub.release(first)
    hub.release(first)  # releasing twice must not free a second slot
    assert [hub.reserve("10.0.0.1") is not None, hub.reserve("10.0.0.1")] == [True, None]


def test_closed_connection_frees_the_slot(hub: Hub) -> None:
    """After one of two sockets closes, the IP may open one more, and only one."""
    connect(hub, entry("c1"))
    connect(hub, entry("c2"))
    hub.unregister("c1")
    assert [hub.reserve("10.0.0.1") is not None, hub.reserve("10.0.0.1")] == [True, None]


def test_register_turns_the_reservation_into_a_socket(hub: Hub) -> None:
    """Registering does not count twice: reserve+register for 2 sockets, then the IP is full."""
    connect(hub, entry("c1"))
    assert [hub.reserve("10.0.0.1") is not None, hub.reserve("10.0.0.1")] == [True, None]


def test_unregister_of_unknown_connection_is_harmless(hub: Hub, events: list[Event]) -> None:
    """Unregistering an id twice (or never registered) changes nothing and emits nothing."""
    connect(hub, entry("c1"))
    hub.unregister("c1")
    events.clear()
    hub.unregister("c1")
    hub.unregister("never")
    assert (events, hub.active_connections, hub.reserve("10.0.0.1") is not None) == (
        [],
        0,
        True,
    )


# --- sessions ---------------------------------------------------------------------------


def test_session_started_once_for_two_connections(hub: Hub, events: list[Event]) -> None:
    """Two sockets on one session emit one SessionStarted carrying the resumed flag."""
    connect(hub, entry("c1"), resumed=True)
    connect(hub, entry("c2"))
    expected = [SessionStarted(session_id="s1", user_id="u1", resumed=True)]
    assert expected == of_type(events, SessionStarted)


def test_session_ends_once_when_the_last_connection_closes(
    hub: Hub, events: list[Event], clock: FakeClock
) -> None:
    """SessionEnded comes once, after the last of two sockets, with duration and messages."""
    connect(hub, entry("c1"))
    connect(hub, entry("c2"))
    hub.count_message("s1")
    hub.count_message("s1")
    hub.count_message("s1")
    clock.advance(42)
    hub.unregister("c1")
    ended_early = of_type(events, SessionEnded)
    hub.unregister("c2")
    expected = [SessionEnded(session_id="s1", user_id="u1", duration_s=42.0, messages=3)]
    assert ([], expected) == (ended_early, of_type(events, SessionEnded))


def test_reopened_session_starts_again(hub: Hub, events: list[Event]) -> None:
    """A session whose sockets all closed emits a new SessionStarted when resumed later."""
    connect(hub, entry("c1"))
    hub.unregister("c1")
    connect(hub, entry("c2"), resumed=True)
    expected = [
        SessionStarted(session_id="s1", user_id="u1", resumed=False),
        SessionStarted(session_id="s1", user_id="u1", resumed=True),
    ]
    assert expected == of_type(events, SessionStarted)


def test_active_counts(hub: Hub) -> None:
    """3 sockets, 2 sessions, 2 users: the hub's gauges say so, and drop on close."""
    connect(hub, entry("c1", session="s1", user="u1", ip="10.0.0.1"))
    connect(hub, entry("c2", session="s1", user="u1", ip="10.0.0.2"))
    connect(hub, entry("c3", session="s2", user="u2", ip="10.0.0.3"))
    before = (hub.active_connections, hub.active_sessions, hub.active_users)
    hub.unregister("c3")
    after = (hub.active_connections, hub.active_sessions, hub.active_users)
    assert (before, after) == ((3, 2, 2), (2, 1, 1))


def test_count_message_on_unknown_session_is_ignored(hub: Hub) -> None:
    """Counting a message for a session with no open socket raises nothing."""
    hub.count_message("ghost")
    assert hub.active_sessions == 0


# --- broadcast --------------------------------------------------------------------------


async def test_broadcast_reaches_every_socket(hub: Hub, events: list[Event]) -> None:
    """A broadcast to 3 sockets delivers to all 3 and emits BroadcastSent(3)."""
    log: list[tuple[Any, ...]] = []
    sockets = [FakeSocket(log, f"c{i}") for i in range(3)]
    for i, sock in enumerate(sockets):
        connect(hub, entry(f"c{i}", ip=f"10.0.0.{i}", socket=sock))
    frame = {"type": "notice", "text": "maintenance"}
    delivered = await hub.broadcast(frame)
    assert (3, [[frame]] * 3, [BroadcastSent(recipients=3)]) == (
        delivered,
        [s.sent for s in sockets],
        of_type(events, BroadcastSent),
    )


async def test_broadcast_counts_only_delivered(hub: Hub, events: list[Event]) -> None:
    """With one of 3 sockets broken, the broadcast reports 2 delivered and still reaches 2."""
    log: list[tuple[Any, ...]] = []
    sockets = [FakeSocket(log, "c0"), FakeSocket(log, "c1", broken=True), FakeSocket(log, "c2")]
    for i, sock in enumerate(sockets):
        connect(hub, entry(f"c{i}", ip=f"10.0.0.{i}", socket=sock))
    delivered = await hub.broadcast({"type": "notice"})
    assert (2, [1, 0, 1], [BroadcastSent(recipients=2)]) == (
        delivered,
        [len(s.sent) for s in sockets],
        of_type(events, BroadcastSent),
    )


async def test_broadcast_to_nobody(hub: Hub, events: list[Event]) -> None:
    """A broadcast with no sockets delivers 0 and says so."""
    assert (0, [BroadcastSent(recipients=0)]) == (
        await hub.broadcast({"type": "notice"}),
        of_type(events, BroadcastSent),
    )


# --- shutdown ---------------------------------------------------------------------------


async def test_shutdown_drains_everyone_before_closing(hub: Hub) -> None:
    """Shutdown drains every socket with the grace, then closes each with the given code."""
    log: list[tuple[Any, ...]] = []
    connect(hub, entry("c1", ip="10.0.0.1", log=log))
    connect(hub, entry("c2", ip="10.0.0.2", log=log))
    await hub.shutdown(grace=2.5, code=1012)
    drains = sorted(x for x in log if x[0] == "drain")
    closes = sorted(x for x in log if x[0] == "close")
    first_close = min(i for i, x in enumerate(log) if x[0] == "close")
    last_drain = max(i for i, x in enumerate(log) if x[0] == "drain")
    assert (drains, closes, last_drain < first_close, hub.draining) == (
        [("drain", "c1", 2.5), ("drain", "c2", 2.5)],
        [("close", "c1", 1012), ("close", "c2", 1012)],
        True,
        True,
    )


async def test_shutdown_default_code_is_going_away(hub: Hub) -> None:
    """Without a code, shutdown closes sockets with 1001 (going away)."""
    log: list[tuple[Any, ...]] = []
    connect(hub, entry("c1", log=log))
    await hub.shutdown(grace=0)
    assert [x for x in log if x[0] == "close"] == [("close", "c1", 1001)]


async def test_shutdown_closes_even_when_a_drain_fails(hub: Hub) -> None:
    """A drain that raises does not stop the other sockets from being closed."""
    log: list[tuple[Any, ...]] = []

    async def bad_drain(grace: float) -> None:
        raise RuntimeError("drain blew up")

    broken = entry("c1", ip="10.0.0.1", log=log)
    broken.drain = bad_drain
    connect(hub, broken)
    connect(hub, entry("c2", ip="10.0.0.2", log=log))
    await hub.shutdown(grace=1)
    assert sorted(x for x in log if x[0] == "close") == [
        ("close", "c1", 1001),
        ("close", "c2", 1001),
    ]


def test_hub_is_not_draining_before_shutdown(hub: Hub) -> None:
    """A fresh hub accepts connections (draining is False)."""
    assert hub.draining is False
