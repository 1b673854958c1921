"""Health, summary and the security summary on a real server, driven over real WebSockets.

Regressions of issue 7: health said ``healthy`` while a third of the messages failed (it
looked at AI calls only), the error rate mixed in the visitors' own bad frames, and the
security summary put cumulative counts beside per-minute ones with nothing saying which.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI

ADMIN = "/api/v1/admin/chat"
MODEL = "gpt-4o-mini"


async def admin_get(srv: LiveServer, path: str) -> Any:
    """GET an admin JSON path (200 expected)."""
    async with srv.http() as client:
        r = await client.get(ADMIN + path, headers=srv.admin_headers())
    assert r.status_code == 200, (path, r.text)
    return r.json()


def upstream(fake: FakeOpenAI) -> dict[str, Any]:
    """Settings for the fake upstream, no cache, and health judged from 5 messages on."""
    return {
        "ai": {"provider": "openai", "base_url": fake.url, "model": MODEL},
        "cache": {"enabled": False},
        "metrics": {"health_min_messages": 5},
    }


async def test_service_failures_make_summary_and_health_unhealthy(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """3 answered and 2 failed messages (40%) is unhealthy in summary and health alike.

    Tried: an upstream that answers three times and then fails (500) for good.
    """
    for _ in range(3):
        fake_openai.script.append(Behaviour(text="Happy to help."))
    async with live_server_factory(**upstream(fake_openai)) as srv:
        token, _ = await srv.guest()
        chat = await open_chat(srv.ws_url, token)
        for n in range(3):
            assert (await chat.ask(f"question {n}", f"ok{n}"))[-1]["type"] == "ai_message"
        fake_openai.configure(status=500)
        for n in range(2):
            last = (await chat.ask(f"question {n}", f"bad{n}"))[-1]
            assert (last["type"], last["code"]) == ("error", "ai_unavailable")
        summary = await admin_get(srv, "/metrics/summary")
        health = await admin_get(srv, "/health")
        errors = await admin_get(srv, "/metrics/errors")
        await chat.close()
    assert summary["error_rate"] == pytest.approx(2 / 5)
    assert summary["status"] == "unhealthy"
    assert health["status"] == "unhealthy"
    check = health["checks"]["error_rate"]
    assert (check["status"], check["failures"], check["handled_messages"]) == ("unhealthy", 2, 5)
    assert errors["error_rate"] == pytest.approx(2 / 5)
    assert errors["service_failures"]["total"] == 2
    assert errors["client_error_rate"] == 0.0


async def test_bad_frames_from_visitors_leave_the_service_healthy(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """Five answered messages and ten bad frames: error_rate 0, healthy; the bad frames are
    the client_error_rate (10 of 15 frames).

    Tried: invalid JSON and unknown frame types, which used to count in error_rate (0.67).
    """
    async with live_server_factory(**upstream(fake_openai)) as srv:
        token, _ = await srv.guest()
        chat = await open_chat(srv.ws_url, token)
        for n in range(5):
            assert (await chat.ask(f"question {n}", f"q{n}"))[-1]["type"] == "ai_message"
        for n in range(10):
            await chat.send("{not json" if n % 2 else {"type": "nonsense"})
            frame = (await chat.until("error"))[-1]
            assert frame["code"] in ("invalid_json", "invalid_frame")
        summary = await admin_get(srv, "/metrics/summary")
        health = await admin_get(srv, "/health")
        await chat.close()
    assert summary["error_rate"] == 0.0
    assert summary["client_error_rate"] == pytest.approx(10 / 15)
    # Every check about failures stays healthy. (The overall status also follows the event
    # loop's lag and memory, which a loaded test machine can degrade on its own.)
    load_checks = {"event_loop", "memory"}
    assert {
        name: check["status"] for name, check in health["checks"].items() if name not in load_checks
    } == {name: "healthy" for name in health["checks"] if name not in load_checks}
    if all(health["checks"][name]["status"] == "healthy" for name in load_checks):
        assert summary["status"] == health["status"] == "healthy"


async def test_security_summary_labels_what_each_figure_covers(live_server: LiveServer) -> None:
    """by_type holds count objects over the metrics window; per-IP figures sit under
    ``recent`` with their own window.

    Tried: three refused upgrades with a bad token.
    """
    for _ in range(3):
        with pytest.raises(InvalidStatus):
            await open_chat(live_server.ws_url, "not-a-token")
    body = await admin_get(live_server, "/security")
    assert body["window_seconds"] == 300 and body["reset_at"].endswith("Z")
    auth = body["by_type"]["auth_failed"]
    assert set(auth) == {"total", "since_reset", "per_second"}
    assert auth["total"] == 3 and auth["since_reset"] == 3
    recent = body["recent"]
    assert recent["window_seconds"] == 60
    assert recent["auth_failures"] == 3
    assert recent["auth_failures_per_minute"] == 3.0
    top = recent["top_ips"][0]
    assert top == {"client_ip": "127.0.0.1", "events": 3, "auth_failures": 3}


async def test_visitor_leaving_mid_reply_is_counted_as_cancelled_not_failed(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """A visitor closing the socket while the reply streams: messages.cancelled moves,
    service failures, the error rate and health do not.

    Tried: an upstream that stalls after its first chunk until the client goes away.
    """
    fake_openai.script.append(Behaviour(chunks=["One ", "two ", "three."], stall_after=1))
    async with live_server_factory(**upstream(fake_openai)) as srv:
        token, _ = await srv.guest()
        chat = await open_chat(srv.ws_url, token)
        await chat.send({"type": "message", "id": "m1", "content": "tell me everything"})
        await chat.until("ai_delta")
        await chat.close()
        messages: dict[str, Any] = {}
        for _ in range(100):  # the server notices the close asynchronously
            messages = await admin_get(srv, "/metrics/messages")
            if messages["cancelled"]["total"] == 1:
                break
            await asyncio.sleep(0.05)
        errors = await admin_get(srv, "/metrics/errors")
        health = await admin_get(srv, "/health")
        async with srv.http() as client:
            scrape = (await client.get("/metrics")).text
    assert messages["cancelled"]["total"] == 1
    assert errors["service_failures"]["total"] == 0
    assert errors["error_rate"] is None  # the one message was never handled to the end
    assert health["status"] == "healthy"
    assert 'chat_replies_cancelled_total{reason="client_closed"} 1.0' in scrape
