"""The running service's parts, built once by ``app.py`` and reached by routers."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from chatwatch.alerts.engine import AlertEngine
from chatwatch.auth import Authenticator
from chatwatch.chat.connection import ChatDeps
from chatwatch.chat.hub import Hub
from chatwatch.chat.limits import ChatLimits
from chatwatch.chat.sessions import Sessions
from chatwatch.clock import Clock
from chatwatch.config import Settings
from chatwatch.events import EventBus
from chatwatch.observe.health import HealthChecker
from chatwatch.observe.logs.store import LogStore
from chatwatch.observe.metrics.history import MetricsHistory
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.security import SecurityMonitor
from chatwatch.observe.signals import Signals
from chatwatch.store.chat_store import ChatStore
from chatwatch.store.db import Database

__all__ = ["Services"]


@dataclass
class Services:
    """Everything a request handler may need; one per process."""

    settings: Settings
    clock: Clock
    bus: EventBus
    db: Database
    store: ChatStore
    auth: Authenticator
    hub: Hub
    sessions: Sessions
    chat: ChatDeps
    limits: ChatLimits
    metrics: ChatMetrics
    history: MetricsHistory
    health: HealthChecker
    logstore: LogStore
    security: SecurityMonitor
    signals: Signals
    alerts: AlertEngine
    registry: CollectorRegistry
