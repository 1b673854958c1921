"""Security monitoring: auth failures per IP over a sliding minute, frame bursts, bounds."""

from __future__ import annotations

from chatwatch.clock import FakeClock
from chatwatch.events import EventBus, FrameRejected, RejectionsSuppressed, SecurityEvent
from chatwatch.observe.metrics import json_api as metrics_api
from chatwatch.observe.security import IPActivity, SecurityMonitor
from chatwatch.observe.signals import Signals
from tests.observe import factory


def auth_failed(ip: str = "203.0.113.1") -> SecurityEvent:
    """A failed token check from ``ip``."""
    return SecurityEvent("auth_failed", ip, "bot/1", None, "bad token")


def bad_frame(conn: str = "c1", code: str = "invalid_json") -> FrameRejected:
    """A rejected frame on ``conn``."""
    return FrameRejected(code, conn, "u1", "corr", "bad", 10)


def collect(bus: EventBus) -> list[SecurityEvent]:
    """Every SecurityEvent emitted on ``bus`` from now on."""
    seen: list[SecurityEvent] = []
    bus.subscribe(SecurityEvent, seen.append)
    return seen


def test_auth_failures_per_minute_total_and_by_ip(bus: EventBus, clock: FakeClock) -> None:
    """Failures are counted per minute in total and per client IP."""
    monitor = SecurityMonitor(bus, clock)
    for _ in range(3):
        bus.emit(auth_failed("10.0.0.1"))
    bus.emit(auth_failed("10.0.0.2"))
    bus.emit(SecurityEvent("admin_denied", "10.0.0.3", "ua", "u", "not admin"))
    assert monitor.auth_failures_per_minute() == 4.0
    assert monitor.auth_failures_per_minute_by_ip() == {"10.0.0.1": 3.0, "10.0.0.2": 1.0}


def test_failures_leave_the_window_after_a_minute(bus: EventBus, clock: FakeClock) -> None:
    """A failure counts for 60 s and then no longer (no sleeping: the clock is fake)."""
    monitor = SecurityMonitor(bus, clock)
    bus.emit(auth_failed())
    clock.advance(30)
    bus.emit(auth_failed())
    clock.advance(30)
    assert monitor.auth_failures_per_minute() == 1.0
    clock.advance(30)
    assert monitor.auth_failures_per_minute() == 0.0
    assert monitor.auth_failures_per_minute_by_ip() == {}


def test_counts_by_type_since_start_are_labelled_count_objects(
    bus: EventBus, clock: FakeClock, signals: Signals, security: SecurityMonitor
) -> None:
    """Every security event type is counted since start, as a count object whose window the
    summary states, beside the last minute's figures with that window's own length.

    Tried: the old summary, whose ``by_type`` held bare cumulative integers next to
    per-minute figures with nothing saying which covered what.
    """
    bus.emit(auth_failed())
    bus.emit(SecurityEvent("rate_limited", "ip", "ua", "u", "slow down"))
    bus.emit(SecurityEvent("rate_limited", "ip", "ua", "u", "slow down"))
    for _ in range(400):  # past both windows, with the runtime monitor's ticks
        clock.advance(1)
        signals.metrics.tick()
    body = metrics_api.security(signals.read(), security.recent())
    assert body["window_seconds"] == 300 and body["reset_at"].endswith("Z")
    assert body["by_type"]["auth_failed"] == {"total": 1, "since_reset": 1, "per_second": 0.0}
    assert body["by_type"]["rate_limited"]["total"] == 2
    assert body["by_type"]["guest_login_flood"]["total"] == 0  # the vocabulary, pre-bound
    recent = body["recent"]
    assert recent["window_seconds"] == 60
    assert recent["auth_failures"] == 0 and recent["auth_failures_per_minute"] == 0.0
    assert recent["top_ips"] == []


