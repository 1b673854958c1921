"""Build the ASGI application from Settings: wiring only, no logic."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatwatch.alerts.factory import build_alert_engine
from chatwatch.alerts.signal_adapter import MetricsSignalSource
from chatwatch.api import admin_chat, admin_page, chat_history, chat_ws, health
from chatwatch.api import auth as auth_api
from chatwatch.api.admin_alerts import build_admin_alerts_router
from chatwatch.api.admin_logs import build_admin_logs_router
from chatwatch.api.admin_metrics import build_admin_metrics_router
from chatwatch.api.correlation import CorrelationMiddleware
from chatwatch.api.deps import require_admin
from chatwatch.api.metrics_endpoint import build_metrics_endpoint
from chatwatch.auth import Authenticator, load_or_create_secret
from chatwatch.chat.cache import ResponseCache, make_cache
from chatwatch.chat.connection import ChatDeps
from chatwatch.chat.consultant import Consultant
from chatwatch.chat.hub import Hub
from chatwatch.chat.pricing import PriceBook
from chatwatch.chat.providers.base import AIProvider
from chatwatch.chat.sessions import Sessions
from chatwatch.clock import Clock, SystemClock
from chatwatch.config import Settings
from chatwatch.events import CacheEvicted, Event, EventBus
from chatwatch.observe.context import start_background_job
from chatwatch.observe.health import HealthChecker
from chatwatch.observe.logs.pipeline import LogMetrics, configure_logging, get_logger
from chatwatch.observe.logs.records import EventLogger
from chatwatch.observe.logs.store import LogStore
from chatwatch.observe.metrics.exposition import new_registry
from chatwatch.observe.metrics.history import MetricsHistory
from chatwatch.observe.metrics.json_api import headline_of
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.metrics.runtime import RuntimeMonitor
from chatwatch.observe.security import SecurityMonitor
from chatwatch.services import Services
from chatwatch.store.chat_store import ChatStore
from chatwatch.store.db import Database

__all__ = ["Secrets", "build_app", "resolve_secrets"]


@dataclass(frozen=True, slots=True)
class Secrets:
    """The JWT secret and admin token in force, and whether the admin token is new."""

    jwt_secret: str
    admin_token: str
    admin_token_created: bool


def resolve_secrets(settings: Settings) -> Secrets:
    """Configured secrets, else the ones kept in the data directory (created on first start)."""
    data_dir = settings.server.data_dir
    jwt_secret = settings.auth.jwt_secret or load_or_create_secret(data_dir / "secret")[0]
    if settings.auth.admin_token:
        return Secrets(jwt_secret, settings.auth.admin_token, False)
    token, created = load_or_create_secret(data_dir / "admin_token")
    return Secrets(jwt_secret, token, created)


def _provider(settings: Settings) -> AIProvider:
    ai = settings.ai
    if ai.provider == "openai":
        from chatwatch.chat.providers.openai import OpenAIProvider

        assert ai.base_url is not None  # checked by AISettings
        return OpenAIProvider(
            ai.base_url, ai.model_name, ai.api_key, ai.timeout, ai.first_byte_timeout
        )
    from chatwatch.chat.providers.builtin import BuiltinProvider

    return BuiltinProvider(ai.model_name)


def _cache(settings: Settings, bus: EventBus, clock: Clock) -> ResponseCache | None:
    # Off means no cache at all (no look-ups counted), not an empty one.
    if not settings.cache.enabled or settings.cache.max_entries == 0 or settings.cache.ttl == 0:
        return None

    def on_evict(count: int) -> None:
        bus.emit(CacheEvicted(count=count, entries=cache.entries))

    cache = make_cache(settings.cache, settings.redis.url, clock, on_evict)
    return cache


def build_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    provider: AIProvider | None = None,
) -> CorrelationMiddleware:
    """The chatwatch ASGI app (FastAPI behind the correlation middleware); parts start in
    its lifespan. Attributes of the FastAPI app (``state``…) are reachable on the result."""
    clock = clock or SystemClock()
    registry = registry if registry is not None else new_registry()
    secrets = resolve_secrets(settings)
    db = Database(settings.database_url)

    # Logging first, so that everything built below logs in the final shape.
    log_metrics = LogMetrics(registry)
    logstore = LogStore(
        db,
        clock,
        queue_size=settings.logging.queue_size,
        batch_size=settings.logging.batch_size,
        retention_days=settings.logging.retention_days,
        metrics=log_metrics,
    )
    configure_logging(
        settings.logging,
        sink=logstore.submit if settings.logging.store else None,
        metrics=log_metrics,
        clock=clock,
        secrets=(
            secrets.admin_token,
            secrets.jwt_secret,
            settings.ai.api_key,
            settings.metrics.token,
            *(c.secret for c in settings.alerts.channels),
            *(c.password for c in settings.alerts.channels),
        ),
    )
    listener_log = get_logger("events")

    def on_listener_error(event: Event, exc: BaseException) -> None:
        listener_log.error("error.listener", listener_event=event.name, exc_info=exc)

    bus = EventBus(on_listener_error=on_listener_error)
    EventLogger(settings.logging).attach(bus)
    security = SecurityMonitor(bus, clock)
    metrics = ChatMetrics(registry, clock, settings.metrics)
    metrics.attach(bus)
    runtime = RuntimeMonitor(metrics, clock)
    alerts = build_alert_engine(
        settings, db, clock, MetricsSignalSource(metrics, security), metrics
    )

    def snapshot() -> dict[str, Any]:
        start_background_job("metrics")  # each snapshot run gets its own correlation id
        return headline_of(metrics, len(alerts.active()))

    history = MetricsHistory(
        db,
        clock,
        snapshot=snapshot,
        interval=settings.metrics.history_interval,
        retention=settings.metrics.history_retention,
    )
    health_checker = HealthChecker(db.ping, metrics)
    metrics_endpoint = build_metrics_endpoint(registry, settings.metrics, bus=bus)
    store = ChatStore(db)
    ai_provider = provider or _provider(settings)
    cache = _cache(settings, bus, clock)
    consultant = Consultant(
        ai_provider,
        cache,
        PriceBook(settings.ai.prices),
        bus,
        clock,
        model=settings.ai.model_name,
        timeout=settings.ai.timeout + 1.0,
    )
    hub = Hub(bus, clock, settings.limits.connections_per_ip)
    services = Services(
        settings=settings,
        clock=clock,
        bus=bus,
        db=db,
        store=store,
        auth=Authenticator(secrets.jwt_secret, secrets.admin_token, clock),
        hub=hub,
        sessions=Sessions(store, bus, clock, context_messages=settings.ai.max_context_messages),
        chat=ChatDeps(
            bus=bus,
            clock=clock,
            hub=hub,
            store=store,
            consultant=consultant,
            max_message_bytes=settings.limits.max_message_bytes,
            messages_per_minute=settings.limits.messages_per_minute,
            max_context_messages=settings.ai.max_context_messages,
            system_prompt=settings.ai.system_prompt,
        ),
        metrics=metrics,
        history=history,
        health=health_checker,
        logstore=logstore,
        security=security,
    )
    services.extras.update(registry=registry, secrets=secrets, alerts=alerts)
    background: list[asyncio.Task[Any]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.migrate()
        await logstore.start()
        runtime.start()
        await alerts.start(background=settings.alerts.enabled)

        background.append(asyncio.create_task(history.run(), name="metrics-history"))
        if settings.ai.provider == "builtin":
            from chatwatch.chat import tokens

            # Loading the BPE vocabulary takes ~0.3 s: pay it at start, not on a visitor's reply.
            await asyncio.to_thread(tokens.warm_up)
        try:
            yield
        finally:
            # Sockets are drained by the server's shutdown hook before we get here.
            await hub.shutdown(settings.server.shutdown_grace)
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await runtime.stop()
            await alerts.stop()
            metrics_endpoint.exposition.close()  # type: ignore[attr-defined]
            await ai_provider.aclose()
            if cache is not None:
                await cache.aclose()
            await logstore.close()
            await db.dispose()

    app = FastAPI(
        title="chatwatch",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.services = services
    _install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth_api.router)
    app.include_router(chat_history.router)
    app.include_router(chat_ws.router)
    admin = [Depends(require_admin)]
    app.include_router(metrics_endpoint)
    app.include_router(admin_page.router, dependencies=admin)
    app.include_router(admin_chat.router, prefix="/api/v1/admin/chat", dependencies=admin)
    app.include_router(
        build_admin_metrics_router(
            metrics,
            history,
            health_checker,
            active_alerts=lambda: len(alerts.active()),
            include_alerts=False,
        ),
        prefix="/api/v1/admin/chat",
        dependencies=admin,
    )
    app.include_router(
        build_admin_logs_router(logstore), prefix="/api/v1/admin/chat", dependencies=admin
    )
    app.include_router(
        build_admin_alerts_router(alerts), prefix="/api/v1/admin/chat", dependencies=admin
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        """The minimal chat page."""
        page = resources.files("chatwatch.web").joinpath("index.html").read_text()
        return HTMLResponse(page)

    return CorrelationMiddleware(app)


def _install_error_handlers(app: FastAPI) -> None:
    """Every client error is a 4xx JSON body with a reason; every other a logged 500."""

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body"))
            reasons.append(f"{where}: {e.get('msg')}")
        return JSONResponse({"detail": "; ".join(reasons) or "bad request"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
