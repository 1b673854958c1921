"""Build the alert engine, its channels and its outbox dispatcher from Settings."""

from __future__ import annotations

from typing import Protocol

from chatwatch.alerts.channels import build_channel
from chatwatch.alerts.defaults import compile_rules
from chatwatch.alerts.engine import ActiveCounter, AlertEngine, EngineOptions
from chatwatch.alerts.outbox import Dispatcher, NotificationCounter
from chatwatch.alerts.signals_port import SignalSource
from chatwatch.alerts.slo import retention_warnings
from chatwatch.alerts.store import AlertStore
from chatwatch.clock import Clock
from chatwatch.config import Settings
from chatwatch.observe.logs import get_logger
from chatwatch.store.db import Database

__all__ = ["build_alert_engine", "public_url"]

_log = get_logger("alerts")


class _Counters(ActiveCounter, NotificationCounter, Protocol):
    """What ``ChatMetrics`` offers the engine and the dispatcher."""


def public_url(settings: Settings) -> str:
    """``server.public_url``, else ``http://<host>:<port>``."""
    return settings.server.external_url.rstrip("/")


def build_alert_engine(
    settings: Settings,
    db: Database,
    clock: Clock,
    source: SignalSource,
    counters: _Counters | None = None,
) -> AlertEngine:
    """An engine with the configured rules and channels (start it with ``await start()``)."""
    a = settings.alerts
    channels = {c.name: build_channel(c, timeout=a.delivery_timeout) for c in a.channels}
    store = AlertStore(db)
    dispatcher = Dispatcher(
        store,
        channels,
        clock,
        counter=counters,
        attempts=a.delivery_attempts,
        retry_initial=a.retry_initial,
        retry_max=a.retry_max,
        lease=a.delivery_timeout + 30.0,
    )
    options = EngineOptions(
        evaluation_interval=a.evaluation_interval,
        group_wait=a.group_wait,
        escalate_after=a.escalate_after,
        escalate_to=tuple(a.escalate_to),
        public_url=public_url(settings),
        logs_lookback=settings.metrics.window,
        history_retention=a.history_retention,
        outbox_retention=a.outbox_retention,
    )
    rules = compile_rules(a)
    for warning in retention_warnings(rules, settings.metrics.history_retention):
        _log.warning("alert.slo_history_short", component="alerts", detail=warning)
    return AlertEngine(
        store,
        source,
        clock,
        rules=rules,
        channels=channels,
        options=options,
        dispatcher=dispatcher,
        counter=counters,
    )
