"""A small real WebSocket chat client for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["ChatClient", "open_chat"]


class ChatClient:
    """One chat connection; frames come back as dicts."""

    def __init__(self, ws: ClientConnection, connected: dict[str, Any]) -> None:
        self.ws = ws
        self.connected = connected
        self.session_id: str = connected["session_id"]

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        """Send a frame (a dict is JSON-encoded; str/bytes go as they are)."""
        await self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def recv(self, wait: float = 10.0) -> dict[str, Any]:
        """The next frame, waiting ``wait`` seconds at most."""
        raw = await asyncio.wait_for(self.ws.recv(), wait)
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def until(self, *types: str, wait: float = 10.0) -> list[dict[str, Any]]:
        """Frames up to and including the first of one of ``types``."""
        frames = []
        while True:
            frame = await self.recv(wait)
            frames.append(frame)
            if frame["type"] in types:
                return frames

    async def ask(self, content: str, msg_id: str = "m1", **extra: Any) -> list[dict[str, Any]]:
        """Send a message; frames up to its ``ai_message`` or ``error``."""
        await self.send({"type": "message", "id": msg_id, "content": content, **extra})
        return await self.until("ai_message", "error")

    async def close(self) -> None:
        """Close the socket."""
        await self.ws.close()


async def open_chat(
    ws_url: str,
    token: str | None,
    session_id: str | None = None,
    *,
    via_header: bool = False,
    headers: dict[str, str] | None = None,
) -> ChatClient:
    """Connect and read the ``connected`` frame."""
    query: dict[str, str] = {}
    extra = dict(headers or {})
    if token is not None:
        if via_header:
            extra["Authorization"] = f"Bearer {token}"
        else:
            query["token"] = token
    if session_id is not None:
        query["session_id"] = session_id
    url = ws_url + ("?" + urlencode(query) if query else "")
    ws = await connect(url, additional_headers=extra, max_size=None, open_timeout=10)
    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return ChatClient(ws, first)
