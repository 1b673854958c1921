"""One registration mechanism for every listener: ``@handles`` on methods, ``attach`` on a bus."""

from __future__ import annotations

import pytest

from chatwatch.events import (
    BroadcastSent,
    CacheLookup,
    CacheStored,
    Event,
    EventBus,
    FeatureUsed,
    attach,
    handlers_of,
    handles,
)


class TwoHandlers:
    """A listener of two event types."""

    def __init__(self) -> None:
        self.seen: list[Event] = []

    @handles(CacheLookup)
    def on_lookup(self, e: CacheLookup) -> None:
        """Record a look-up."""
        self.seen.append(e)

    @handles(BroadcastSent)
    def on_broadcast(self, e: BroadcastSent) -> None:
        """Record a broadcast."""
        self.seen.append(e)

    def not_a_handler(self, e: Event) -> None:
        """Undecorated: never subscribed."""
        raise AssertionError("not subscribed")


def test_a_listener_gets_exactly_its_events():
    """Two decorated methods get their two event types, in order, and nothing else."""
    bus = EventBus()
    listener = TwoHandlers()
    assert attach(bus, listener) == 2
    events: list[Event] = [
        CacheLookup(hit=True, entries=1),
        FeatureUsed("ping"),
        BroadcastSent(recipients=2),
        CacheStored(entries=2),
        CacheLookup(hit=False, entries=2),
    ]
    for e in events:
        bus.emit(e)
    assert listener.seen == [events[0], events[2], events[4]]


def test_a_raising_handler_is_reported_and_the_others_still_run():
    """A handler that raises goes to the bus's error reporter; other listeners still hear."""
    reported: list[tuple[Event, BaseException]] = []
    bus = EventBus(on_listener_error=lambda e, exc: reported.append((e, exc)))

    class Broken:
        @handles(CacheLookup)
        def explode(self, e: CacheLookup) -> None:
            raise RuntimeError("listener bug")

    first, second = TwoHandlers(), TwoHandlers()
    attach(bus, first)
    attach(bus, Broken())
    attach(bus, second)
    event = CacheLookup(hit=True, entries=0)
    bus.emit(event)  # never raises to the emitter
    assert first.seen == [event] and second.seen == [event]
    assert len(reported) == 1
    assert reported[0][0] is event and str(reported[0][1]) == "listener bug"


def test_one_method_may_handle_several_types_and_subclasses_override():
    """``@handles(A, B)`` subscribes both; a subclass's override replaces its base's handler."""

    class Base:
        def __init__(self) -> None:
            self.seen: list[str] = []

        @handles(CacheLookup, CacheStored)
        def on_cache(self, e: Event) -> None:
            self.seen.append("base " + e.name)

        @handles(FeatureUsed)
        def on_feature(self, e: FeatureUsed) -> None:
            self.seen.append("feature")

    class Child(Base):
        @handles(CacheLookup)
        def on_cache(self, e: Event) -> None:
            self.seen.append("child " + e.name)

        def on_feature(self, e: FeatureUsed) -> None:  # undecorated: no longer a handler
            self.seen.append("never")

    child = Child()
    assert [t for t, _ in handlers_of(child)] == [CacheLookup]
    bus = EventBus()
    attach(bus, child)
    bus.emit(CacheLookup(hit=True, entries=0))
    bus.emit(CacheStored(entries=1))
    bus.emit(FeatureUsed("ping"))
    assert child.seen == ["child cache.lookup"]


def test_attach_refuses_a_listener_without_handlers():
    """Attaching an object with no ``@handles`` method is a mistake, said at once."""
    with pytest.raises(TypeError, match="no @handles"):
        attach(EventBus(), object())


def test_handles_takes_only_event_classes():
    """``@handles()`` without classes, or with a non-event, fails where it is written."""
    with pytest.raises(TypeError):
        handles()
    with pytest.raises(TypeError, match="Event classes"):
        handles(str)  # type: ignore[arg-type]


def test_every_listener_in_the_app_registers_by_decorator():
    """Metrics, log records and security each declare their handlers with ``@handles``."""
    from chatwatch.observe.logs.records import EventLogger
    from chatwatch.observe.metrics.recorder import ChatMetrics
    from chatwatch.observe.security import SecurityMonitor

    for cls in (ChatMetrics, EventLogger, SecurityMonitor):
        marked = [
            name
            for name, attr in vars(cls).items()
            if name.startswith("on_") and getattr(attr, "__chatwatch_handles__", None)
        ]
        unmarked = [
            name
            for name, attr in vars(cls).items()
            if name.startswith("on_") and callable(attr) and name not in marked
        ]
        assert marked and not unmarked, (cls.__name__, unmarked)
