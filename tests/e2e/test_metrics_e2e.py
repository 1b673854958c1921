"""Metrics end to end: real chat over a real WebSocket, read back from /metrics and the JSON
admin API. A fake OpenAI-compatible upstream with set delays and token counts makes the
latency percentiles, tokens and cost checkable exactly."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from chatwatch.observe.metrics.json_api import CATEGORIES
from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.observe.promtool import find_or_install_promtool

ADMIN = "/api/v1/admin/chat"
MODEL = "gpt-4o-mini"
# Prices set here (not the bundled table) so the expected cost is exact.
PRICES = {MODEL: {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}
DELAYS = [0.1, 0.3, 0.5, 0.7, 0.9]  # first-byte delay of each reply, seconds


def openai_settings(fake: FakeOpenAI) -> dict[str, Any]:
    """Server settings for the fake upstream, with exact prices and no cache."""
    return {
        "ai": {"provider": "openai", "base_url": fake.url, "model": MODEL, "prices": PRICES},
        "cache": {"enabled": False},
    }


async def scrape(srv: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    async with srv.http() as client:
        r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """One sample's value (0 when absent)."""
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


async def admin_get(srv: LiveServer, path: str) -> Any:
    """GET an admin JSON path."""
    async with srv.http() as client:
        r = await client.get(ADMIN + path, headers=srv.admin_headers())
    assert r.status_code == 200, (path, r.text)
    return r.json()


