"""Running the app under uvicorn, with a shutdown that drains chat sockets first."""

from __future__ import annotations

import os
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from chatwatch.config import Settings, load_settings

__all__ = ["ChatwatchServer", "create_app", "run_server"]


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


def create_app() -> FastAPI:
    """App factory for worker processes: settings from CHATWATCH_CONFIG and the environment."""
    from chatwatch.app import build_app

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
    }


def run_server(settings: Settings, overrides: dict[str, Any] | None = None) -> int:
    """Serve until stopped; returns the process exit code."""
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
    from chatwatch.observe.multiprocess import prepare_multiprocess

    prepare_multiprocess(settings.server.data_dir.resolve() / "prometheus")
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("chatwatch.server:create_app", factory=True, workers=workers, **kwargs)
    server = ChatwatchServer(config)
    sock = config.bind_socket()
    Multiprocess(config, target=server.run, sockets=[sock]).run()
    return 0
