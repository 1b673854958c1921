"""``DELETE /api/v1/admin/chat/users/{id}`` on the real server: erasure over HTTP.

SQLite and PostgreSQL; logging at INFO so that chatting
stores log records carrying the guest's user_id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat
from tests.fakes.services import require_postgres

USERS = "/api/v1/admin/chat/users"
LOGS = "/api/v1/admin/chat/logs"


@pytest.fixture(params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, live_server_factory: LiveServerFactory
) -> AsyncIterator[LiveServer]:
    """The real app at log level INFO, on SQLite or on PostgreSQL."""
    if request.param == "sqlite":
        async with live_server_factory(logging={"level": "INFO"}) as srv:
            yield srv
        return
    url = require_postgres()
    async with live_server_factory(database={"url": url}, logging={"level": "INFO"}) as srv:
        yield srv


async def chat_once(server: LiveServer) -> tuple[str, str, str]:
    """A guest who asked one question and left: (token, user_id, session_id)."""
    token, user_id = await server.guest()
    chat = await open_chat(server.ws_url, token)
    frames = await chat.ask("What services do you offer?", "m1")
    assert frames[-1]["type"] == "ai_message"
    await chat.close()
    return token, user_id, chat.session_id


async def stored_logs(client: httpx.AsyncClient, server: LiveServer, user_id: str) -> int:
    """How many stored log records carry ``user_id``, once the socket's close is among them."""
    headers = server.admin_headers()
    for _ in range(200):  # the server logs connection.closed after the socket's loop ends
        r = await client.get(
            LOGS, params={"user_id": user_id, "event": "connection.closed"}, headers=headers
        )
        if r.json()["items"]:
            break
        await asyncio.sleep(0.05)
    r = await client.get(LOGS, params={"user_id": user_id, "limit": "1000"}, headers=headers)
    return len(r.json()["items"])


async def test_erasure_removes_one_users_data_and_counts_it(server: LiveServer) -> None:
    """The guest's session, both messages (question and reply) and every stored log record
    carrying their id go, with exact counts; another guest's history and logs stay."""
    _, user_id, session_id = await chat_once(server)
    other_token, other_id, other_session = await chat_once(server)
    async with server.http() as client:
        logs = await stored_logs(client, server, user_id)
        other_logs = await stored_logs(client, server, other_id)
        assert logs > 0 and other_logs > 0
        r = await client.delete(f"{USERS}/{user_id}", headers=server.admin_headers())
        assert r.status_code == 200, r.text
        assert r.json() == {
            "user_id": user_id,
            "sessions": 1,
            "messages": 2,
            "log_records": logs,
        }
        r = await client.get(
            LOGS, params={"user_id": user_id, "limit": "1000"}, headers=server.admin_headers()
        )
        assert r.json()["items"] == []  # the audit record below does not carry user_id
        r = await client.get(
            LOGS, params={"event": "audit.user_erased"}, headers=server.admin_headers()
        )
        (record,) = r.json()["items"]
        assert (record["erased_user_id"], record["messages"], record["operator"]) == (
            user_id,
            2,
            "admin-token",
        )
        r = await client.get(
            f"/api/v1/chat/sessions/{session_id}/messages", headers=server.admin_headers()
        )
        assert r.status_code == 404
        r = await client.get(
            f"/api/v1/chat/sessions/{other_session}/messages",
            headers={"Authorization": f"Bearer {other_token}"},
        )
        assert len(r.json()["items"]) == 2
        assert await stored_logs(client, server, other_id) == other_logs
        r = await client.delete(f"{USERS}/{user_id}", headers=server.admin_headers())
        assert r.status_code == 404  # nothing is left of them


async def test_unknown_malformed_and_unauthorised(server: LiveServer) -> None:
    """Unknown id → 404; an id no user can have → 400 naming user_id; no credentials → 401;
    a guest's token → 403 (every /api/v1/admin/ path is admin-only)."""
    token, user_id = await server.guest()
    admin = server.admin_headers()
    async with server.http() as client:
        r = await client.delete(f"{USERS}/guest-nobody", headers=admin)
        assert (r.status_code, r.json()["detail"][:8]) == (404, "user_id:")
        for bad in ("x" * 65, "a%00b", "tab%09"):
            r = await client.delete(f"{USERS}/{bad}", headers=admin)
            assert (r.status_code, r.json()["detail"][:8]) == (400, "user_id:"), bad
        r = await client.delete(f"{USERS}/{user_id}")
        assert r.status_code == 401
        r = await client.delete(f"{USERS}/{user_id}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
