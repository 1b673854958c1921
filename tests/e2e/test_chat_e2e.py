"""The chat service end to end: a real server on a free port, a real WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chatwatch.clock import FakeClock
from tests.conftest import JWT_SECRET, LiveServer, LiveServerFactory
from tests.e2e.client import ChatClient, open_chat
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI


async def _chat(srv: LiveServer, **kw: Any) -> ChatClient:
    token, _ = await srv.guest()
    return await open_chat(srv.ws_url, token, **kw)


async def test_guest_chats_and_reply_streams(live_server: LiveServer) -> None:
    """A guest connects, asks, gets ack, ai_delta frames in order and one ai_message."""
    token, user_id = await live_server.guest()
    client = await open_chat(live_server.ws_url, token)
    hello = client.connected
    assert hello["type"] == "connected"
    assert hello["user_id"] == user_id
    assert hello["resumed"] is False
    assert hello["connection_id"] and hello["session_id"]
    frames = await client.ask("What services do you offer?", "q-1")
    assert frames[0] == {"type": "ack", "id": "q-1", "correlation_id": frames[0]["correlation_id"]}
    deltas = [f for f in frames if f["type"] == "ai_delta"]
    final = frames[-1]
    assert final["type"] == "ai_message"
    assert deltas, "the reply must stream"
    assert "".join(d["delta"] for d in deltas) == final["content"]
    corr = frames[0]["correlation_id"]
    assert all(f["correlation_id"] == corr and f["reply_to"] == "q-1" for f in frames[1:])
    assert final["model"] == "chatwatch-consultant"
    assert final["usage"]["input_tokens"] > 0 and final["usage"]["output_tokens"] > 0
    assert final["cost_usd"] == 0.0
    assert final["cached"] is False
    assert final["latency_ms"] >= 0
    await client.close()


async def test_token_in_header_and_client_correlation_id(live_server: LiveServer) -> None:
    """The token works as a Bearer header; a valid client correlation_id is kept."""
    token, _ = await live_server.guest()
    client = await open_chat(live_server.ws_url, token, via_header=True)
    frames = await client.ask("How do I book a consultation?", "b1", correlation_id="trace-42.a_b")
    assert {f["correlation_id"] for f in frames} == {"trace-42.a_b"}
    await client.close()


async def test_quick_action_is_answered(live_server: LiveServer) -> None:
    """A quick_action frame gets an ack and a reply from the consultant."""
    client = await _chat(live_server)
    await client.send({"type": "quick_action", "id": "qa", "action": "pricing"})
    frames = await client.until("ai_message", "error")
    assert frames[0]["type"] == "ack"
    assert frames[-1]["type"] == "ai_message"
    assert "£" in frames[-1]["content"] or "$" in frames[-1]["content"]
    await client.close()


async def test_ping_pong(live_server: LiveServer) -> None:
    """A ping frame is answered with a pong frame."""
    client = await _chat(live_server)
    await client.send({"type": "ping"})
    assert await client.recv() == {"type": "pong"}
    await client.close()


async def test_resume_keeps_history_and_context(live_server: LiveServer) -> None:
    """Reconnecting with session_id resumes it: resumed true, history kept, context used."""
    token, _ = await live_server.guest()
    first = await open_chat(live_server.ws_url, token)
    await first.ask("Tell me about your cloud migration service", "a")
    await first.close()
    again = await open_chat(live_server.ws_url, token, session_id=first.session_id)
    assert again.connected["resumed"] is True
    assert again.session_id == first.session_id
    frames = await again.ask("How much does that cost?", "b")
    assert frames[-1]["type"] == "ai_message"
    assert "cloud" in frames[-1]["content"].lower()
    await again.close()
    async with live_server.http() as http:
        r = await http.get(
            f"/api/v1/chat/sessions/{first.session_id}/messages",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 200
    roles = [m["role"] for m in r.json()["items"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert r.json()["items"][0]["content"] == "Tell me about your cloud migration service"


async def test_another_users_session_is_refused(live_server: LiveServer) -> None:
    """Resuming or reading another user's session is refused (403), admins excepted."""
    owner = await _chat(live_server)
    await owner.ask("hello", "x")
    intruder_token, _ = await live_server.guest()
    with pytest.raises(InvalidStatus) as caught:
        await open_chat(live_server.ws_url, intruder_token, session_id=owner.session_id)
    assert caught.value.response.status_code == 403
    path = f"/api/v1/chat/sessions/{owner.session_id}/messages"
    async with live_server.http() as http:
        denied = await http.get(path, headers={"Authorization": f"Bearer {intruder_token}"})
        admin = await http.get(path, headers=live_server.admin_headers())
        anonymous = await http.get(path)
    assert denied.status_code == 403
    assert admin.status_code == 200 and len(admin.json()["items"]) == 2
    assert anonymous.status_code == 401
    await owner.close()


