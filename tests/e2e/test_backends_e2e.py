"""The server on the engines people already run: PostgreSQL for the store, Redis for the cache."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from tests.conftest import LiveServerFactory
from tests.e2e.client import open_chat
from tests.fakes.services import require_postgres, require_redis


async def test_chat_on_postgresql(live_server_factory: LiveServerFactory) -> None:
    """With database.url on PostgreSQL, chat works and history survives a reconnect."""
    url = require_postgres()
    async with live_server_factory(database={"url": url}) as srv:
        token, _ = await srv.guest()
        first = await open_chat(srv.ws_url, token)
        question = f"What services do you offer? ({uuid.uuid4().hex[:8]})"
        assert (await first.ask(question, "1"))[-1]["type"] == "ai_message"
        await first.close()
        again = await open_chat(srv.ws_url, token, session_id=first.session_id)
        assert again.connected["resumed"] is True
        await again.close()
        stored = await srv.services.store.list_messages(first.session_id)
        assert stored[0].content == question
        assert srv.services.db.dialect == "postgresql"


async def test_cache_in_redis_is_shared_between_servers(
    live_server_factory: LiveServerFactory,
) -> None:
    """With redis.url set, a reply cached by one server is a hit on another."""
    url = require_redis()
    question = f"What are your opening hours? {uuid.uuid4().hex}"
    async with live_server_factory(redis={"url": url}) as one:
        client = await open_chat(one.ws_url, (await one.guest())[0])
        first = (await client.ask(question, "1"))[-1]
        await client.close()
    async with live_server_factory(redis={"url": url}) as two:
        client = await open_chat(two.ws_url, (await two.guest())[0])
        second = (await client.ask(question, "1"))[-1]
        await client.close()
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["content"] == second["content"]
    r = aioredis.from_url(url)
    try:
        keys = [k async for k in r.scan_iter(match="chatwatch:cache:*")]
        assert keys, "the reply must be stored in Redis"
    finally:
        await r.aclose()