async def test_ai_latency_tokens_and_cost_are_exact(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """Known delays and usage give exact counts, tokens, cost, and p50/p95/p99 within 2%."""
    for delay in DELAYS:
        fake_openai.script.append(
            Behaviour(
                chunks=["Happy ", "to ", "help."],
                first_byte_delay=delay,
                prompt_tokens=1000,
                completion_tokens=250,
                model=MODEL,
            )
        )
    async with live_server_factory(**openai_settings(fake_openai)) as srv:
        token, _ = await srv.guest()
        chat = await open_chat(srv.ws_url, token)
        for n in range(len(DELAYS)):
            frames = await chat.ask(f"question number {n}", f"q{n}")
            assert frames[-1]["type"] == "ai_message", frames[-1]
        got = await scrape(srv)
        ai = await admin_get(srv, "/metrics/ai")
        messages = await admin_get(srv, "/metrics/messages")
        perf = await admin_get(srv, "/metrics/performance")
        await chat.close()

    labels = {"provider": "openai", "model": MODEL}
    cost = len(DELAYS) * (1000 * 2.0 + 250 * 8.0) / 1_000_000
    assert sample(got, "chat_ai_requests_total", **labels, outcome="success") == 5
    assert sample(got, "chat_ai_tokens_total", **labels, type="input") == 5000
    assert sample(got, "chat_ai_tokens_total", **labels, type="output") == 1250
    assert sample(got, "chat_ai_cost_usd_total", **labels) == pytest.approx(cost)
    assert sample(got, "chat_ai_request_duration_seconds_count", **labels) == 5
    assert sample(got, "chat_ai_time_to_first_token_seconds_count", **labels) == 5
    # Every reply waited at least its delay; bucket 0.64 holds exactly the 0.1/0.3/0.5 ones.
    assert sample(got, "chat_ai_request_duration_seconds_sum", **labels) >= sum(DELAYS)
    assert sample(got, "chat_ai_request_duration_seconds_bucket", **labels, le="0.64") == 3
    assert sample(got, "chat_messages_received_total", type="message") == 5
    assert sample(got, "chat_messages_sent_total", type="ai_message") == 5
    assert sample(got, "chat_messages_sent_total", type="ack") == 5
    assert sample(got, "chat_response_seconds_count") == 5
    assert sample(got, "chat_connections_active") == 1

    assert ai["requests"]["total"] == 5 and ai["failed"]["total"] == 0
    assert ai["tokens_input"]["total"] == 5000 and ai["tokens_output"]["total"] == 1250
    assert ai["cost_usd"]["total"] == pytest.approx(cost)
    assert ai["by_model"][MODEL]["requests"]["total"] == 5
    assert ai["success_rate"] == 1.0
    duration, ttft = ai["duration_seconds"], ai["time_to_first_token_seconds"]
    assert duration["count"] == 5 and ttft["count"] == 5
    # Rank floor(q*(n-1)) of five: p50 is the 0.5 s reply, p95 and p99 the 0.7 s one. Each
    # observed value is its delay plus a little work, so it is above the delay and far below
    # the next one: the percentile is the right reply, to the sketch's 1%.
    for stats in (duration, ttft):
        assert 0.5 * 0.98 <= stats["p50"] < 0.7
        assert 0.7 * 0.98 <= stats["p95"] < 0.9
        assert 0.7 * 0.98 <= stats["p99"] < 0.9
    assert messages["received"]["total"] == 5
    assert messages["processing_seconds"]["count"] == 5
    assert perf["response_seconds"]["count"] == 5
    assert perf["response_seconds"]["p50"] >= 0.5 * 0.98


async def test_ai_failure_is_counted_by_outcome_code_and_type(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """An upstream 500 is an AI error, an ai_unavailable error frame and an ai_provider error."""
    fake_openai.behaviour = Behaviour(status=500)  # the retry fails too
    async with live_server_factory(**openai_settings(fake_openai)) as srv:
        token, _ = await srv.guest()
        chat = await open_chat(srv.ws_url, token)
        frames = await chat.ask("will this fail?", "f1")
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "ai_unavailable"
        got = await scrape(srv)
        errors = await admin_get(srv, "/metrics/errors")
        ai = await admin_get(srv, "/metrics/ai")
        await chat.close()
    labels = {"provider": "openai", "model": MODEL}
    assert sample(got, "chat_ai_requests_total", **labels, outcome="error") == 1
    assert sample(got, "chat_message_errors_total", code="ai_unavailable") == 1
    assert sample(got, "chat_errors_total", type="ai_provider") == 1
    assert sample(got, "chat_messages_sent_total", type="error") == 1
    assert errors["by_type"]["ai_provider"]["total"] == 1
    assert errors["error_rate"] == 1.0
    assert ai["failed"]["total"] == 1 and ai["success_rate"] == 0.0


async def test_connections_sessions_frames_and_security(live_server: LiveServer) -> None:
    """Refusals, reconnections, sessions, users, bad frames, pings and quick actions all count."""
    with pytest.raises(InvalidStatus):
        await open_chat(live_server.ws_url, "not-a-token")
    token, _ = await live_server.guest()
    first = await open_chat(live_server.ws_url, token)
    await first.send("{not json")
    assert (await first.until("error"))[-1]["code"] == "invalid_json"
    await first.send({"type": "ping"})
    await first.until("pong")
    await first.send({"type": "quick_action", "id": "qa1", "action": "pricing"})
    await first.until("ai_message", "error")
    again = await open_chat(live_server.ws_url, token, session_id=first.session_id)
    assert again.connected["resumed"] is True
    got = await scrape(live_server)
    assert sample(got, "chat_connections_opened_total") == 2
    assert sample(got, "chat_reconnections_total") == 1
    assert sample(got, "chat_connections_active") == 2
    assert sample(got, "chat_active_users") == 1
    assert sample(got, "chat_active_sessions") == 1
    assert sum(v for (n, _), v in got.items() if n == "chat_connections_failed_total") == 1
    assert sample(got, "chat_security_events_total", type="auth_failed") >= 1
    assert sample(got, "chat_message_errors_total", code="invalid_json") == 1
    assert sample(got, "chat_errors_total", type="validation") == 1
    assert sample(got, "chat_messages_received_total", type="ping") == 1
    assert sample(got, "chat_quick_actions_total", action="pricing") == 1
    await first.close()
    await again.close()
    for _ in range(100):  # the server notices the closes asynchronously
        got = await scrape(live_server)
        if sample(got, "chat_connections_active") == 0 and sample(got, "chat_active_sessions") == 0:
            break
        await asyncio.sleep(0.05)
    assert sample(got, "chat_connections_active") == 0
    assert sample(got, "chat_active_users") == 0
    assert sample(got, "chat_active_sessions") == 0
    assert sample(got, "chat_connections_closed_total", reason="client_closed") == 2
    assert sample(got, "chat_session_duration_seconds_count") == 1
    users = await admin_get(live_server, "/metrics/users")
    assert users["quick_actions"]["pricing"] == 1
    assert users["messages_per_session"] is not None


async def test_admin_json_api_reset_and_history(live_server: LiveServer) -> None:
    """Admin endpoints answer (401 without auth); reset keeps /metrics monotonic; bad params 400."""
    token, _ = await live_server.guest()
    chat = await open_chat(live_server.ws_url, token)
    await chat.ask("hello there", "h1")
    async with live_server.http() as client:
        assert (await client.get(ADMIN + "/metrics")).status_code == 401
    whole = await admin_get(live_server, "/metrics")
    assert set(whole) == set(CATEGORIES)
    for name in CATEGORIES:
        assert (await admin_get(live_server, f"/metrics/{name}"))["window_seconds"] == 300
    summary = await admin_get(live_server, "/metrics/summary")
    assert summary["status"] in ("healthy", "degraded", "unhealthy")
    assert summary["active_connections"] == 1
    health = await admin_get(live_server, "/health")
    assert health["checks"]["store"]["status"] == "healthy"
    assert (await admin_get(live_server, "/alerts"))["active"] == []
    assert "items" in await admin_get(live_server, "/metrics/history")
    async with live_server.http() as client:
        r = await client.post(ADMIN + "/metrics/reset", headers=live_server.admin_headers())
        assert r.status_code == 200 and r.json()["reset_at"]
        r = await client.get(
            ADMIN + "/metrics/history",
            params={"limit": "lots"},
            headers=live_server.admin_headers(),
        )
        assert r.status_code == 400 and "limit" in r.json()["detail"]
    received = (await admin_get(live_server, "/metrics/messages"))["received"]
    assert received["total"] == 1 and received["since_reset"] == 0
    got = await scrape(live_server)
    assert sample(got, "chat_messages_received_total", type="message") == 1
    await chat.close()


async def test_metrics_formats_and_promtool_on_the_live_server(live_server: LiveServer) -> None:
    """/metrics negotiates OpenMetrics, has process_* and runtime gauges, and passes promtool."""
    token, _ = await live_server.guest()
    chat = await open_chat(live_server.ws_url, token)
    await chat.ask("what do you charge?", "p1")
    async with live_server.http() as client:
        text = await client.get("/metrics")
        om = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    await chat.close()
    assert text.headers["content-type"].startswith("text/plain")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    for name in (
        "process_resident_memory_bytes",
        "chat_event_loop_lag_seconds",
        "chat_asyncio_tasks",
    ):
        assert name in text.text
    promtool = await asyncio.to_thread(find_or_install_promtool)
    result = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text.content, capture_output=True
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result


async def test_bad_token_on_metrics_when_configured(live_server_factory: LiveServerFactory) -> None:
    """With metrics.token set, /metrics needs it."""
    async with (
        live_server_factory(metrics={"token": "scrape-token-1234567890"}) as srv,
        httpx.AsyncClient(base_url=srv.url) as client,
    ):
        assert (await client.get("/metrics")).status_code == 401
        ok = await client.get(
            "/metrics", headers={"Authorization": "Bearer scrape-token-1234567890"}
        )
        assert ok.status_code == 200


async def test_cache_broadcast_and_feature_metrics(live_server: LiveServer) -> None:
    """A repeated first question is a cache hit; an admin broadcast and a quick action count."""
    clients = []
    for n in range(2):
        token, _ = await live_server.guest()
        chat = await open_chat(live_server.ws_url, token)
        frames = await chat.ask("What services do you offer?", f"c{n}")
        assert frames[-1]["cached"] is (n == 1)
        clients.append(chat)
    await clients[0].send({"type": "quick_action", "id": "qa", "action": "services"})
    await clients[0].until("ai_message", "error")
    async with live_server.http() as client:
        r = await client.post(
            "/api/v1/admin/chat/broadcast",
            json={"message": "maintenance at noon"},
            headers=live_server.admin_headers(),
        )
        assert r.status_code == 200 and r.json()["recipients"] == 2
    got = await scrape(live_server)
    cache = await admin_get(live_server, "/metrics/cache")
    for chat in clients:
        await chat.close()
    assert sample(got, "chat_cache_requests_total", result="hit") == 1
    assert sample(got, "chat_cache_requests_total", result="miss") == 2
    assert sample(got, "chat_cache_entries") == 2
    assert sample(got, "chat_broadcasts_total") == 1
    assert sample(got, "chat_feature_usage_total", feature="quick_action") == 1
    assert sample(got, "chat_quick_actions_total", action="services") == 1
    assert cache["hits"]["total"] == 1 and cache["misses"]["total"] == 2
    assert cache["hit_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert cache["entries"] == 2
