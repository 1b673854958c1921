"""Security monitoring: who is failing to log in, and who sends bursts of bad frames.

Listens to ``SecurityEvent`` (auth failures, admin access denied, rate-limit hits, too
many sockets — emitted by the chat and API code) and ``FrameRejected``. A burst of
oversized or malformed frames from one connection or one IP becomes one
``SecurityEvent`` (``oversized_frame`` / ``malformed_frame``) per window, so metrics,
logs and alerts see the burst rather than every frame.

Counting is in one-second buckets over a sliding window, so memory per IP is bounded by
the window length, and the number of IPs tracked is capped (least recently seen first out).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from chatwatch.clock import Clock
from chatwatch.events import (
    ConnectionClosed,
    ConnectionOpened,
    EventBus,
    FrameRejected,
    SecurityEvent,
)

__all__ = ["AUTH_FAILURE_TYPES", "SecurityMonitor"]

AUTH_FAILURE_TYPES = frozenset({"auth_failed"})
_FRAME_KINDS = {
    "message_too_large": "oversized_frame",
    "invalid_json": "malformed_frame",
    "invalid_frame": "malformed_frame",
}
_MAX_TYPES = 64


class _Window:
    """Counts in one-second buckets over the last ``span`` seconds."""

    __slots__ = ("_buckets", "_span")

    def __init__(self, span: float) -> None:
        self._span = span
        self._buckets: deque[list[int]] = deque()

    def add(self, now: float, n: int = 1) -> None:
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([second, n])
        self._prune(now)

    def total(self, now: float) -> int:
        self._prune(now)
        return sum(count for _, count in self._buckets)

    def _prune(self, now: float) -> None:
        oldest = now - self._span
        while self._buckets and self._buckets[0][0] <= oldest:
            self._buckets.popleft()


class _Keyed:
    """A ``_Window`` per key, at most ``cap`` keys, the least recently used evicted."""

    def __init__(self, span: float, cap: int) -> None:
        self._span = span
        self._cap = cap
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def add(self, key: str, now: float) -> int:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(self._span)
            if len(self._windows) > self._cap:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        window.add(now)
        return window.total(now)

    def totals(self, now: float) -> dict[str, int]:
        out = {}
        for key in list(self._windows):
            count = self._windows[key].total(now)
            if count:
                out[key] = count
            else:
                del self._windows[key]
        return out

    def forget(self, key: str) -> None:
        self._windows.pop(key, None)

    def __len__(self) -> int:
        return len(self._windows)


class SecurityMonitor:
    """Counts security events per type and IP, and turns frame bursts into events."""

    def __init__(
        self,
        bus: EventBus,
        clock: Clock,
        *,
        window: float = 60.0,
        burst_threshold: int = 10,
        max_ips: int = 10_000,
        max_connections: int = 100_000,
    ) -> None:
        self.bus = bus
        self.clock = clock
        self.window = window
        self.burst_threshold = burst_threshold
        self.max_ips = max_ips
        self._by_type: dict[str, int] = {}
        self._auth = _Window(window)
        self._auth_by_ip = _Keyed(window, max_ips)
        self._events_by_ip = _Keyed(window, max_ips)
        self._frames = _Keyed(window, max_ips + max_connections)
        self._burst_until: OrderedDict[str, float] = OrderedDict()
        self._connections: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._max_connections = max_connections
        bus.subscribe(SecurityEvent, self.on_security_event)
        bus.subscribe(FrameRejected, self.on_frame_rejected)
        bus.subscribe(ConnectionOpened, self.on_connection_opened)
        bus.subscribe(ConnectionClosed, self.on_connection_closed)

    # --- listeners -----------------------------------------------------------------------

    def on_security_event(self, e: SecurityEvent) -> None:
        """Count one security event."""
        now = self.clock.time()
        if e.type in self._by_type or len(self._by_type) < _MAX_TYPES:
            self._by_type[e.type] = self._by_type.get(e.type, 0) + 1
        self._events_by_ip.add(e.client_ip, now)
        if e.type in AUTH_FAILURE_TYPES:
            self._auth.add(now)
            self._auth_by_ip.add(e.client_ip, now)

    def on_connection_opened(self, e: ConnectionOpened) -> None:
        """Remember where a connection comes from, for the frames it will send."""
        self._connections[e.connection_id] = (e.client_ip, e.user_agent)
        if len(self._connections) > self._max_connections:
            self._connections.popitem(last=False)

    def on_connection_closed(self, e: ConnectionClosed) -> None:
        """Forget a closed connection."""
        self._connections.pop(e.connection_id, None)
        for kind in set(_FRAME_KINDS.values()):
            self._frames.forget(f"conn:{e.connection_id}:{kind}")

    def on_frame_rejected(self, e: FrameRejected) -> None:
        """Count a bad frame; a burst from one connection or IP becomes a SecurityEvent."""
        kind = _FRAME_KINDS.get(e.code)
        if kind is None:
            return
        now = self.clock.time()
        ip, agent = self._connections.get(e.connection_id, ("unknown", ""))
        keys = (f"conn:{e.connection_id}:{kind}", f"ip:{ip}:{kind}")
        counts = [self._frames.add(key, now) for key in keys]
        crossed = [
            (count, key)
            for count, key in zip(counts, keys, strict=True)
            if count >= self.burst_threshold and self._burst_until.get(key, 0.0) <= now
        ]
        if not crossed:
            return
        # One event per burst: both keys go quiet for a window, whichever crossed.
        for key in keys:
            self._burst_until[key] = now + self.window
            self._burst_until.move_to_end(key)
        while len(self._burst_until) > self.max_ips:
            self._burst_until.popitem(last=False)
        count, key = crossed[0]
        where = f"connection {e.connection_id}" if key.startswith("conn:") else f"address {ip}"
        self.bus.emit(
            SecurityEvent(
                type=kind,
                client_ip=ip,
                user_agent=agent,
                user_id=e.user_id or None,
                detail=f"{count} {kind.replace('_', ' ')}s within {self.window:g}s from {where}",
            )
        )

    # --- reading (for the alerting signals and the admin API) ----------------------------

    def auth_failures_per_minute(self) -> float:
        """Authentication failures over the last window, per minute."""
        return self._auth.total(self.clock.time()) * 60.0 / self.window

    def auth_failures_per_minute_by_ip(self) -> dict[str, float]:
        """The same, per client IP (only IPs with failures in the window)."""
        scale = 60.0 / self.window
        return {ip: n * scale for ip, n in self._auth_by_ip.totals(self.clock.time()).items()}

    def counts_by_type(self) -> dict[str, int]:
        """Security events since start, by type."""
        return dict(self._by_type)

    def summary(self, top: int = 10) -> dict[str, Any]:
        """Totals by type and the IPs with the most events in the window."""
        now = self.clock.time()
        events = self._events_by_ip.totals(now)
        auth = self._auth_by_ip.totals(now)
        busiest = sorted(events.items(), key=lambda kv: -kv[1])[:top]
        return {
            "window_seconds": self.window,
            "by_type": self.counts_by_type(),
            "auth_failures_per_minute": self.auth_failures_per_minute(),
            "top_ips": [
                {"client_ip": ip, "events": n, "auth_failures": auth.get(ip, 0)}
                for ip, n in busiest
            ],
            "tracked_ips": len(self._events_by_ip),
        }
