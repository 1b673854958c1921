"""Build the ASGI application from Settings: wiring only, no logic."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pwd
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp

from chatwatch.alerts.factory import build_alert_engine
from chatwatch.alerts.handoff import HandoffNotifier
from chatwatch.alerts.signal_adapter import SignalsSource
from chatwatch.alerts.store import AlertStore
from chatwatch.alerts.stored_signals import StoredSignalsSource
from chatwatch.alerts.watcher import DroppedPerMinute, WatcherSource, disk_free
from chatwatch.api import admin_chat, admin_page, chat_history, chat_ws, health
from chatwatch.api import auth as auth_api
from chatwatch.api.admin_alerts import build_admin_alerts_router
from chatwatch.api.admin_logs import build_admin_logs_router
from chatwatch.api.admin_metrics import build_admin_metrics_router
from chatwatch.api.admin_users import build_admin_users_router
from chatwatch.api.audit import AuditAction, audit
from chatwatch.api.correlation import CorrelationMiddleware
from chatwatch.api.deps import require_admin
from chatwatch.api.docs import build_docs_router
from chatwatch.api.metrics_endpoint import build_metrics_endpoint
from chatwatch.api.security_headers import SecurityHeadersMiddleware, content_policies
from chatwatch.auth import AdminTokenFile, Authenticator, load_or_create_secret, read_secret
from chatwatch.chat.budget import DailyBudget
from chatwatch.chat.cache import ResponseCache, make_cache
from chatwatch.chat.connection import ChatDeps
from chatwatch.chat.consultant import Consultant
from chatwatch.chat.hub import Hub
from chatwatch.chat.limits import ChatLimits
from chatwatch.chat.pricing import PriceBook
from chatwatch.chat.providers.base import AIProvider
from chatwatch.chat.providers.builtin import BuiltinProvider
from chatwatch.chat.resilience import CircuitBreaker, RetryPolicy
from chatwatch.chat.sessions import Sessions
from chatwatch.clock import Clock, SystemClock
from chatwatch.config import Settings
from chatwatch.events import CacheEvicted, Event, EventBus, HandoffRequested, attach
from chatwatch.observe.context import start_background_job
from chatwatch.observe.health import HealthChecker, HealthThresholds
from chatwatch.observe.logs.pipeline import (
    LogMetrics,
    add_secret,
    configure_logging,
    get_logger,
)
from chatwatch.observe.logs.records import EventLogger
from chatwatch.observe.logs.store import LogStore
from chatwatch.observe.metrics.exposition import new_registry
from chatwatch.observe.metrics.history import MetricsHistory
from chatwatch.observe.metrics.json_api import history_item
from chatwatch.observe.metrics.recorder import ChatMetrics
from chatwatch.observe.metrics.runtime import RuntimeMonitor
from chatwatch.observe.security import SecurityMonitor
from chatwatch.observe.signals import IntervalCounter, Signals
from chatwatch.services import Services
from chatwatch.store.chat_store import ChatStore
from chatwatch.store.db import Database
from chatwatch.store.retention import Retention
from chatwatch.store.spend import spent_between
from chatwatch.timefmt import format_time

__all__ = ["Chatwatch", "Secrets", "build_app", "find_jwt_secret", "resolve_secrets"]


@dataclass(frozen=True, slots=True)
class Chatwatch:
    """A built chatwatch: the ASGI app to serve and the parts it runs on."""

    asgi: ASGIApp  # what to serve: the FastAPI app behind its middleware
    api: FastAPI  # the FastAPI app itself, for adding routes (benchmarks, tests)
    services: Services


@dataclass(frozen=True, slots=True)
class Secrets:
    """The JWT secret and admin token in force, and whether the admin token is new."""

    jwt_secret: str
    admin_token: str
    admin_token_created: bool


def resolve_secrets(settings: Settings) -> Secrets:
    """Configured secrets, else the ones kept in the data directory (created on first start).

    Only the server calls this; commands that merely use a secret call ``find_jwt_secret``.
    """
    data_dir = settings.server.data_dir
    jwt_secret = settings.auth.jwt_secret or load_or_create_secret(data_dir / "secret")[0]
    if settings.auth.admin_token:
        return Secrets(jwt_secret, settings.auth.admin_token, False)
    token, created = load_or_create_secret(data_dir / "admin_token")
    return Secrets(jwt_secret, token, created)


def find_jwt_secret(settings: Settings) -> str | None:
    """The JWT secret the server signs with, without creating one (None: there is none yet).

    Raises OSError when ``<data_dir>/secret`` exists but cannot be read.
    """
    return settings.auth.jwt_secret or read_secret(settings.server.data_dir / "secret") or None


def _authenticator(settings: Settings, secrets: Secrets, clock: Clock) -> Authenticator:
    if settings.auth.admin_token:
        return Authenticator(secrets.jwt_secret, secrets.admin_token, clock)

    def rotated(token: str, st: os.stat_result) -> None:
        # ``chatwatch admin-token rotate`` runs as some local user, outside any request.
        add_secret(token)
        try:
            who = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            who = str(st.st_uid)
        audit(
            f"local-user:{who}",
            AuditAction.ADMIN_TOKEN_ROTATED,
            path=str(path.resolve()),
            rotated_at=format_time(st.st_mtime),
        )

    path = settings.server.data_dir / "admin_token"
    return Authenticator(
        secrets.jwt_secret, AdminTokenFile(path, secrets.admin_token, rotated), clock
    )


def _provider(settings: Settings) -> AIProvider:
    ai = settings.ai
    if ai.provider == "openai":
        from chatwatch.chat.providers.openai import OpenAIProvider

        assert ai.base_url is not None  # checked by AISettings
        return OpenAIProvider(
            ai.base_url, ai.model_name, ai.api_key, ai.timeout, ai.first_byte_timeout
        )
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
) -> Chatwatch:
    """The chatwatch app (FastAPI behind its middleware) and its services; the parts start
    in the app's lifespan."""
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
    attach(bus, EventLogger(settings.logging))
    security = SecurityMonitor(bus, clock)
    hub = Hub(bus, clock, settings.limits.connections_per_ip)
    limits = ChatLimits(settings.limits, settings.redis.url, clock=clock, bus=bus)
    metrics = ChatMetrics(registry, clock, settings.metrics, live=hub)
    attach(bus, metrics)
    signals = Signals(metrics, security)
    watched = WatcherSource(
        SignalsSource(signals),
        clock,
        outbox_backlog=AlertStore(db).outbox_backlog,
        dropped=DroppedPerMinute(
            lambda: registry.get_sample_value("chat_log_records_dropped_total") or 0.0, clock
        ),
        free_bytes=disk_free(settings.server.data_dir),
    )
    source = StoredSignalsSource(watched, db, clock, max_age=settings.alerts.evaluation_interval)
    alerts = build_alert_engine(settings, db, clock, source, metrics)
    source.rules = alerts.rules
    handoffs = HandoffNotifier.of(alerts)
    if settings.alerts.enabled:
        bus.subscribe(HandoffRequested, handoffs.on_handoff)
    runtime = RuntimeMonitor(metrics, clock)
    interval = IntervalCounter(metrics)

    def snapshot() -> dict[str, Any]:
        start_background_job("metrics")  # each snapshot run gets its own correlation id
        reading = signals.read()
        return history_item(reading, interval.take(reading.metrics.totals))

    history = MetricsHistory(
        db,
        clock,
        snapshot=snapshot,
        interval=settings.metrics.history_interval,
        retention=settings.metrics.history_retention,
    )
    health_checker = HealthChecker(
        db.ping,
        signals,
        thresholds=HealthThresholds(min_messages=settings.metrics.health_min_messages),
    )
    metrics_endpoint = build_metrics_endpoint(registry, settings.metrics, bus=bus)
    store = ChatStore(db)
    retention = Retention(
        db,
        clock,
        retention_days=settings.store.retention_days,
        interval=settings.store.purge_interval,
    )
    ai_provider = provider or _provider(settings)
    cache = _cache(settings, bus, clock)
    ai = settings.ai
    consultant = Consultant(
        ai_provider,
        cache,
        PriceBook(ai.prices),
        bus,
        clock,
        model=ai.model_name,
        timeout=ai.timeout,
        retry=RetryPolicy(attempts=ai.retry_attempts),
        breaker=(
            CircuitBreaker(
                failures=ai.circuit_failures,
                cooloff=ai.circuit_cooloff,
                clock=clock,
                bus=bus,
                provider=ai_provider.name,
            )
            if ai.circuit_failures
            else None
        ),
        # Falling back to the built-in makes no sense when the built-in is the provider.
        fallback=(
            BuiltinProvider("builtin")
            if ai.fallback == "builtin" and ai_provider.name != "builtin"
            else None
        ),
        budget=(
            DailyBudget(
                ai.daily_budget_usd,
                clock,
                bus,
                warning_ratio=ai.budget_warning_ratio,
                load_spent=functools.partial(spent_between, db),
            )
            if ai.daily_budget_usd is not None
            else None
        ),
    )
    services = Services(
        settings=settings,
        clock=clock,
        bus=bus,
        db=db,
        store=store,
        auth=_authenticator(settings, secrets, clock),
        hub=hub,
        sessions=Sessions(store, bus, clock, context_messages=settings.ai.max_context_messages),
        chat=ChatDeps(
            bus=bus,
            clock=clock,
            hub=hub,
            store=store,
            consultant=consultant,
            limits=limits,
            max_message_bytes=settings.limits.max_message_bytes,
            messages_per_minute=settings.limits.messages_per_minute,
            max_context_messages=settings.ai.max_context_messages,
            system_prompt=settings.ai.system_prompt,
        ),
        limits=limits,
        metrics=metrics,
        history=history,
        health=health_checker,
        logstore=logstore,
        security=security,
        signals=signals,
        alerts=alerts,
        registry=registry,
    )
    background: list[asyncio.Task[Any]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.migrate()
        await logstore.start()
        runtime.start()
        await alerts.start(background=settings.alerts.enabled)

        background.append(asyncio.create_task(history.run(), name="metrics-history"))
        background.append(asyncio.create_task(retention.run(), name="store-retention"))
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
            await handoffs.drain()
            await alerts.stop()
            metrics_endpoint.exposition.close()  # type: ignore[attr-defined]
            await ai_provider.aclose()
            await limits.aclose()
            if cache is not None:
                await cache.aclose()
            await logstore.close()
            await db.dispose()

    api_docs = settings.server.api_docs
    app = FastAPI(
        title="chatwatch",
        version="0.1.0",
        lifespan=lifespan,
        # Our own docs page (local assets, no inline script) replaces FastAPI's.
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json" if api_docs else None,
        # Starlette's slash redirects build an absolute URL from the Host header: with a
        # forged Host that is an open redirect. Paths are exact; /admin/ has its own route.
        redirect_slashes=False,
    )
    app.state.services = services
    _install_error_handlers(app)
    _declare_no_422(app)
    app.include_router(health.router)
    app.mount("/static", StaticFiles(packages=[("chatwatch.web", "static")]), name="static")
    if api_docs:
        app.include_router(build_docs_router("/api/docs", "/api/openapi.json", app.title))
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
            signals=signals,
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
        build_admin_users_router(retention, logstore.flush),
        prefix="/api/v1/admin/chat",
        dependencies=admin,
    )
    app.include_router(
        build_admin_alerts_router(alerts), prefix="/api/v1/admin/chat", dependencies=admin
    )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        """The minimal chat page."""
        page = resources.files("chatwatch.web").joinpath("index.html").read_text()
        return HTMLResponse(page)

    asgi = CorrelationMiddleware(SecurityHeadersMiddleware(app, content_policies(settings.server)))
    return Chatwatch(asgi, app, services)


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
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names only the first route of the path; a path served by several
            # routes (GET and POST) must list every method it takes.
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _declare_no_422(app: FastAPI) -> None:
    """Drop FastAPI's stock 422 from the schema: validation errors here answer 400 (above)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path."""
    scope = {**request.scope, "method": "GET"}
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)