async def test_unknown_session_id_starts_a_new_session(live_server: LiveServer) -> None:
    """An unknown session_id is not an error: a new session starts, resumed false."""
    client = await _chat(live_server, session_id="s-does-not-exist")
    assert client.connected["resumed"] is False
    assert client.session_id != "s-does-not-exist"
    await client.close()


BAD_FRAMES: list[tuple[str, str | bytes, str]] = [
    ("malformed JSON", "{not json", "invalid_json"),
    ("a JSON array", "[1, 2]", "invalid_frame"),
    ("a JSON number", "42", "invalid_frame"),
    ("unknown type", json.dumps({"type": "shout", "id": "1"}), "invalid_frame"),
    ("missing id", json.dumps({"type": "message", "content": "hi"}), "invalid_frame"),
    (
        "oversized id",
        json.dumps({"type": "message", "id": "x" * 65, "content": "hi"}),
        "invalid_frame",
    ),
    ("empty content", json.dumps({"type": "message", "id": "1", "content": ""}), "invalid_frame"),
    (
        "blank content",
        json.dumps({"type": "message", "id": "1", "content": " \n "}),
        "invalid_frame",
    ),
    (
        "content not a string",
        json.dumps({"type": "message", "id": "1", "content": 5}),
        "invalid_frame",
    ),
    (
        "bad quick action",
        json.dumps({"type": "quick_action", "id": "1", "action": "x"}),
        "invalid_frame",
    ),
    ("binary frame", b'{"type": "ping"}', "invalid_frame"),
    ("binary invalid UTF-8", b"\xff\xfe\xfd", "invalid_frame"),
]


