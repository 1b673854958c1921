"""A real HTTP receiver on a free loopback port (uvicorn + a tiny ASGI app) whose answers
the test scripts: a status per request, optionally after a delay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next scripted (status, delay); then ``default``."""

    script: list[tuple[int, float]] = field(default_factory=list)
    default: int = 200
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, delay = self.script.pop(0) if self.script else (self.default, 0.0)
        if delay:
            await asyncio.sleep(delay)
        self.requests.append(Received(scope["path"], headers, body))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok" if status < 400 else b"nope"})


@contextlib.asynccontextmanager
async def run_receiver(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """Serve ``receiver`` on 127.0.0.1:<free port> for the block."""
    receiver = receiver or Receiver()
    config = uvicorn.Config(
        receiver, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
