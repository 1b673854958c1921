"""Shared fixtures: a real chatwatch server on a free loopback port, and real fakes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from chatwatch.app import build_app
from chatwatch.chat.providers.base import AIProvider
from chatwatch.clock import Clock
from chatwatch.config import Settings
from chatwatch.server import ChatwatchServer, install_log_filters, uvicorn_config
from chatwatch.services import Services
from tests.fakes.openai_upstream import fake_openai  # noqa: F401 - re-exported fixture

ADMIN_TOKEN = "test-admin-token-0123456789"
JWT_SECRET = "test-jwt-secret-0123456789abcdef"


class LiveServer:
    """A running chatwatch server and handy clients for it."""

    def __init__(self, server: ChatwatchServer, services: Services, port: int) -> None:
        self.server = server
        self.services = services
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws/chat"
        self.admin_token = ADMIN_TOKEN

    def http(self) -> httpx.AsyncClient:
        """An HTTP client for this server (close it, or use ``async with``)."""
        return httpx.AsyncClient(base_url=self.url, timeout=10)

    async def guest(self) -> tuple[str, str]:
        """A fresh guest's (token, user_id)."""
        async with self.http() as client:
            r = await client.post("/api/v1/auth/guest")
            r.raise_for_status()
            body = r.json()
            return body["token"], body["user_id"]

    def admin_headers(self) -> dict[str, str]:
        """Authorization header with the admin token."""
        return {"Authorization": f"Bearer {self.admin_token}"}


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Test settings: SQLite in tmp_path, fixed secrets, a free port; overrides per section."""
    base: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 0, "data_dir": tmp_path, "shutdown_grace": 2},
        "auth": {"admin_token": ADMIN_TOKEN, "jwt_secret": JWT_SECRET},
        "logging": {"level": "WARNING"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return Settings(**base)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def run_live_server(
    settings: Settings,
    *,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    provider: AIProvider | None = None,
) -> AsyncIterator[LiveServer]:
    """Serve ``settings`` in this event loop until the block ends."""
    install_log_filters()
    built = build_app(settings, clock=clock, registry=registry, provider=provider)
    # The production config (HTTP limits and parser included), with a shorter shutdown.
    config = uvicorn_config(built.asgi, settings, timeout_graceful_shutdown=5)
    server = ChatwatchServer(config, built.services)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        server.should_exit = True
        await task
        raise RuntimeError("chatwatch test server did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(server, built.services, port)
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)


LiveServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[LiveServer]]


@pytest.fixture
def live_server_factory(tmp_path: Path) -> LiveServerFactory:
    """Start servers with settings overrides: ``async with factory(limits={...}) as srv``."""

    def factory(
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        provider: AIProvider | None = None,
        **sections: Any,
    ) -> contextlib.AbstractAsyncContextManager[LiveServer]:
        return run_live_server(
            make_settings(tmp_path, **sections), clock=clock, registry=registry, provider=provider
        )

    return factory


@pytest.fixture
async def live_server(live_server_factory: LiveServerFactory) -> AsyncIterator[LiveServer]:
    """A server with the default settings (built-in consultant, SQLite)."""
    async with live_server_factory() as srv:
        yield srv
