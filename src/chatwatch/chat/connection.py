"""One chat connection: frames in, replies out, in order, with every fact emitted as an event.

The receive loop answers pings and rejects bad frames at once; accepted messages queue
for a worker that answers them one by one, so a long AI reply never delays a pong or an
error frame, and replies never overtake each other.

Whatever fails while a message is handled — the provider, the store, the cache, a bug —
that message gets an error frame and the worker goes on with the next one: a conversation
never goes silent. A visitor who leaves mid-reply has cancelled, which is no error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from chatwatch.chat.attempt import ClientGone
from chatwatch.chat.consultant import Consultant, Reply
from chatwatch.chat.hub import Hub, SessionLive
from chatwatch.chat.limits import ChatLimits, ConnectionFloodGuard, LimitExceeded, Refusal
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
from chatwatch.chat.rejections import RejectionSummary, RejectionThrottle
from chatwatch.clock import Clock
from chatwatch.correlation import new_correlation_id
from chatwatch.events import (
    ErrorOccurred,
    EventBus,
    FeatureUsed,
    FrameRejected,
    HandoffRequested,
    MessageProcessed,
    MessageReceived,
    MessageReplayed,
    MessageSent,
    QuickActionUsed,
    RejectionsSuppressed,
    ReplyCancelled,
    ResponseCompleted,
    SecurityEvent,
)
from chatwatch.observe.context import bind_message
from chatwatch.store.chat_store import ChatStore, DuplicateMessage, StoredMessage
from chatwatch.vocabulary import CloseReason, ErrorCode, ErrorType, SecurityEventType

__all__ = [
    "INTERNAL_MESSAGE",
    "ChatConnection",
    "ChatDeps",
    "ClientGone",
    "ConnectionState",
    "Lifecycle",
    "Peer",
]

SendText = Callable[[str], Awaitable[None]]
Receive = Callable[[], Awaitable[str | bytes | None]]

# What visitors read: short, no upstream text, no exception names (SPEC §4). The detail is
# in the logs under the frame's correlation id.
INTERNAL_MESSAGE = "Something went wrong on our side. Please try again in a moment."
SHUTDOWN_MESSAGE = "The server is restarting. Please send your message again in a moment."

_ERROR_TYPES = {
    ErrorCode.INVALID_JSON: ErrorType.VALIDATION,
    ErrorCode.INVALID_FRAME: ErrorType.VALIDATION,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorType.VALIDATION,
    ErrorCode.RATE_LIMITED: ErrorType.RATE_LIMIT,
}


class ConnectionState(Enum):
    """A connection's lifecycle: open, closing (the reason is fixed), closed."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Lifecycle:
    """Where a connection is in its life, and why it ends: the first closer decides."""

    def __init__(self) -> None:
        self.state = ConnectionState.OPEN
        self.reason: CloseReason = CloseReason.CLIENT_CLOSED
        self.code = 1000

    def closing(self, reason: CloseReason, code: int) -> bool:
        """Start closing for ``reason``; False (nothing changes) when already closing."""
        if self.state is not ConnectionState.OPEN:
            return False
        self.state = ConnectionState.CLOSING
        self.reason = reason
        self.code = code
        return True

    def closed(self) -> None:
        """The socket is gone; a close that nobody started was the client's."""
        if self.state is ConnectionState.CLOSED:
            raise RuntimeError("connection closed twice")
        self.state = ConnectionState.CLOSED

    @property
    def client_left(self) -> bool:
        """True when the visitor ended the connection (not the server)."""
        return self.state is not ConnectionState.OPEN and self.reason in (
            CloseReason.CLIENT_CLOSED,
            CloseReason.PROTOCOL_ERROR,
        )


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end of one connection."""

    connection_id: str
    user_id: str
    session_id: str
    client_ip: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class ChatDeps:
    """What every connection shares."""

    bus: EventBus
    clock: Clock
    hub: Hub
    store: ChatStore
    consultant: Consultant
    limits: ChatLimits
    max_message_bytes: int
    messages_per_minute: int
    max_context_messages: int
    system_prompt: str


@dataclass(frozen=True, slots=True)
class _Job:
    frame: ClientMessage | QuickAction
    correlation_id: str
    received_at: float

    @property
    def kind(self) -> str:
        return "message" if isinstance(self.frame, ClientMessage) else "quick_action"

    @property
    def content(self) -> str:
        f = self.frame
        return f.content if isinstance(f, ClientMessage) else f"[{f.action}]"


class ChatConnection:
    """Handles one accepted WebSocket until it closes."""

    def __init__(
        self, deps: ChatDeps, peer: Peer, session: SessionLive, send_text: SendText
    ) -> None:
        self._d = deps
        self.peer = peer
        self.session = session
        self.lifecycle = Lifecycle()
        self._send_text = send_text
        self._send_lock = asyncio.Lock()
        self._guard = ConnectionFloodGuard(deps.messages_per_minute, deps.clock)
        self._throttle = RejectionThrottle(deps.clock)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._current: _Job | None = None
        self._worker: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Future[int]] = set()
        self.messages = 0

    # --- sending -----------------------------------------------------------------------

    async def send(self, frame: dict[str, Any], *, quiet: bool = False) -> None:
        """Send one frame; raise ClientGone if the socket is gone."""
        if self.lifecycle.state is ConnectionState.CLOSED:
            raise ClientGone()
        text = encode(frame)
        try:
            async with self._send_lock:
                await self._send_text(text)
        except Exception as err:
            self.lifecycle.closing(CloseReason.CLIENT_CLOSED, 1006)
            raise ClientGone() from err
        self._d.bus.emit(
            MessageSent(
                type=frame["type"],
                connection_id=self.peer.connection_id,
                correlation_id=frame.get("correlation_id"),
                quiet=quiet,
            )
        )

    # --- receiving ---------------------------------------------------------------------

    async def run(self, receive: Receive) -> None:
        """Read frames until the client leaves; the worker replies in the background."""
        self._worker = asyncio.create_task(
            self._work(), name=f"chat-worker-{self.peer.connection_id}"
        )
        self._worker.add_done_callback(self._worker_done)
        while True:
            raw = await receive()
            if raw is None:
                return
            await self._on_frame(raw)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        # The worker catches everything per message; if it still died, say so once.
        if not task.cancelled() and (err := task.exception()) is not None:
            self._d.bus.emit(
                ErrorOccurred(
                    type=ErrorType.SYSTEM,
                    code=ErrorCode.INTERNAL,
                    detail="chat worker stopped",
                    exception=err,
                )
            )

    async def _on_frame(self, raw: str | bytes) -> None:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        try:
            frame = parse_frame(raw, self._d.max_message_bytes)
        except ProtocolError as err:
            # Bad frames spend the socket's own budget, so a flood of them is cut off here.
            refusal = self._guard.take()
            if refusal is not None:
                await self._refuse(refusal, err.reply_to, size)
            else:
                await self._reject(err, size)
            return
        if isinstance(frame, Ping):
            self._received("ping", None, size)
            self._d.bus.emit(FeatureUsed(feature="ping"))
            await self.send({"type": "pong"})
            return
        p = self.peer
        refusal = self._guard.take() or await self._d.limits.hit_message(p.user_id, p.client_ip)
        if refusal is not None:
            await self._refuse(refusal, frame.id, size)
            return
        correlation_id = frame.correlation_id or new_correlation_id()
        bind_message(correlation_id)
        job = _Job(frame, correlation_id, self._d.clock.monotonic())
        self._received(job.kind, correlation_id, size, job.content)
        self._queue.put_nowait(job)

    async def _refuse(self, refusal: Refusal, reply_to: str | None, size: int) -> None:
        """A frame over a rate limit: a ``rate_limited`` error frame, counted as its kind."""
        err = ProtocolError(ErrorCode.RATE_LIMITED, refusal.message, reply_to)
        await self._reject(err, size, refusal.security_type)

    def _received(
        self, kind: str, correlation_id: str | None, size: int, content: str | None = None
    ) -> None:
        p = self.peer
        self._d.bus.emit(
            MessageReceived(
                type=kind,
                connection_id=p.connection_id,
                session_id=p.session_id,
                user_id=p.user_id,
                correlation_id=correlation_id,
                size_bytes=size,
                content=content,
            )
        )

    async def _reject(
        self,
        err: ProtocolError,
        size: int,
        security: SecurityEventType = SecurityEventType.RATE_LIMITED,
    ) -> None:
        correlation_id = new_correlation_id()
        report, due = self._throttle.admit(err.code)
        if due is not None:
            self._summarise(due)
        if report:
            bind_message(correlation_id)
            self._report_rejection(err, size, correlation_id, security)
        await self.send(
            error_frame(err.code, err.message, correlation_id, err.reply_to), quiet=not report
        )

    def _report_rejection(
        self, err: ProtocolError, size: int, correlation_id: str, security: SecurityEventType
    ) -> None:
        bus, p = self._d.bus, self.peer
        bus.emit(
            FrameRejected(
                code=err.code,
                connection_id=p.connection_id,
                user_id=p.user_id,
                correlation_id=correlation_id,
                detail=err.message,
                size_bytes=size,
            )
        )
        bus.emit(
            ErrorOccurred(
                type=_ERROR_TYPES.get(err.code, ErrorType.VALIDATION),
                code=err.code,
                detail=err.message,
                correlation_id=correlation_id,
            )
        )
        if err.code is ErrorCode.RATE_LIMITED:
            bus.emit(
                SecurityEvent(
                    type=security,
                    client_ip=p.client_ip,
                    user_agent=p.user_agent,
                    user_id=p.user_id,
                    detail=err.message,
                )
            )

    def _summarise(self, summary: RejectionSummary) -> None:
        p = self.peer
        self._d.bus.emit(
            RejectionsSuppressed(
                connection_id=p.connection_id,
                user_id=p.user_id,
                client_ip=p.client_ip,
                count=summary.count,
                by_code=summary.by_code,
                interval_s=summary.interval_s,
            )
        )

    # --- replying ----------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self._current = job
            bind_message(job.correlation_id)
            try:
                ok = await self._answer(job)
            except ClientGone:
                self._cancelled(job)
                return
            except asyncio.CancelledError:
                if self.lifecycle.client_left:
                    self._cancelled(job)
                else:
                    await self._cut_by_shutdown(job)
                raise
            except Exception as err:
                # A failure underneath (store, cache, listener, a bug): answer, log, go on.
                ok = False
                self._d.bus.emit(
                    ErrorOccurred(
                        type=ErrorType.SYSTEM,
                        code=ErrorCode.INTERNAL,
                        detail=f"message handling failed: {type(err).__name__}",
                        correlation_id=job.correlation_id,
                        exception=err,
                    )
                )
                with contextlib.suppress(Exception):  # reported above; never kill the worker
                    await self._fail(job, ErrorCode.INTERNAL, INTERNAL_MESSAGE)
            finally:
                self._current = None
                self._queue.task_done()
            self._d.bus.emit(
                MessageProcessed(
                    type=job.kind,
                    correlation_id=job.correlation_id,
                    duration_s=self._d.clock.monotonic() - job.received_at,
                    ok=ok,
                )
            )

    async def _answer(self, job: _Job) -> bool:
        """Answer a message, or replay the answer of one the session already holds."""
        if job.frame.id not in self.session.pending:
            with self._in_flight(job.frame.id):
                answered = await self._answer_new(job)
            if answered is not None:
                return answered
        return await self._replay(job)

    @contextlib.contextmanager
    def _in_flight(self, message_id: str) -> Iterator[None]:
        """Mark ``message_id`` as being answered, so a retry waits instead of asking again."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.session.pending[message_id] = done
        try:
            yield
        finally:
            if self.session.pending.get(message_id) is done:
                del self.session.pending[message_id]
            done.set_result(None)

    async def _answer_new(self, job: _Job) -> bool | None:
        """Store, acknowledge, reply; None when the id is already stored (a retry)."""
        d, frame = self._d, job.frame
        try:
            await self._write(
                session_id=self.peer.session_id,
                role="user",
                client_id=frame.id,
                correlation_id=job.correlation_id,
                content=job.content,
                now=d.clock.time(),
            )
        except DuplicateMessage:
            return None
        except Exception as err:
            d.bus.emit(
                ErrorOccurred(
                    type=ErrorType.SYSTEM,
                    code=ErrorCode.INTERNAL,
                    detail="could not store the message",
                    correlation_id=job.correlation_id,
                    exception=err,
                )
            )
            # Not stored, so nothing to record the outcome against: a retry is a new message.
            await self._send_error(job, ErrorCode.INTERNAL, INTERNAL_MESSAGE)
            return False
        self.messages += 1
        d.hub.count_message(self.peer.session_id)
        await self.send({"type": "ack", "id": frame.id, "correlation_id": job.correlation_id})
        if isinstance(frame, QuickAction):
            d.bus.emit(QuickActionUsed(action=frame.action, correlation_id=job.correlation_id))
            d.bus.emit(FeatureUsed(feature="quick_action"))
        return await self._reply(job)

    async def _reply(self, job: _Job) -> bool:
        """Ask the consultant and deliver its reply (or the error that stands for it)."""
        d, frame = self._d, job.frame
        context = self.session.context
        turn = ChatTurn("user", job.content)
        if not context or context[-1] != turn:  # a retried message is already there
            context.append(turn)
        turns = [ChatTurn("system", d.system_prompt), *context]
        quick_action = frame.action if isinstance(frame, QuickAction) else None

        async def on_delta(text: str) -> None:
            await self.send(
                {
                    "type": "ai_delta",
                    "reply_to": frame.id,
                    "correlation_id": job.correlation_id,
                    "delta": text,
                }
            )

        async def admit() -> None:
            refusal = await d.limits.hit_ai(self.peer.user_id, self.peer.client_ip)
            if refusal is not None:
                raise LimitExceeded(refusal)

        try:
            reply = await d.consultant.reply(
                turns, job.correlation_id, on_delta, quick_action, admit=admit
            )
        except AIProviderError as err:
            # The consultant counted and logged it; the user's turn stays in context.
            await self._fail(job, ErrorCode.AI_UNAVAILABLE, err.public_message)
            return False
        except LimitExceeded as over:
            # The visitor's doing, not a failure; nothing stored, so a retry later is answered.
            refusal = over.refusal
            refused = ProtocolError(ErrorCode.RATE_LIMITED, refusal.message, frame.id)
            self._report_rejection(refused, 0, job.correlation_id, refusal.security_type)
            await self._send_error(job, ErrorCode.RATE_LIMITED, refusal.message)
            return True
        await self._finish(job, reply)
        return True

    async def _replay(self, job: _Job) -> bool:
        """A message id the session holds: send its ack and answer again, no second AI call."""
        d, frame = self._d, job.frame
        pending = self.session.pending.get(frame.id)
        if pending is not None:
            await asyncio.shield(pending)  # the first attempt, on this or another tab
        exchange = await d.store.find_exchange(self.peer.session_id, frame.id)
        if exchange is None:  # erased in between: answer as a new message would be
            raise RuntimeError("a duplicate message vanished from the store")
        question, answer = exchange.question, exchange.answer
        original = _Job(frame, question.correlation_id, job.received_at)
        bind_message(original.correlation_id)
        d.bus.emit(
            MessageReplayed(
                connection_id=self.peer.connection_id,
                session_id=self.peer.session_id,
                correlation_id=original.correlation_id,
            )
        )
        await self.send({"type": "ack", "id": frame.id, "correlation_id": original.correlation_id})
        if answer is None:
            # The first attempt never answered (the visitor left, a restart): answer now.
            first = _Job(_replayed_frame(frame, question), question.correlation_id, job.received_at)
            with self._in_flight(frame.id):
                return await self._reply(first)
        if answer.role == "error":
            await self._send_error(
                original, ErrorCode(answer.error_code or ErrorCode.INTERNAL), answer.content
            )
            return True
        await self.send(_ai_message(frame.id, original.correlation_id, answer))
        return True

    async def _fail(self, job: _Job, code: ErrorCode, message: str) -> None:
        """Keep the error as the message's outcome (a retry replays it), then send it."""
        with contextlib.suppress(Exception):  # unstored, a retry asks again: still answered
            await self._write(
                session_id=self.peer.session_id,
                role="error",
                correlation_id=job.correlation_id,
                content=message,
                now=self._d.clock.time(),
                reply_to=job.frame.id,
                error_code=code,
            )
        await self._send_error(job, code, message)

    async def _send_error(self, job: _Job, code: ErrorCode, message: str) -> None:
        await self.send(error_frame(code, message, job.correlation_id, job.frame.id))

    async def _write(self, **message: Any) -> None:
        """Store a message; a cancelled handler (client gone, shutdown) never abandons it.

        The write runs as its own task behind a shield and ``stop`` waits for it, so no
        message is half-written and no pooled connection outlives the engine.
        """
        task = asyncio.ensure_future(self._d.store.add_message(**message))
        self._writes.add(task)
        task.add_done_callback(self._write_done)
        await asyncio.shield(task)

    def _write_done(self, task: asyncio.Future[int]) -> None:
        self._writes.discard(task)
        # Read the outcome so an abandoned write never logs "exception was never retrieved";
        # the awaiting handler (if still there) reports the failure itself.
        if not task.cancelled():
            task.exception()

    async def _finish(self, job: _Job, reply: Reply) -> None:
        d, p = self._d, self.peer
        self.session.context.append(ChatTurn("assistant", reply.content))
        meta = {
            "quick_actions": list(reply.quick_actions),
            "handoff": reply.handoff,
            "estimated_usage": reply.estimated_usage,
        }
        await self._write(
            session_id=p.session_id,
            role="assistant",
            correlation_id=job.correlation_id,
            content=reply.content,
            now=d.clock.time(),
            model=reply.model,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost_usd=reply.cost_usd,
            cached=reply.cached,
            reply_to=job.frame.id,
            latency_ms=round(reply.latency_ms, 3),
            meta=meta,
        )
        if reply.handoff:
            d.bus.emit(FeatureUsed(feature="handoff"))
            d.bus.emit(HandoffRequested(p.session_id, p.user_id, job.correlation_id))
        await self.send(
            {
                "type": "ai_message",
                "reply_to": job.frame.id,
                "correlation_id": job.correlation_id,
                "content": reply.content,
                "model": reply.model,
                "usage": {
                    "input_tokens": reply.input_tokens,
                    "output_tokens": reply.output_tokens,
                },
                "cost_usd": reply.cost_usd,
                "cached": reply.cached,
                "latency_ms": round(reply.latency_ms, 3),
                **meta,
            }
        )
        d.bus.emit(
            ResponseCompleted(
                correlation_id=job.correlation_id,
                session_id=p.session_id,
                duration_s=d.clock.monotonic() - job.received_at,
                cached=reply.cached,
            )
        )

    # --- stopping ----------------------------------------------------------------------

    def _cancelled(self, job: _Job) -> None:
        self._d.bus.emit(
            ReplyCancelled(
                connection_id=self.peer.connection_id,
                session_id=self.peer.session_id,
                correlation_id=job.correlation_id,
                reason=CloseReason.CLIENT_CLOSED,
                stored=False,
            )
        )

    async def _cut_by_shutdown(self, job: _Job) -> None:
        # Told to send again; no outcome is stored, so that retry gets a real answer.
        self._d.bus.emit(
            ErrorOccurred(
                type=ErrorType.SYSTEM,
                code=ErrorCode.INTERNAL,
                detail="reply cut short by shutdown",
                correlation_id=job.correlation_id,
            )
        )
        await self._ask_to_resend(job)

    async def _ask_to_resend(self, job: _Job) -> None:
        """Tell the visitor to send ``job`` again (a restart); a socket gone meanwhile is fine."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._send_error(job, ErrorCode.INTERNAL, SHUTDOWN_MESSAGE)

    async def drain(self, grace: float) -> None:
        """Let queued replies finish within ``grace`` seconds, then cut them off."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._queue.join()
        await self.stop(CloseReason.SERVER_SHUTDOWN, 1001)

    async def stop(self, reason: CloseReason = CloseReason.CLIENT_CLOSED, code: int = 1000) -> None:
        """Stop the worker: a visitor who left cancels; a shutdown answers with an error."""
        self.lifecycle.closing(reason, code)
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=10)
        summary = self._throttle.flush()
        if summary is not None:
            self._summarise(summary)
        # Messages that never started: cancelled with the visitor, or told on shutdown.
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if self.lifecycle.client_left:
                self._cancelled(job)
            else:
                await self._ask_to_resend(job)


def _replayed_frame(
    frame: ClientMessage | QuickAction, question: StoredMessage
) -> ClientMessage | QuickAction:
    """The frame as first stored (a retry may differ; the first attempt is the message)."""
    if isinstance(frame, QuickAction):
        return frame
    return ClientMessage(id=frame.id, content=question.content, correlation_id=None)


def _ai_message(reply_to: str, correlation_id: str, answer: StoredMessage) -> dict[str, Any]:
    """The ``ai_message`` frame of a stored reply."""
    meta = answer.meta or {}
    return {
        "type": "ai_message",
        "reply_to": reply_to,
        "correlation_id": correlation_id,
        "content": answer.content,
        "model": answer.model,
        "usage": {
            "input_tokens": answer.input_tokens or 0,
            "output_tokens": answer.output_tokens or 0,
        },
        "cost_usd": answer.cost_usd or 0.0,
        "cached": bool(answer.cached),
        "latency_ms": answer.latency_ms or 0.0,
        "quick_actions": list(meta.get("quick_actions", [])),
        "handoff": bool(meta.get("handoff", False)),
        "estimated_usage": bool(meta.get("estimated_usage", False)),
        "replayed": True,
    }