def test_tracked_ips_are_capped(bus: EventBus, clock: FakeClock) -> None:
    """Memory stays bounded: beyond max_ips the least recent IPs are forgotten."""
    monitor = SecurityMonitor(bus, clock, max_ips=100)
    for i in range(1000):
        bus.emit(auth_failed(f"10.1.{i // 256}.{i % 256}"))
    by_ip = monitor.auth_failures_per_minute_by_ip()
    assert len(by_ip) == 100
    assert "10.1.3.231" in by_ip  # the most recent one is kept
    assert monitor.auth_failures_per_minute() == 1000.0  # the total is not capped


def test_frame_burst_becomes_one_security_event(bus: EventBus, clock: FakeClock) -> None:
    """Ten malformed frames in a minute on a connection give one malformed_frame event."""
    SecurityMonitor(bus, clock, burst_threshold=10)
    seen = collect(bus)
    bus.emit(factory.opened("c1"))
    for _ in range(25):
        bus.emit(bad_frame("c1"))
    assert [e.type for e in seen] == ["malformed_frame"]
    assert seen[0].client_ip == "127.0.0.1"
    assert seen[0].user_agent == "pytest"
    assert "10 malformed frames" in seen[0].detail


def test_burst_is_reported_again_in_a_later_window(bus: EventBus, clock: FakeClock) -> None:
    """After the window, a new burst is a new event."""
    SecurityMonitor(bus, clock, burst_threshold=3)
    seen = collect(bus)
    bus.emit(factory.opened("c1"))
    for _ in range(3):
        bus.emit(bad_frame("c1", "message_too_large"))
    clock.advance(61)
    for _ in range(3):
        bus.emit(bad_frame("c1", "message_too_large"))
    assert [e.type for e in seen] == ["oversized_frame", "oversized_frame"]


def test_burst_spread_over_connections_of_one_ip(bus: EventBus, clock: FakeClock) -> None:
    """Bad frames from many connections of one address add up to a burst of that IP."""
    SecurityMonitor(bus, clock, burst_threshold=4)
    seen = collect(bus)
    for i in range(4):
        bus.emit(factory.opened(f"c{i}"))
        bus.emit(bad_frame(f"c{i}"))
    assert len(seen) == 1
    assert "address 127.0.0.1" in seen[0].detail


def test_few_bad_frames_and_other_codes_are_no_burst(bus: EventBus, clock: FakeClock) -> None:
    """Below the threshold, or for rate limiting, no burst event is emitted."""
    SecurityMonitor(bus, clock, burst_threshold=5)
    seen = collect(bus)
    for _ in range(4):
        bus.emit(bad_frame("c1"))
    for _ in range(20):
        bus.emit(bad_frame("c1", "rate_limited"))
    assert seen == []


def test_summary_lists_the_busiest_ips(bus: EventBus, clock: FakeClock) -> None:
    """The summary orders IPs by events in the window, with their auth failures."""
    monitor = SecurityMonitor(bus, clock)
    for _ in range(3):
        bus.emit(auth_failed("10.9.9.9"))
    bus.emit(SecurityEvent("too_many_connections", "10.8.8.8", "ua", None, "over 50"))
    recent = monitor.recent()
    assert recent.window_seconds == 60 and recent.auth_failures == 3
    assert recent.top_ips == [IPActivity("10.9.9.9", 3, 3), IPActivity("10.8.8.8", 1, 0)]
    assert recent.tracked_ips == 2


def test_suppressed_bad_frames_count_towards_a_burst(bus: EventBus, clock: FakeClock) -> None:
    """Frames a connection summarised instead of announcing still make a burst of that IP."""
    SecurityMonitor(bus, clock, burst_threshold=10)
    seen = collect(bus)
    bus.emit(factory.opened("c1"))
    bus.emit(bad_frame("c1"))
    bus.emit(RejectionsSuppressed("c1", "u1", "127.0.0.1", 12, (("invalid_json", 12),), 10.0))
    assert [e.type for e in seen] == ["malformed_frame"]
    assert seen[0].client_ip == "127.0.0.1" and "13 malformed frames" in seen[0].detail
