"""The chat path under failure: never silent, cancellation is no error, retries are idempotent.

Each test runs a real server on a free port and a real WebSocket client; the AI provider is
a small in-test provider where a failure must be provoked on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from chatwatch.chat.providers.base import (
    AIProvider,
    AIProviderError,
    AIRequest,
    Completion,
    TextDelta,
)
from chatwatch.events import (
    ConnectionClosed,
    ErrorOccurred,
    Event,
    FrameRejected,
    MessageReplayed,
    MessageSent,
    RejectionsSuppressed,
    ReplyCancelled,
    SecurityEvent,
)
from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import ChatClient, open_chat


class ScriptedProvider(AIProvider):
    """Answers "answer N" for its N-th call; a call may be told to fail or to wait."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self) -> None:
        self.calls = 0
        self.fail_with: BaseException | None = None
        self.gate: asyncio.Event | None = None  # when set, replies wait on it after a delta
        self.started = asyncio.Event()

    async def stream(self, request: AIRequest) -> AsyncIterator[TextDelta | Completion]:
        self.calls += 1
        n = self.calls
        self.started.set()
        if self.fail_with is not None:
            raise self.fail_with
        yield TextDelta("answer ")
        if self.gate is not None:
            await self.gate.wait()
        yield TextDelta(str(n))
        yield Completion(f"answer {n}", self.model, 3, 2)


def record(srv: LiveServer) -> list[Event]:
    """Every event the server emits from now on."""
    events: list[Event] = []
    srv.services.bus.subscribe_all(events.append)
    return events


async def _chat(
    srv: LiveServer, session_id: str | None = None, token: str | None = None
) -> ChatClient:
    if token is None:
        token, _ = await srv.guest()
    return await open_chat(srv.ws_url, token, session_id)


