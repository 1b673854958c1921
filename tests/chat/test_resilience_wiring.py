"""The [ai] resilience settings reach the consultant of a real server: a visitor on a real
WebSocket sees the fallback's model, and the circuit state is readable by the app."""

from __future__ import annotations

from typing import Any

from chatwatch.chat.resilience import CircuitState
from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import ChatClient, open_chat
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI


async def _chat(srv: LiveServer) -> ChatClient:
    token, _ = await srv.guest()
    return await open_chat(srv.ws_url, token)


def _ai(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "base_url": fake.url, "model": "m", "timeout": 5.0, **extra}


async def test_fallback_reply_is_marked_builtin_in_the_frame(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """ai.fallback = "builtin" with a failing upstream: the visitor gets an ai_message whose
    model is "builtin" (streamed deltas first), not an error frame."""
    fake_openai.behaviour = Behaviour(status=503)
    async with live_server_factory(ai=_ai(fake_openai, fallback="builtin")) as srv:
        client = await _chat(srv)
        frames = await client.ask("What services do you offer?", "1")
        await client.close()
    last = frames[-1]
    deltas = "".join(f["delta"] for f in frames if f["type"] == "ai_delta")
    assert (last["type"], last["model"], deltas == last["content"], bool(last["content"])) == (
        "ai_message",
        "builtin",
        True,
        True,
    )


async def test_circuit_settings_reach_the_consultant(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """ai.circuit_failures = 2 and retry_attempts = 0: two failed messages open the circuit
    (readable as consultant.circuit_state); the third gets ai_unavailable without an
    upstream request."""
    fake_openai.behaviour = Behaviour(status=500)
    ai = _ai(fake_openai, circuit_failures=2, retry_attempts=0)
    async with live_server_factory(ai=ai) as srv:
        consultant = srv.services.chat.consultant
        client = await _chat(srv)
        codes = [(await client.ask(f"question {i}?", str(i)))[-1].get("code") for i in range(3)]
        state = consultant.circuit_state
        await client.close()
    assert (codes, state, len(fake_openai.chat_requests)) == (
        ["ai_unavailable"] * 3,
        CircuitState.OPEN,
        2,
    )


async def test_no_breaker_when_circuit_failures_is_zero(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """ai.circuit_failures = 0 turns the breaker off: every message reaches the upstream."""
    fake_openai.behaviour = Behaviour(status=500)
    ai = _ai(fake_openai, circuit_failures=0, retry_attempts=0)
    async with live_server_factory(ai=ai) as srv:
        client = await _chat(srv)
        for i in range(6):
            await client.ask(f"question {i}?", str(i))
        state = srv.services.chat.consultant.circuit_state
        await client.close()
    assert (state, len(fake_openai.chat_requests)) == (CircuitState.CLOSED, 6)


async def test_budget_setting_stops_ai_calls(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """ai.daily_budget_usd = 0 (a kill switch) with no fallback: ai_unavailable and no
    upstream request."""
    async with live_server_factory(ai=_ai(fake_openai, daily_budget_usd=0)) as srv:
        client = await _chat(srv)
        frame = (await client.ask("hello?", "1"))[-1]
        await client.close()
    assert (frame["type"], frame["code"], fake_openai.chat_requests) == (
        "error",
        "ai_unavailable",
        [],
    )
