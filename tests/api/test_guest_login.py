"""``POST /api/v1/auth/guest`` on the real server: at most ``limits.guest_logins_per_minute``
per client IP, then 429 with ``Retry-After``, a security event and a rate_limit error."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis.asyncio as aioredis

from chatwatch.chat.limits import client_key, identity_digest
from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat
from tests.fakes.services import require_redis


async def _logins(client: httpx.AsyncClient, n: int, ip: str | None = None) -> list[httpx.Response]:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return [await client.post("/api/v1/auth/guest", headers=headers) for _ in range(n)]


def _errors(srv: LiveServer, error_type: str) -> float:
    registry = srv.services.registry
    value = registry.get_sample_value("chat_errors_total", {"type": error_type})
    return float(value or 0.0)


async def test_61st_guest_login_in_a_minute_is_429(live_server: LiveServer) -> None:
    """Regression (issue 8): 61 guest logins from one IP: 60 tokens, then 429 with a
    Retry-After of 1..60 s and a reason; counted as a guest_login_flood security event and
    a rate_limit error. Before, all of 500 logins from one IP in 3.2 s got a token."""
    async with live_server.http() as client:
        responses = await _logins(client, 61)
    assert [r.status_code for r in responses] == [200] * 60 + [429]
    refused = responses[-1]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("more than 60 guest logins a minute")
    assert refused.headers["X-Correlation-ID"]
    totals = live_server.services.metrics.read().totals
    assert {k: v for k, v in totals.security_by_type.items() if v} == {"guest_login_flood": 1}
    assert _errors(live_server, "rate_limit") == 1


async def test_the_rest_of_the_app_is_unaffected(live_server: LiveServer) -> None:
    """With the guest logins of 127.0.0.1 spent, /healthz answers, a token minted earlier
    still chats, and further refusals stay 429 (never 500)."""
    async with live_server.http() as client:
        first = (await client.post("/api/v1/auth/guest")).json()["token"]
        await _logins(client, 60)
        assert (await client.post("/api/v1/auth/guest")).status_code == 429
        assert (await client.get("/healthz")).status_code == 200
    chat = await open_chat(live_server.ws_url, first)
    try:
        frames = await chat.ask("What do you offer?")
    finally:
        await chat.close()
    assert frames[-1]["type"] == "ai_message"


async def test_limit_is_per_client_ip(live_server_factory: LiveServerFactory) -> None:
    """Behind a trusted proxy the limit follows X-Forwarded-For: one spent address does not
    refuse another (the limit of 3 set for the test)."""
    async with (
        live_server_factory(
            server={"forwarded_allow_ips": ["127.0.0.1"]}, limits={"guest_logins_per_minute": 3}
        ) as srv,
        srv.http() as client,
    ):
        one = await _logins(client, 4, "198.51.100.1")
        two = await _logins(client, 1, "198.51.100.2")
    assert [r.status_code for r in one + two] == [200, 200, 200, 429, 200]


async def test_disabled_guest_login_is_403_not_counted(
    live_server_factory: LiveServerFactory,
) -> None:
    """With guest login off every attempt is 403 (a refusal of the feature, not a flood)."""
    async with live_server_factory(
        auth={"guest_login": False}, limits={"guest_logins_per_minute": 1}
    ) as srv:
        async with srv.http() as client:
            responses = await _logins(client, 3)
        assert [r.status_code for r in responses] == [403] * 3
        totals = srv.services.metrics.read().totals
        assert not any(totals.security_by_type.values())


async def test_openapi_declares_the_429(live_server: LiveServer) -> None:
    """The route's OpenAPI names the 429 and its Retry-After header."""
    async with live_server.http() as client:
        spec = (await client.get("/api/openapi.json")).json()
    responses = spec["paths"]["/api/v1/auth/guest"]["post"]["responses"]
    assert "Retry-After" in responses["429"]["headers"]
    assert "403" in responses


@pytest.mark.redis
async def test_two_servers_sharing_redis_share_the_limit(
    live_server_factory: LiveServerFactory, tmp_path: Path
) -> None:
    """Two servers on one Redis (two nodes) count one IP's guest logins together: at 3/min,
    alternating between them, the 4th is refused (each alone would have allowed 3)."""
    url = require_redis()
    # An address of this test's own, so that other runs sharing the Redis do not count.
    ip = f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    warm_up = f"198.19.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    patterns = [
        f"chatwatch:limits:LIMITER/guest_login/ip/{identity_digest(client_key(a))}/*"
        for a in (ip, warm_up)
    ]
    redis = aioredis.Redis.from_url(url)

    def sections(name: str) -> dict[str, Any]:
        return {
            "redis": {"url": url},
            "server": {"forwarded_allow_ips": ["127.0.0.1"], "data_dir": tmp_path / name},
            "limits": {"guest_logins_per_minute": 3},
        }

    async def forget() -> None:
        keys = [key for p in patterns async for key in redis.scan_iter(match=p)]
        if keys:
            await redis.delete(*keys)

    try:
        await forget()
        async with (
            live_server_factory(**sections("one")) as one,
            live_server_factory(**sections("two")) as two,
            one.http() as a,
            two.http() as b,
        ):
            # Each server's first check opens its Redis connection and loads the script:
            # done here, from another address, so a slow start cannot send a counted
            # check to the memory fallback.
            for c in (a, b):
                await _logins(c, 1, warm_up)
            statuses = [(await _logins(c, 1, ip))[0].status_code for c in (a, b, a, b)]
            fallbacks = [srv.services.limits.fallback_calls for srv in (one, two)]
        assert (statuses, fallbacks) == ([200, 200, 200, 429], [0, 0])
    finally:
        await forget()
        await cast(Any, redis).aclose()
