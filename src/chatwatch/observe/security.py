"""Security monitoring: who is failing to log in, and who sends bursts of bad frames.

Listens to ``SecurityEvent`` (auth failures, admin access denied, rate-limit hits, too
many sockets — emitted by the chat and API code), ``FrameRejected`` and
``RejectionsSuppressed``. A burst of oversized or malformed frames from one connection or
one IP becomes one ``SecurityEvent`` (``oversized_frame`` / ``malformed_frame``) per window,
so metrics, logs and alerts see the burst rather than every frame.

Counting is in one-second buckets over a sliding window, so memory per IP is bounded by
the window length, and the number of IPs tracked is capped (least recently seen first out).
Totals by type since start are not kept here: they are the metrics' (one home per figure).
The only per-connection state is where each connection comes from (its IP and user agent),
because a rejected frame's event does not say it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from chatwatch.clock import Clock
from chatwatch.events import (
    ConnectionClosed,
    ConnectionOpened,
    EventBus,
    FrameRejected,
    RejectionsSuppressed,
    SecurityEvent,
    attach,
    handles,
)
from chatwatch.vocabulary import ErrorCode, SecurityEventType

__all__ = ["AUTH_FAILURE_TYPES", "IPActivity", "RecentSecurity", "SecurityMonitor"]

AUTH_FAILURE_TYPES = frozenset({SecurityEventType.AUTH_FAILED})
_FRAME_KINDS: dict[str, str] = {
    ErrorCode.MESSAGE_TOO_LARGE: SecurityEventType.OVERSIZED_FRAME,
    ErrorCode.INVALID_JSON: SecurityEventType.MALFORMED_FRAME,
    ErrorCode.INVALID_FRAME: SecurityEventType.MALFORMED_FRAME,
}


@dataclass(frozen=True, slots=True)
class IPActivity:
    """One client IP's security events and auth failures within the window."""

    client_ip: str
    events: int
    auth_failures: int


@dataclass(frozen=True, slots=True)
class RecentSecurity:
    """The sliding window's figures: every count here covers ``window_seconds``."""

    window_seconds: float
    auth_failures: int
    top_ips: list[IPActivity]
    tracked_ips: int


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

    def add(self, key: str, now: float, n: int = 1) -> int:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(self._span)
            if len(self._windows) > self._cap:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        window.add(now, n)
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
    """Counts security events per IP over a window, and turns frame bursts into events."""

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
        self._auth = _Window(window)
        self._auth_by_ip = _Keyed(window, max_ips)
        self._events_by_ip = _Keyed(window, max_ips)
        self._frames = _Keyed(window, max_ips + max_connections)
        self._burst_until: OrderedDict[str, float] = OrderedDict()
        self._connections: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._max_connections = max_connections
        attach(bus, self)

    # --- listeners -----------------------------------------------------------------------

    @handles(SecurityEvent)
    def on_security_event(self, e: SecurityEvent) -> None:
        """Count one security event in the window, by IP (and auth failures apart)."""
        now = self.clock.time()
        self._events_by_ip.add(e.client_ip, now)
        if e.type in AUTH_FAILURE_TYPES:
            self._auth.add(now)
            self._auth_by_ip.add(e.client_ip, now)

    @handles(ConnectionOpened)
    def on_connection_opened(self, e: ConnectionOpened) -> None:
        """Remember where a connection comes from, for the frames it will send."""
        self._connections[e.connection_id] = (e.client_ip, e.user_agent)
        if len(self._connections) > self._max_connections:
            self._connections.popitem(last=False)

    @handles(ConnectionClosed)
    def on_connection_closed(self, e: ConnectionClosed) -> None:
        """Forget a closed connection."""
        self._connections.pop(e.connection_id, None)
        for kind in set(_FRAME_KINDS.values()):
            self._frames.forget(f"conn:{e.connection_id}:{kind}")

    @handles(FrameRejected)
    def on_frame_rejected(self, e: FrameRejected) -> None:
        """Count a bad frame; a burst from one connection or IP becomes a SecurityEvent."""
        ip, agent = self._connections.get(e.connection_id, ("unknown", ""))
        self._bad_frames(e.connection_id, e.user_id, ip, agent, e.code, 1)

    @handles(RejectionsSuppressed)
    def on_rejections_suppressed(self, e: RejectionsSuppressed) -> None:
        """Bad frames counted in a summary count towards bursts like the others."""
        _, agent = self._connections.get(e.connection_id, ("", ""))
        for code, count in e.by_code:
            if count > 0:
                self._bad_frames(e.connection_id, e.user_id, e.client_ip, agent, code, count)

    def _bad_frames(
        self, connection_id: str, user_id: str, ip: str, agent: str, code: str, n: int
    ) -> None:
        kind = _FRAME_KINDS.get(code)
        if kind is None:
            return
        now = self.clock.time()
        keys = (f"conn:{connection_id}:{kind}", f"ip:{ip}:{kind}")
        counts = [self._frames.add(key, now, n) for key in keys]
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
        where = f"connection {connection_id}" if key.startswith("conn:") else f"address {ip}"
        self.bus.emit(
            SecurityEvent(
                type=kind,
                client_ip=ip,
                user_agent=agent,
                user_id=user_id or None,
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

    def recent(self, top: int = 10) -> RecentSecurity:
        """The window's auth failures and the IPs with the most events in it."""
        now = self.clock.time()
        events = self._events_by_ip.totals(now)
        auth = self._auth_by_ip.totals(now)
        busiest = sorted(events.items(), key=lambda kv: -kv[1])[:top]
        return RecentSecurity(
            window_seconds=self.window,
            auth_failures=self._auth.total(now),
            top_ips=[IPActivity(ip, n, auth.get(ip, 0)) for ip, n in busiest],
            tracked_ips=len(self._events_by_ip),
        )