@pytest.mark.parametrize(("what", "raw", "code"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
async def test_bad_frame_gets_error_and_connection_survives(
    live_server: LiveServer, what: str, raw: str | bytes, code: str
) -> None:
    """Each bad frame gets an error frame with its code; the next message still works."""
    client = await _chat(live_server)
    await client.send(raw)
    error = await client.recv()
    assert error["type"] == "error", what
    assert error["code"] == code, what
    assert error["message"] and error["correlation_id"]
    frames = await client.ask("hello again", "after")
    assert frames[-1]["type"] == "ai_message", what
    await client.close()


async def test_too_large_content_is_refused(live_server_factory: LiveServerFactory) -> None:
    """Content over limits.max_message_bytes gets message_too_large with reply_to; no close."""
    async with live_server_factory(limits={"max_message_bytes": 100}) as srv:
        client = await _chat(srv)
        await client.send({"type": "message", "id": "big", "content": "é" * 51})  # 102 bytes
        error = await client.recv()
        assert (error["code"], error.get("reply_to")) == ("message_too_large", "big")
        await client.send({"type": "message", "id": "huge", "content": "x" * 900_000})
        error = await client.recv()
        assert error["code"] == "message_too_large"
        frames = await client.ask("x" * 100, "fits")
        assert frames[-1]["type"] == "ai_message"
        await client.close()


async def test_frame_above_protocol_cap_closes_with_1009(
    live_server_factory: LiveServerFactory,
) -> None:
    """A frame beyond limits.max_frame_bytes is closed with 1009; other users unaffected."""
    async with live_server_factory(limits={"max_frame_bytes": 4096}) as srv:
        victim, bystander = await _chat(srv), await _chat(srv)
        await victim.send("x" * 10_000)
        with pytest.raises(ConnectionClosed) as closed:
            await victim.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert (await bystander.ask("still there?", "b"))[-1]["type"] == "ai_message"
        await bystander.close()


async def test_invalid_utf8_text_frame_closes_only_that_socket(live_server: LiveServer) -> None:
    """Invalid UTF-8 in a text frame fails that socket with 1007 (RFC 6455); others go on."""
    victim, bystander = await _chat(live_server), await _chat(live_server)
    await victim.ws.send(b"\xff\xfe not utf-8", text=True)
    with pytest.raises(ConnectionClosed) as closed:
        await victim.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert (await bystander.ask("hello", "b"))[-1]["type"] == "ai_message"
    await bystander.close()


async def test_rate_limit_burst(live_server_factory: LiveServerFactory) -> None:
    """A burst over messages_per_minute gets rate_limited frames; another user is unaffected."""
    async with live_server_factory(limits={"messages_per_minute": 3}) as srv:
        spammer, other = await _chat(srv), await _chat(srv)
        for i in range(5):
            await spammer.send({"type": "message", "id": f"s{i}", "content": "hi"})
        frames: list[dict[str, Any]] = []
        while sum(f["type"] in ("ai_message", "error") for f in frames) < 5:
            frames.append(await spammer.recv())
        limited = [f for f in frames if f["type"] == "error"]
        assert [f["code"] for f in limited] == ["rate_limited", "rate_limited"]
        assert {f["reply_to"] for f in limited} == {"s3", "s4"}
        assert len([f for f in frames if f["type"] == "ai_message"]) == 3
        assert (await other.ask("hello", "o"))[-1]["type"] == "ai_message"


async def test_rate_limit_refills_with_time(live_server_factory: LiveServerFactory) -> None:
    """After the limit is hit, time passing (injected clock) lets messages through again."""
    clock = FakeClock()
    async with live_server_factory(clock=clock, limits={"messages_per_minute": 1}) as srv:
        client = await _chat(srv)
        assert (await client.ask("one", "1"))[-1]["type"] == "ai_message"
        assert (await client.ask("two", "2"))[-1]["code"] == "rate_limited"
        clock.advance(61)
        assert (await client.ask("three", "3"))[-1]["type"] == "ai_message"
        await client.close()


async def test_per_ip_connection_limit(live_server_factory: LiveServerFactory) -> None:
    """Sockets over connections_per_ip are refused at the upgrade (429); closing frees a slot."""
    async with live_server_factory(limits={"connections_per_ip": 2}) as srv:
        a, b = await _chat(srv), await _chat(srv)
        with pytest.raises(InvalidStatus) as caught:
            await _chat(srv)
        assert caught.value.response.status_code == 429
        await a.close()
        for _ in range(100):
            if srv.services.hub.active_connections < 2:
                break
            await asyncio.sleep(0.02)
        c = await _chat(srv)
        assert c.connected["type"] == "connected"
        await b.close()
        await c.close()


def _alg_none_token(sub: str) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': sub, 'exp': 4102444800})}."


BAD_TOKENS = {
    "missing": None,
    "garbage": "not-a-jwt",
    "forged": jwt.encode({"sub": "mallory", "exp": 4102444800}, "x" * 32, algorithm="HS256"),
    "expired": jwt.encode({"sub": "alice", "exp": 1_000_000}, JWT_SECRET, algorithm="HS256"),
    "alg none": _alg_none_token("mallory"),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_token_refused_at_handshake(live_server: LiveServer, kind: str) -> None:
    """A missing, garbage, forged, expired or alg:none token gets HTTP 401, never a socket."""
    with pytest.raises(InvalidStatus) as caught:
        await open_chat(live_server.ws_url, BAD_TOKENS[kind])
    assert caught.value.response.status_code == 401


async def test_admin_routes_need_admin(live_server: LiveServer) -> None:
    """Admin paths: 401 without or with bad credentials, 403 for users, 200 for admins."""
    user_token, _ = await live_server.guest()
    admin_jwt = jwt.encode({"sub": "ops", "role": "admin", "exp": 4102444800}, JWT_SECRET, "HS256")
    path = "/api/v1/admin/chat/broadcast"
    body = {"message": "maintenance at 3am"}
    async with live_server.http() as http:
        none = await http.post(path, json=body)
        bad = await http.post(path, json=body, headers={"Authorization": "Bearer nope"})
        user = await http.post(path, json=body, headers={"Authorization": f"Bearer {user_token}"})
        token = await http.post(path, json=body, headers=live_server.admin_headers())
        role = await http.post(path, json=body, headers={"Authorization": f"Bearer {admin_jwt}"})
    assert (none.status_code, bad.status_code, user.status_code) == (401, 401, 403)
    assert (token.status_code, role.status_code) == (200, 200)
    assert none.headers["www-authenticate"].startswith("Bearer")


async def test_broadcast_reaches_connected_clients(live_server: LiveServer) -> None:
    """An admin broadcast is delivered to every open socket; bad bodies get 400."""
    a, b = await _chat(live_server), await _chat(live_server)
    async with live_server.http() as http:
        r = await http.post(
            "/api/v1/admin/chat/broadcast",
            json={"message": "hello all"},
            headers=live_server.admin_headers(),
        )
        bad = await http.post(
            "/api/v1/admin/chat/broadcast",
            json={"message": ""},
            headers=live_server.admin_headers(),
        )
    assert r.json() == {"recipients": 2}
    assert bad.status_code == 400
    assert await a.recv() == {"type": "broadcast", "message": "hello all"}
    assert await b.recv() == {"type": "broadcast", "message": "hello all"}


async def test_health_endpoints(live_server: LiveServer) -> None:
    """/healthz says alive; /readyz says ready while the store answers."""
    async with live_server.http() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["store"] == "ok"


async def test_readyz_fails_when_store_is_gone(live_server: LiveServer) -> None:
    """/readyz answers 503 when the database cannot be reached (a closed port)."""
    from chatwatch.store.db import Database

    real = live_server.services.db
    live_server.services.db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        async with live_server.http() as http:
            r = await http.get("/readyz")
    finally:
        await live_server.services.db.dispose()
        live_server.services.db = real
    assert r.status_code == 503
    assert r.json()["store"] == "unreachable"


async def test_chat_page_is_served(live_server: LiveServer) -> None:
    """GET / serves the chat page, whose script (/static/chat.js) talks to /ws/chat."""
    async with live_server.http() as http:
        page = await http.get("/")
        script = await http.get("/static/chat.js")
    assert (page.status_code, script.status_code) == (200, 200)
    assert '<script src="/static/chat.js">' in page.text
    assert "/ws/chat" in script.text and "/api/v1/auth/guest" in script.text


async def test_same_question_twice_is_cached(live_server: LiveServer) -> None:
    """The same conversation context in a new session is answered from the cache."""
    first = await _chat(live_server)
    one = (await first.ask("What are your opening hours?", "1"))[-1]
    second = await _chat(live_server)
    two = (await second.ask("what are your   OPENING hours?", "1"))[-1]
    assert (one["cached"], two["cached"]) == (False, True)
    assert one["content"] == two["content"]
    assert two["cost_usd"] == 0.0


async def test_openai_provider_streams_usage_and_cost(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """With ai.provider=openai the upstream's stream, usage and price reach the client."""
    fake_openai.behaviour = Behaviour(
        text="We can help with that.", prompt_tokens=1000, completion_tokens=2000, model="gpt-x"
    )
    ai = {
        "provider": "openai",
        "base_url": fake_openai.url,
        "model": "gpt-x",
        "api_key": "sk-test-123",
        "prices": {"gpt-x": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}},
    }
    async with live_server_factory(ai=ai) as srv:
        client = await _chat(srv)
        frames = await client.ask("Can you help?", "1", correlation_id="corr-openai-1")
        final = frames[-1]
        assert final["type"] == "ai_message"
        assert final["content"] == "We can help with that."
        assert final["usage"] == {"input_tokens": 1000, "output_tokens": 2000}
        assert final["cost_usd"] == pytest.approx(0.001 + 0.008)
        assert final["model"] == "gpt-x"
        seen = fake_openai.chat_requests[-1]
        assert seen.headers["x-correlation-id"] == "corr-openai-1"
        assert seen.headers["traceparent"].startswith("00-")
        assert seen.headers["authorization"] == "Bearer sk-test-123"
        assert seen.json["stream"] is True
        await client.close()


@pytest.mark.parametrize(
    "failure",
    [
        Behaviour(status=500),
        Behaviour(stall_after=1),
        Behaviour(cut_after=1),
        Behaviour(first_byte_delay=30),
    ],
    ids=["http 500", "stall mid-stream", "cut stream", "no first byte"],
)
async def test_openai_failure_is_ai_unavailable(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI, failure: Behaviour
) -> None:
    """An upstream 500, stall, cut or silence becomes an ai_unavailable frame, not a hang."""
    fake_openai.behaviour = failure
    ai = {"provider": "openai", "base_url": fake_openai.url, "model": "m", "timeout": 1.0}
    async with live_server_factory(ai=ai) as srv:
        client = await _chat(srv)
        frames = await client.ask("hello?", "1")
        assert frames[-1]["type"] == "error"
        assert frames[-1]["code"] == "ai_unavailable"
        assert frames[-1]["reply_to"] == "1"
        fake_openai.behaviour = Behaviour(text="Back again.")
        assert (await client.ask("and now?", "2"))[-1]["content"] == "Back again."
        await client.close()


async def test_shutdown_finishes_in_flight_reply_then_closes_1001(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """On shutdown an in-flight reply completes, then the socket closes with 1001."""
    fake_openai.behaviour = Behaviour(text="one two three four", chunk_delay=0.2)
    ai = {"provider": "openai", "base_url": fake_openai.url, "model": "m"}
    async with live_server_factory(ai=ai) as srv:
        client = await _chat(srv)
        await client.send({"type": "message", "id": "slow", "content": "take your time"})
        assert (await client.recv())["type"] == "ack"
        srv.server.should_exit = True
        frames = await client.until("ai_message", "error")
        assert frames[-1]["type"] == "ai_message"
        assert frames[-1]["content"] == "one two three four"
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(srv.url + "/healthz")


async def test_shutdown_cuts_overlong_reply_with_error_frame(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """A reply still running when the grace period ends gets an error frame, then 1001."""
    fake_openai.behaviour = Behaviour(stall_after=1)
    ai = {"provider": "openai", "base_url": fake_openai.url, "model": "m", "timeout": 30}
    async with live_server_factory(ai=ai, server={"shutdown_grace": 0.5}) as srv:
        client = await _chat(srv)
        await client.send({"type": "message", "id": "stuck", "content": "hello"})
        await client.until("ai_delta")
        srv.server.should_exit = True
        frames = await client.until("error", "ai_message")
        assert (frames[-1]["type"], frames[-1]["code"]) == ("error", "internal")
        assert frames[-1]["reply_to"] == "stuck"
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    history = await srv.services.store.list_messages(client.session_id)
    assert [m.role for m in history] == ["user"]  # no half-written assistant reply


async def test_security_summary_counts_failed_logins(live_server: LiveServer) -> None:
    """Failed handshakes show up per IP in the admin security summary."""
    for _ in range(3):
        with pytest.raises(InvalidStatus):
            await open_chat(live_server.ws_url, "forged-token")
    async with live_server.http() as http:
        r = await http.get("/api/v1/admin/chat/security", headers=live_server.admin_headers())
    body = r.json()
    assert r.status_code == 200
    assert body["by_type"]["auth_failed"]["total"] == 3
    assert body["recent"]["top_ips"][0]["client_ip"] == "127.0.0.1"
    assert body["recent"]["top_ips"][0]["auth_failures"] == 3


async def test_invalid_client_correlation_id_is_replaced(live_server: LiveServer) -> None:
    """A message with correlation_id "a b" (invalid) is answered under a new, valid id."""
    client = await _chat(live_server)
    frames = await client.ask("hello", "c1", correlation_id="a b")
    ids = {f["correlation_id"] for f in frames}
    assert frames[-1]["type"] == "ai_message"
    assert len(ids) == 1 and "a b" not in ids
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", ids.pop())
    await client.close()


async def test_oversized_frame_close_is_a_protocol_error_and_security_event(
    live_server_factory: LiveServerFactory,
) -> None:
    """A frame over max_frame_bytes: close 1009, counted as protocol_error and oversized_frame."""
    async with live_server_factory(limits={"max_frame_bytes": 4096}) as srv:
        client = await _chat(srv)
        await client.send("x" * 10_000)
        with pytest.raises(ConnectionClosed):
            await client.recv()
        for _ in range(100):
            if srv.services.hub.active_connections == 0:
                break
            await asyncio.sleep(0.02)
        async with srv.http() as http:
            text = (await http.get("/metrics")).text
            security = (
                await http.get("/api/v1/admin/chat/security", headers=srv.admin_headers())
            ).json()
        assert 'chat_connections_closed_total{reason="protocol_error"} 1.0' in text
        assert security["by_type"]["oversized_frame"]["total"] == 1


async def test_ping_counts_as_feature_use(live_server: LiveServer) -> None:
    """Each ping frame moves chat_feature_usage_total{feature="ping"}."""
    client = await _chat(live_server)
    for _ in range(3):
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"
    async with live_server.http() as http:
        text = (await http.get("/metrics")).text
    assert 'chat_feature_usage_total{feature="ping"} 3.0' in text
    await client.close()


async def test_admin_page_needs_admin_and_shows_errors(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """/admin: 401 without credentials, 403 for a user; for an admin it shows health and the
    correlation id of a failed AI reply."""
    fake_openai.behaviour = Behaviour(status=500)
    ai = {"provider": "openai", "base_url": fake_openai.url, "model": "m"}
    async with live_server_factory(ai=ai) as srv:
        token, _ = await srv.guest()
        client = await open_chat(srv.ws_url, token)
        failed = (await client.ask("hello", "1"))[-1]
        assert failed["code"] == "ai_unavailable"
        async with srv.http() as http:
            anonymous = await http.get("/admin")
            user = await http.get("/admin", headers={"Authorization": f"Bearer {token}"})
            page = await http.get("/admin", headers=srv.admin_headers())
        assert (anonymous.status_code, user.status_code, page.status_code) == (401, 403, 200)
        assert "Health" in page.text and "store" in page.text
        assert failed["correlation_id"] in page.text
        await client.close()
