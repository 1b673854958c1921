"""A live chatwatch server in its own thread and event loop, for sync test drivers
(hypothesis' ``@given``, schemathesis) that cannot run inside the test's event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from tests.conftest import LiveServer, make_settings, run_live_server

__all__ = ["ThreadServer"]


class ThreadServer:
    """``with ThreadServer(tmp_path, limits={...}) as srv:`` serves until the block ends."""

    def __init__(self, tmp_path: Path, **sections: dict[str, Any]) -> None:
        self._settings = make_settings(tmp_path, **sections)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.srv: LiveServer | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with run_live_server(self._settings) as srv:
            self.srv = srv
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> LiveServer:
        self._thread.start()
        assert self._ready.wait(30), "server did not start"
        assert self.srv is not None
        return self.srv

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def guest_token(self) -> str:
        """A fresh guest token, minted on the server's own loop."""
        assert self.srv is not None and self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self.srv.guest(), self._loop)
        return future.result(10)[0]
