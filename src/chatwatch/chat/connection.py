"""One chat connection: frames in, replies out, in order, with every fact emitted as an event.

The receive loop answers pings and rejects bad frames at once; accepted messages queue
for a worker that replies to them one by one, so a long AI reply never delays a pong or
an error frame, and replies never overtake each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from chatwatch.chat.consultant import Consultant, Reply
from chatwatch.chat.hub import Hub
from chatwatch.chat.protocol import (
    ClientMessage,
    Ping,
    ProtocolError,
    QuickAction,
    encode,
    error_frame,
    parse_frame,
)
from chatwatch.chat.providers.base import AIProviderError, ChatTurn
from chatwatch.chat.ratelimit import TokenBucket
from chatwatch.clock import Clock
from chatwatch.correlation import new_correlation_id
from chatwatch.events import (
    ErrorOccurred,
    EventBus,
    FeatureUsed,
    FrameRejected,
    MessageProcessed,
    MessageReceived,
    MessageSent,
    QuickActionUsed,
    ResponseCompleted,
    SecurityEvent,
)
from chatwatch.observe.context import bind_message
from chatwatch.store.chat_store import ChatStore

__all__ = ["ChatConnection", "ChatDeps", "ClientGone"]

SendText = Callable[[str], Awaitable[None]]
Receive = Callable[[], Awaitable[str | bytes | None]]

_ERROR_TYPES = {
    "invalid_json": "validation",
    "invalid_frame": "validation",
    "message_too_large": "validation",
    "rate_limited": "rate_limit",
}


class ClientGone(Exception):
    """The client went away while we were sending."""


@dataclass(frozen=True, slots=True)
class ChatDeps:
    """What every connection shares."""

    bus: EventBus
    clock: Clock
    hub: Hub
    store: ChatStore
    consultant: Consultant
    max_message_bytes: int
    messages_per_minute: int
    max_context_messages: int
    system_prompt: str


class ChatConnection:
    """Handles one accepted WebSocket until it closes."""

    def __init__(
        self,
        deps: ChatDeps,
        *,
        connection_id: str,
        user_id: str,
        session_id: str,
        client_ip: str,
        user_agent: str,
        history: list[ChatTurn],
        send_text: SendText,
    ) -> None:
        self._d = deps
        self.connection_id = connection_id
        self.user_id = user_id
        self.session_id = session_id
        self.client_ip = client_ip
        self.user_agent = user_agent
        self._send_text = send_text
        self._send_lock = asyncio.Lock()
        self._context: deque[ChatTurn] = deque(history, maxlen=deps.max_context_messages)
        self._bucket = TokenBucket(deps.messages_per_minute, deps.clock)
        self._queue: asyncio.Queue[tuple[ClientMessage | QuickAction, str, float]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Future[int]] = set()
        self.messages = 0
        self.closed = False

    # --- sending -----------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame; raise ClientGone if the socket is gone."""
        if self.closed:
            raise ClientGone()
        text = encode(frame)
        try:
            async with self._send_lock:
                await self._send_text(text)
        except Exception as err:
            self.closed = True
            raise ClientGone() from err
        self._d.bus.emit(
            MessageSent(
                type=frame["type"],
                connection_id=self.connection_id,
                correlation_id=frame.get("correlation_id"),
            )
        )

    # --- receiving ---------------------------------------------------------------------

    async def run(self, receive: Receive) -> None:
        """Read frames until the client leaves; the worker replies in the background."""
        self._worker = asyncio.create_task(self._work(), name=f"chat-worker-{self.connection_id}")
        while True:
            raw = await receive()
            if raw is None:
                return
            await self._on_frame(raw)

    async def _on_frame(self, raw: str | bytes) -> None:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        try:
            frame = parse_frame(raw, self._d.max_message_bytes)
        except ProtocolError as err:
            if not self._bucket.take():
                err = ProtocolError("rate_limited", "too many frames; slow down", err.reply_to)
            await self._reject(err, size)
            return
        if isinstance(frame, Ping):
            self._received("ping", None, size)
            self._d.bus.emit(FeatureUsed(feature="ping"))
            await self.send({"type": "pong"})
            return
        if not self._bucket.take():
            await self._reject(
                ProtocolError(
                    "rate_limited",
                    f"more than {self._d.messages_per_minute} messages a minute; slow down",
                    frame.id,
                ),
                size,
            )
            return
        correlation_id = frame.correlation_id or new_correlation_id()
        bind_message(correlation_id)
        kind = "message" if isinstance(frame, ClientMessage) else "quick_action"
        content = frame.content if isinstance(frame, ClientMessage) else frame.action
        self._received(kind, correlation_id, size, content)
        self._queue.put_nowait((frame, correlation_id, self._d.clock.monotonic()))

    def _received(
        self, kind: str, correlation_id: str | None, size: int, content: str | None = None
    ) -> None:
        self._d.bus.emit(
            MessageReceived(
                type=kind,
                connection_id=self.connection_id,
                session_id=self.session_id,
                user_id=self.user_id,
                correlation_id=correlation_id,
                size_bytes=size,
                content=content,
            )
        )

    async def _reject(self, err: ProtocolError, size: int) -> None:
        correlation_id = new_correlation_id()
        bind_message(correlation_id)
        bus = self._d.bus
        bus.emit(
            FrameRejected(
                code=err.code,
                connection_id=self.connection_id,
                user_id=self.user_id,
                correlation_id=correlation_id,
                detail=err.message,
                size_bytes=size,
            )
        )
        bus.emit(
            ErrorOccurred(
                type=_ERROR_TYPES.get(err.code, "validation"),
                code=err.code,
                detail=err.message,
                correlation_id=correlation_id,
            )
        )
        if err.code == "rate_limited":
            bus.emit(
                SecurityEvent(
                    type="rate_limited",
                    client_ip=self.client_ip,
                    user_agent=self.user_agent,
                    user_id=self.user_id,
                    detail=err.message,
                )
            )
        await self.send(error_frame(err.code, err.message, correlation_id, err.reply_to))

    # --- replying ----------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            frame, correlation_id, received_at = await self._queue.get()
            bind_message(correlation_id)
            try:
                ok = await self._handle(frame, correlation_id, received_at)
            except ClientGone:
                return
            except asyncio.CancelledError:
                # Shutdown cut this reply short: tell the client rather than go silent.
                self._d.bus.emit(
                    ErrorOccurred(
                        type="system",
                        code="internal",
                        detail="reply cut short by shutdown",
                        correlation_id=correlation_id,
                    )
                )
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await self.send(
                            error_frame(
                                "internal",
                                "the server is shutting down; please send this message again",
                                correlation_id,
                                frame.id,
                            )
                        )
                raise
            finally:
                self._queue.task_done()
            self._d.bus.emit(
                MessageProcessed(
                    type="message" if isinstance(frame, ClientMessage) else "quick_action",
                    correlation_id=correlation_id,
                    duration_s=self._d.clock.monotonic() - received_at,
                    ok=ok,
                )
            )

    async def _handle(
        self, frame: ClientMessage | QuickAction, correlation_id: str, received_at: float
    ) -> bool:
        d = self._d
        quick_action = frame.action if isinstance(frame, QuickAction) else None
        content = frame.content if isinstance(frame, ClientMessage) else f"[{frame.action}]"
        try:
            await self._write(
                session_id=self.session_id,
                role="user",
                client_id=frame.id,
                correlation_id=correlation_id,
                content=content,
                now=d.clock.time(),
            )
        except Exception as err:
            d.bus.emit(
                ErrorOccurred(
                    type="system",
                    code="internal",
                    detail="could not store the message",
                    correlation_id=correlation_id,
                    exception=err,
                )
            )
            await self.send(
                error_frame("internal", "the message could not be stored", correlation_id, frame.id)
            )
            return False
        self.messages += 1
        d.hub.count_message(self.session_id)
        await self.send({"type": "ack", "id": frame.id, "correlation_id": correlation_id})
        if quick_action is not None:
            d.bus.emit(QuickActionUsed(action=quick_action, correlation_id=correlation_id))
            d.bus.emit(FeatureUsed(feature="quick_action"))
        self._context.append(ChatTurn("user", content))
        turns = [ChatTurn("system", d.system_prompt), *self._context]

        async def on_delta(text: str) -> None:
            await self.send(
                {
                    "type": "ai_delta",
                    "reply_to": frame.id,
                    "correlation_id": correlation_id,
                    "delta": text,
                }
            )

        try:
            reply = await d.consultant.reply(turns, correlation_id, on_delta, quick_action)
        except AIProviderError as err:
            # The user's turn stays in context; the failed reply is simply absent.
            await self.send(
                error_frame(
                    "ai_unavailable",
                    f"the AI consultant is unavailable: {err}",
                    correlation_id,
                    frame.id,
                )
            )
            return False
        await self._finish(frame.id, correlation_id, reply, received_at)
        return True

    async def _write(self, **message: Any) -> None:
        """Store a message; a cancelled handler (client gone, shutdown) never abandons it.

        The write runs as its own task behind a shield and ``stop`` waits for it, so no
        message is half-written and no pooled connection outlives the engine.
        """
        task = asyncio.ensure_future(self._d.store.add_message(**message))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        await asyncio.shield(task)

    async def _finish(self, reply_to: str, correlation_id: str, reply: Reply, t0: float) -> None:
        d = self._d
        self._context.append(ChatTurn("assistant", reply.content))
        await self._write(
            session_id=self.session_id,
            role="assistant",
            correlation_id=correlation_id,
            content=reply.content,
            now=d.clock.time(),
            model=reply.model,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost_usd=reply.cost_usd,
            cached=reply.cached,
        )
        if reply.handoff:
            d.bus.emit(FeatureUsed(feature="handoff"))
        await self.send(
            {
                "type": "ai_message",
                "reply_to": reply_to,
                "correlation_id": correlation_id,
                "content": reply.content,
                "model": reply.model,
                "usage": {
                    "input_tokens": reply.input_tokens,
                    "output_tokens": reply.output_tokens,
                },
                "cost_usd": reply.cost_usd,
                "cached": reply.cached,
                "latency_ms": round(reply.latency_ms, 3),
                "quick_actions": list(reply.quick_actions),
                "handoff": reply.handoff,
                "estimated_usage": reply.estimated_usage,
            }
        )
        d.bus.emit(
            ResponseCompleted(
                correlation_id=correlation_id,
                session_id=self.session_id,
                duration_s=d.clock.monotonic() - t0,
                cached=reply.cached,
            )
        )

    # --- stopping ----------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Let queued replies finish within ``grace`` seconds, then cut them off."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._queue.join()
        await self.stop()

    async def stop(self) -> None:
        """Stop the worker (an in-flight reply gets an error frame)."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=10)
        # Messages that never started get told, so no message is silently dropped.
        while not self._queue.empty():
            frame, correlation_id, _ = self._queue.get_nowait()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.send(
                        error_frame(
                            "internal",
                            "the server is shutting down; please send this message again",
                            correlation_id,
                            frame.id,
                        )
                    )
