"""Logs end to end: a real server, a real chat client, the admin search, the fake upstream."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI

API_KEY = "sk-test-e2e-9f8e7d6c5b4a3210"
LOGS = "/api/v1/admin/chat/logs"


def _openai(fake: FakeOpenAI) -> dict[str, Any]:
    return {"provider": "openai", "base_url": fake.url, "model": "gpt-x", "api_key": API_KEY}


async def _search(srv: LiveServer, **params: str) -> list[dict[str, Any]]:
    async with srv.http() as http:
        r = await http.get(LOGS, params={"limit": "1000", **params}, headers=srv.admin_headers())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_message_trail_is_found_by_its_correlation_id(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """One search by a message's id finds its whole trail and none of the next message's."""
    fake_openai.behaviour = Behaviour(text="Happy to help.")
    async with live_server_factory(ai=_openai(fake_openai), logging={"level": "INFO"}) as srv:
        token, user_id = await srv.guest()
        client = await open_chat(srv.ws_url, token)
        first = (await client.ask("What do you offer?", "m1"))[0]["correlation_id"]
        second = (await client.ask("And prices?", "m2"))[0]["correlation_id"]
        await client.close()
        trail = await _search(srv, correlation_id=first)
        events = {item["event"] for item in trail}
        assert {
            "message.received",
            "ai.request.started",
            "ai.request.completed",
            "message.sent",
        } <= events
        assert {item["correlation_id"] for item in trail} == {first}
        assert all(item.get("user_id") in (None, user_id) for item in trail)
        assert second not in {item["correlation_id"] for item in trail}
        upstream = fake_openai.chat_requests[0]
        assert upstream.headers["x-correlation-id"] == first
        assert upstream.headers["traceparent"].split("-")[1] == first  # a 32-hex id is the trace id


async def test_error_frame_id_finds_the_rejection(live_server_factory: LiveServerFactory) -> None:
    """The correlation id in an error frame finds the record of that rejected frame."""
    async with live_server_factory(logging={"level": "INFO"}) as srv:
        token, _ = await srv.guest()
        client = await open_chat(srv.ws_url, token)
        await client.send("{not json")
        error = await client.recv()
        await client.close()
        assert error["type"] == "error"
        trail = await _search(srv, correlation_id=error["correlation_id"])
        assert "message.rejected" in {item["event"] for item in trail}
        rejected = next(i for i in trail if i["event"] == "message.rejected")
        assert rejected["code"] == "invalid_json"
        assert rejected["level"] == "warning"


async def test_every_http_response_has_a_correlation_id(live_server: LiveServer) -> None:
    """X-Correlation-ID is echoed when valid and made up otherwise, on every response."""
    async with live_server.http() as http:
        kept = await http.get("/healthz", headers={"X-Correlation-ID": "probe-1"})
        replaced = await http.get("/healthz", headers={"X-Correlation-ID": "bad id!"})
        missing = await http.get("/no/such/page")
        denied = await http.get(LOGS)
    assert kept.headers["X-Correlation-ID"] == "probe-1"
    assert replaced.headers["X-Correlation-ID"] not in ("", "bad id!")
    assert missing.status_code == 404 and missing.headers["X-Correlation-ID"]
    assert denied.status_code == 401 and denied.headers["X-Correlation-ID"]


async def test_security_events_are_logged_with_client(
    live_server_factory: LiveServerFactory,
) -> None:
    """A refused token is a security.auth_failed record with client IP and user agent."""
    async with live_server_factory(logging={"level": "INFO"}) as srv:
        with pytest.raises(InvalidStatus):
            await open_chat(srv.ws_url, "not-a-valid-token", headers={"User-Agent": "probe/9"})
        records = await _search(srv, event="security.*")
    failed = [r for r in records if r["event"] == "security.auth_failed"]
    assert failed
    assert failed[0]["client_ip"] == "127.0.0.1"
    assert failed[0]["user_agent"] == "probe/9"


async def test_secrets_never_reach_stdout_or_the_store(
    live_server_factory: LiveServerFactory,
    fake_openai: FakeOpenAI,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Tokens, the API key and a bogus bearer value appear in no log line and no stored record."""
    fake_openai.behaviour = Behaviour(text="Sure.")
    async with live_server_factory(ai=_openai(fake_openai), logging={"level": "DEBUG"}) as srv:
        token, _ = await srv.guest()
        client = await open_chat(srv.ws_url, token)  # the JWT travels in the query string
        await client.ask("my password is hunter2, keep it safe", "p1")
        await client.close()
        async with srv.http() as http:
            r = await http.get(LOGS, headers={"Authorization": "Bearer bogus-value-0123456789"})
            assert r.status_code == 401
        stored = repr(await _search(srv))
    out, err = capfd.readouterr()
    for secret in (token, srv.admin_token, API_KEY, "bogus-value-0123456789", "hunter2"):
        assert secret not in out + err, secret
        assert secret not in stored, secret


async def test_malformed_search_is_a_400_through_the_server(live_server: LiveServer) -> None:
    """A malformed full-text query through the real server is a 400 with a reason."""
    async with live_server.http() as http:
        r = await http.get(
            LOGS, params={"q": '"unbalanced AND ('}, headers=live_server.admin_headers()
        )
        stats = await http.get(f"{LOGS}/stats", headers=live_server.admin_headers())
    assert r.status_code == 400
    assert r.json()["detail"].startswith("q:")
    assert stats.status_code == 200
    assert "by_level" in stats.json()


async def test_log_search_needs_an_admin(live_server: LiveServer) -> None:
    """The log endpoints are behind admin auth: 401 without credentials, 403 for a user."""
    token, _ = await live_server.guest()
    async with live_server.http() as http:
        anonymous = await http.get(LOGS)
        user = await http.get(LOGS, headers={"Authorization": f"Bearer {token}"})
    assert (anonymous.status_code, user.status_code) == (401, 403)
