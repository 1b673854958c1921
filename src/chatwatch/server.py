"""Running the app under uvicorn, with a shutdown that drains chat sockets first."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.supervisors.multiprocess import Process

from chatwatch.config import Settings, load_settings

__all__ = ["ChatwatchServer", "create_app", "install_log_filters", "run_server"]


_DUPLICATES = frozenset({"connection open", "connection closed"})


class _DenialNoiseFilter(logging.Filter):
    """Drops uvicorn's false alarm after a handshake refused with an HTTP response.

    uvicorn's sans-I/O WebSocket protocol logs "returned without completing handshake"
    even when the app sent a ``websocket.http.response`` (a 401/403/429 denial); it sends
    nothing more in that case, so the record is noise that would page an operator.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        # "connection open/closed" duplicate chatwatch's own connection.* records.
        return "without completing handshake" not in message and message not in _DUPLICATES


def install_log_filters() -> None:
    """Install chatwatch's filters on uvicorn's loggers (idempotent)."""
    log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialNoiseFilter) for f in log.filters):
        log.addFilter(_DenialNoiseFilter())


def _find_services(app: Any) -> Any:
    """The Services behind uvicorn's middleware wrappers, if the app is chatwatch's."""
    seen = 0
    while app is not None and seen < 20:
        state = getattr(app, "state", None)
        services = getattr(state, "services", None) if state is not None else None
        if services is not None:
            return services
        app = getattr(app, "app", None)
        seen += 1
    return None


class ChatwatchServer(uvicorn.Server):
    """uvicorn's server, but on SIGTERM the chat hub drains before sockets are torn down.

    uvicorn's own shutdown fails open WebSockets abruptly; draining first lets in-flight
    replies finish (or get an error frame) and closes every socket with 1001.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain the chat, then let uvicorn finish."""
        for server in getattr(self, "servers", []):
            server.close()
        services = _find_services(self.config.loaded_app)
        if services is not None:
            await services.hub.shutdown(services.settings.server.shutdown_grace, code=1001)
        await super().shutdown(sockets)


def create_app() -> ASGIApp:
    """App factory for worker processes: settings from CHATWATCH_CONFIG and the environment."""
    from chatwatch.app import build_app

    install_log_filters()
    return build_app(load_settings())


def _uvicorn_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.server.host,
        "port": settings.server.port,
        "ws_max_size": settings.limits.frame_limit,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.server.shutdown_grace) + 5,
        "lifespan": "on",
        # X-Forwarded-For is believed only from configured proxies: by default from no one,
        # or any local process could dodge the per-IP limit and forge security events.
        "proxy_headers": bool(settings.server.forwarded_allow_ips),
        "forwarded_allow_ips": ",".join(settings.server.forwarded_allow_ips) or None,
    }


def run_server(settings: Settings, overrides: dict[str, Any] | None = None) -> int:
    """Serve until stopped; returns the process exit code."""
    install_log_filters()
    workers = settings.server.workers
    kwargs = _uvicorn_kwargs(settings)
    if workers <= 1:
        from chatwatch.app import build_app

        config = uvicorn.Config(build_app(settings), **kwargs)
        server = ChatwatchServer(config)
        server.run()
        return 0 if server.started else 1
    # Several workers: each process builds its own app from the same environment.
    for key, value in (overrides or {}).items():
        if value is not None:
            os.environ[f"CHATWATCH_SERVER__{key.upper()}"] = str(value)
    import asyncio

    from chatwatch.observe.metrics.multiprocess import prepare_multiprocess
    from chatwatch.store.db import Database

    async def migrate_once() -> None:
        db = Database(settings.database_url)
        try:
            await db.migrate()
        finally:
            await db.dispose()

    asyncio.run(migrate_once())

    prepare_multiprocess(settings.server.data_dir.resolve() / "prometheus")
    from uvicorn.supervisors import multiprocess

    # uvicorn's supervisor builds a plain Server in each worker; ours drains the chat on
    # SIGTERM, so the supervisor is pointed at a Process that builds ChatwatchServer.
    multiprocess.Process = _ChatwatchProcess  # type: ignore[misc]
    config = uvicorn.Config("chatwatch.server:create_app", factory=True, workers=workers, **kwargs)
    sock = config.bind_socket()
    multiprocess.Multiprocess(config, sockets=[sock]).run()
    return 0


class _ChatwatchProcess(Process):
    """A uvicorn worker process whose server is a ChatwatchServer."""

    @property
    def server(self) -> uvicorn.Server:
        """The worker's server, built on first use (in the child)."""
        if self._server is None:
            self._server = ChatwatchServer(config=self.config)
        return self._server