async def _eventually(predicate: Any, wait: float = 5.0) -> None:
    for _ in range(int(wait / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_provider_crash_is_an_internal_error_and_the_socket_keeps_serving(
    live_server_factory: LiveServerFactory,
) -> None:
    """A provider raising an unexpected exception (here UnicodeEncodeError, as httpx does
    for a non-ASCII API key) gets an `internal` error frame for that message — friendly, no
    exception name — is reported once with its exception, and the next message is answered."""
    provider = ScriptedProvider()
    provider.fail_with = UnicodeEncodeError("ascii", "sk-…", 3, 4, "ordinal not in range")
    async with live_server_factory(provider=provider) as srv:
        events = record(srv)
        client = await _chat(srv)
        frames = await client.ask("hello", "1")
        assert [f["type"] for f in frames] == ["ack", "error"]
        error = frames[-1]
        assert (error["code"], error["reply_to"]) == ("internal", "1")
        assert error["correlation_id"] == frames[0]["correlation_id"]
        assert "Unicode" not in error["message"] and "ascii" not in error["message"]
        reported = [e for e in events if isinstance(e, ErrorOccurred)]
        assert len(reported) == 1 and isinstance(reported[0].exception, UnicodeEncodeError)
        provider.fail_with = None
        frames = await client.ask("again", "2")
        assert frames[-1]["type"] == "ai_message"
        assert frames[-1]["content"] == "answer 2"
        await client.close()


async def test_provider_error_message_is_friendly(
    live_server_factory: LiveServerFactory,
) -> None:
    """An AIProviderError's own text (upstream detail) never reaches the visitor."""
    provider = ScriptedProvider()
    provider.fail_with = AIProviderError("AI server answered HTTP 500: upstream exploded")
    async with live_server_factory(provider=provider) as srv:
        client = await _chat(srv)
        error = (await client.ask("hello", "1"))[-1]
        assert error["code"] == "ai_unavailable"
        assert "exploded" not in error["message"] and "500" not in error["message"]
        await client.close()


async def test_a_raising_listener_never_silences_the_chat(
    live_server_factory: LiveServerFactory,
) -> None:
    """A listener that raises on every event is reported, and the visitor still gets replies."""
    provider = ScriptedProvider()
    async with live_server_factory(provider=provider) as srv:

        def broken(_: Event) -> None:
            raise RuntimeError("listener bug")

        srv.services.bus.subscribe_all(broken)
        client = await _chat(srv)
        assert (await client.ask("hi", "1"))[-1]["content"] == "answer 1"
        assert (await client.ask("hi again", "2"))[-1]["content"] == "answer 2"
        await client.close()


async def test_visitor_closing_mid_reply_is_a_cancellation_not_an_error(
    live_server_factory: LiveServerFactory,
) -> None:
    """Closing the tab while a reply streams cancels it: a ReplyCancelled, the close reason
    `client_closed`, and no error event or error counter anywhere."""
    provider = ScriptedProvider()
    provider.gate = asyncio.Event()
    async with live_server_factory(provider=provider) as srv:
        events = record(srv)
        client = await _chat(srv)
        await client.send({"type": "message", "id": "1", "content": "tell me everything"})
        await client.until("ai_delta")
        await client.close()
        await _eventually(lambda: any(isinstance(e, ConnectionClosed) for e in events))
        cancelled = [e for e in events if isinstance(e, ReplyCancelled)]
        assert len(cancelled) == 1 and cancelled[0].reason == "client_closed"
        closed = next(e for e in events if isinstance(e, ConnectionClosed))
        assert closed.reason == "client_closed"
        assert not [e for e in events if isinstance(e, ErrorOccurred)]
        registry = srv.services.metrics.registry
        assert not registry.get_sample_value("chat_errors_total", {"type": "system"})
        assert not registry.get_sample_value("chat_message_errors_total", {"code": "internal"})
        cancelled_calls = [
            sample.value
            for family in registry.collect()
            if family.name == "chat_ai_requests"
            for sample in family.samples
            if sample.name == "chat_ai_requests_total" and sample.labels["outcome"] == "cancelled"
        ]
        assert sum(cancelled_calls) == 1  # the AI call's own trail says what became of it


async def test_resending_a_stored_id_replays_without_a_second_ai_call(
    live_server_factory: LiveServerFactory,
) -> None:
    """The same message id sent again — on the same socket and after a reconnect — gets the
    same ack (same correlation id) and the same reply, and the AI is asked once."""
    provider = ScriptedProvider()
    async with live_server_factory(provider=provider) as srv:
        events = record(srv)
        token, _ = await srv.guest()
        client = await _chat(srv, token=token)
        first = await client.ask("what do you cost?", "m1")
        again = await client.ask("what do you cost?", "m1")
        assert [f["type"] for f in again] == ["ack", "ai_message"]
        assert again[0]["correlation_id"] == first[0]["correlation_id"]
        assert again[-1]["content"] == first[-1]["content"] == "answer 1"
        assert again[-1]["reply_to"] == "m1"
        await client.close()
        back = await _chat(srv, client.session_id, token)
        replay = await back.ask("what do you cost?", "m1")
        assert replay[-1]["content"] == "answer 1"
        assert provider.calls == 1
        assert sum(isinstance(e, MessageReplayed) for e in events) == 2
        history = await srv.services.store.list_messages(client.session_id)
        assert [m.role for m in history] == ["user", "assistant"]
        await back.close()


async def test_resending_a_failed_id_replays_its_error(
    live_server_factory: LiveServerFactory,
) -> None:
    """A message whose answer was an error replays that error, without asking the AI again."""
    provider = ScriptedProvider()
    provider.fail_with = AIProviderError("down")
    async with live_server_factory(provider=provider) as srv:
        client = await _chat(srv)
        first = (await client.ask("hello", "m1"))[-1]
        again = await client.ask("hello", "m1")
        assert [f["type"] for f in again] == ["ack", "error"]
        assert (again[-1]["code"], again[-1]["message"]) == (first["code"], first["message"])
        assert provider.calls == 1
        await client.close()


async def test_retry_after_leaving_mid_reply_gets_the_answer(
    live_server_factory: LiveServerFactory,
) -> None:
    """A message acked but cancelled (the visitor left) is answered when it is re-sent."""
    provider = ScriptedProvider()
    provider.gate = asyncio.Event()
    async with live_server_factory(provider=provider) as srv:
        token, _ = await srv.guest()
        client = await _chat(srv, token=token)
        await client.send({"type": "message", "id": "m1", "content": "hello"})
        await client.until("ai_delta")
        await client.close()
        provider.gate.set()
        back = await _chat(srv, client.session_id, token)
        frames = await back.ask("hello", "m1")
        assert frames[-1]["type"] == "ai_message"
        assert frames[-1]["reply_to"] == "m1"
        await back.close()


async def test_two_tabs_of_one_session_each_get_their_own_replies(
    live_server_factory: LiveServerFactory,
) -> None:
    """Two sockets on one session both stay open; each gets the replies to what it sent, and
    a message id sent from both at once is answered by one AI call."""
    provider = ScriptedProvider()
    async with live_server_factory(provider=provider) as srv:
        token, _ = await srv.guest()
        tab1 = await _chat(srv, token=token)
        tab2 = await _chat(srv, tab1.session_id, token)
        one = await tab1.ask("from tab one", "a")
        two = await tab2.ask("from tab two", "b")
        assert (one[-1]["reply_to"], two[-1]["reply_to"]) == ("a", "b")
        provider.gate = asyncio.Event()
        await tab1.send({"type": "message", "id": "same", "content": "twice"})
        await tab1.until("ai_delta")
        await tab2.send({"type": "message", "id": "same", "content": "twice"})
        provider.gate.set()
        r1 = (await tab1.until("ai_message"))[-1]
        r2 = (await tab2.until("ai_message"))[-1]
        assert r1["content"] == r2["content"]
        assert provider.calls == 3
        for tab in (tab1, tab2):
            await tab.send({"type": "ping"})
            assert (await tab.recv())["type"] == "pong"
            await tab.close()


async def test_a_flood_of_bad_frames_is_counted_not_logged_one_by_one(
    live_server_factory: LiveServerFactory,
) -> None:
    """200 one-byte bad frames: each gets its error frame, only the first few are reported
    one by one, the rest arrive as one summary with their count, and the metric counts all."""
    async with live_server_factory(limits={"messages_per_minute": 10_000}) as srv:
        events = record(srv)
        client = await _chat(srv)
        for _ in range(200):
            await client.send("x")
        for _ in range(200):
            assert (await client.recv())["code"] == "invalid_json"
        await client.close()
        await _eventually(lambda: any(isinstance(e, ConnectionClosed) for e in events))
        reported = sum(isinstance(e, FrameRejected) for e in events)
        summaries = [e for e in events if isinstance(e, RejectionsSuppressed)]
        assert reported == 10
        assert [s.count for s in summaries] == [190]
        assert summaries[0].by_code == (("invalid_json", 190),)
        quiet = [e for e in events if isinstance(e, MessageSent) and e.quiet]
        assert len(quiet) == 190
        registry = srv.services.metrics.registry
        total = registry.get_sample_value("chat_message_errors_total", {"code": "invalid_json"})
        assert total == 200
        assert registry.get_sample_value("chat_errors_total", {"type": "validation"}) == 200


async def test_message_limit_holds_across_reconnects(
    live_server_factory: LiveServerFactory,
) -> None:
    """`limits.messages_per_minute` counts a user's messages over all their sockets: a
    reconnect (the attack that got 10,000 replies from one IP) gets no fresh allowance."""
    provider = ScriptedProvider()
    async with live_server_factory(provider=provider, limits={"messages_per_minute": 3}) as srv:
        events = record(srv)
        token, _ = await srv.guest()
        first = await _chat(srv, token=token)
        for n in range(3):
            assert (await first.ask(f"question {n}", f"m{n}"))[-1]["type"] == "ai_message"
        await first.close()
        second = await _chat(srv, first.session_id, token)
        refused = (await second.ask("one more", "m3"))[-1]
        assert (refused["type"], refused["code"], refused["reply_to"]) == (
            "error",
            "rate_limited",
            "m3",
        )
        assert "try again in" in refused["message"]
        assert provider.calls == 3
        assert any(isinstance(e, SecurityEvent) and e.type == "rate_limited" for e in events)
        await second.close()


async def test_message_limit_per_ip_counts_every_user_of_the_address(
    live_server_factory: LiveServerFactory,
) -> None:
    """`limits.messages_per_minute_per_ip` is shared by every user behind one address."""
    limits = {"messages_per_minute": 100, "messages_per_minute_per_ip": 2}
    async with live_server_factory(provider=ScriptedProvider(), limits=limits) as srv:
        one, two = await _chat(srv), await _chat(srv)
        assert (await one.ask("a", "1"))[-1]["type"] == "ai_message"
        assert (await two.ask("b", "1"))[-1]["type"] == "ai_message"
        assert (await two.ask("c", "2"))[-1]["code"] == "rate_limited"
        await one.close()
        await two.close()


async def test_ai_limit_refuses_ai_calls_but_not_cache_hits(
    live_server_factory: LiveServerFactory,
) -> None:
    """`limits.ai_requests_per_minute` stops AI calls (a `rate_limited` frame, an
    `ai_spend_limited` security event), while a cached answer is still given."""
    provider = ScriptedProvider()
    async with live_server_factory(provider=provider, limits={"ai_requests_per_minute": 1}) as srv:
        events = record(srv)
        client = await _chat(srv)
        assert (await client.ask("what do you cost?", "1"))[-1]["content"] == "answer 1"
        refused = await client.ask("and your hours?", "2")
        assert [f["type"] for f in refused] == ["ack", "error"]
        assert (refused[-1]["code"], refused[-1]["reply_to"]) == ("rate_limited", "2")
        assert any(isinstance(e, SecurityEvent) and e.type == "ai_spend_limited" for e in events)
        assert provider.calls == 1
        await client.close()
        other = await _chat(srv)
        cached = (await other.ask("what do you cost?", "1"))[-1]
        assert (cached["type"], cached["cached"]) == ("ai_message", True)
        await other.close()
