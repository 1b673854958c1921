"""The running service's signals for the alert engine, read from what ``main`` has today.

This file is the only place the engine meets the metrics: it builds a ``StaticReading``
from one ``ChatMetrics.read()`` (plus the JSON API's derived rates), the security
monitor's auth-failure counts and the runtime monitor's readings. When
``observe/signals.py`` lands, swap ``MetricsSignalSource`` for an adapter over it.
"""

from __future__ import annotations

from chatwatch.alerts.signals_port import Series, StaticReading
from chatwatch.observe.metrics import json_api
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.security import SecurityMonitor

__all__ = ["MetricsSignalSource"]


class MetricsSignalSource:
    """Signals of SPEC §6 from ``ChatMetrics`` and ``SecurityMonitor``."""

    def __init__(self, metrics: ChatMetrics, security: SecurityMonitor) -> None:
        self.metrics = metrics
        self.security = security

    def read(self) -> StaticReading:
        """Every signal, read now."""
        r = self.metrics.read()
        g = r.window_growth
        handled = g.get("messages.received", 0.0) + g.get("messages.rejected", 0.0)
        opened, failed = g.get("connections.opened", 0.0), g.get("connections.failed", 0.0)
        hits, misses = g.get("cache.hits", 0.0), g.get("cache.misses", 0.0)
        ai_requests, ai_failed = g.get("ai.requests", 0.0), g.get("ai.failed", 0.0)
        response = r.latencies["response"]
        ai_duration = r.latencies["ai_duration"]
        rt = r.runtime
        out = StaticReading()
        data = out.data
        data["error_rate"] = [Series({}, json_api.errors(r)["error_rate"], handled)]
        data["connection_success_rate"] = [
            Series({}, json_api.connections(r)["success_rate"], opened + failed)
        ]
        data["response_time_p95_seconds"] = [Series({}, response.p95, response.count)]
        data["ai_response_time_p95_seconds"] = [Series({}, ai_duration.p95, ai_duration.count)]
        data["cache_hit_rate"] = [Series({}, json_api.cache(r)["hit_rate"], hits + misses)]
        data["ai_cost_usd_24h"] = [Series({}, r.ai_cost_usd_24h)]
        data["ai_error_rate"] = [
            Series({}, ai_failed / ai_requests if ai_requests > 0 else None, ai_requests)
        ]
        by_ip = self.security.auth_failures_per_minute_by_ip()
        data["auth_failures_per_minute"] = [
            Series({}, self.security.auth_failures_per_minute()),
            *(Series({"client_ip": ip}, n) for ip, n in by_ip.items()),
        ]
        data["active_connections"] = [Series({}, float(r.active_connections))]
        data["messages_per_second"] = [Series({}, r.per_second.get("messages.received", 0.0))]
        lag = rt.loop_lag_seconds
        data["event_loop_lag_seconds"] = [Series({}, lag)]
        rss = rt.rss_bytes
        data["memory_rss_bytes"] = [Series({}, None if rss is None else float(rss))]
        return out
