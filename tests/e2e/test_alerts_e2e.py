"""Alerts end to end on the real app: bad logins → AuthFailureBurstByIP at a real,
HMAC-checking webhook receiver, once, then its resolution once the address goes quiet."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

from chatwatch.clock import FakeClock
from tests.alerts.receiver import Receiver, run_receiver
from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI

SECRET = "e2e-webhook-secret-0123456789"
ALERTS = "/api/v1/admin/chat/alerts"


async def bad_logins(srv: LiveServer, count: int) -> None:
    async with srv.http() as client:
        for _ in range(count):
            r = await client.get(
                ALERTS, headers={"Authorization": "Bearer not-the-token-0123456789"}
            )
            assert r.status_code == 401


def notifications(rx: Receiver, alertname: str) -> list[dict[str, Any]]:
    """Bodies the receiver got for ``alertname`` (each signature checked)."""
    out = []
    for req in rx.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(req.headers["x-chatwatch-signature"], expected)
        body = req.json()
        if body["groupLabels"].get("alertname") == alertname:
            out.append(body)
    return out


async def run_for(clock: FakeClock, seconds: float, until: Any = None) -> None:
    """Let the server work for ``seconds`` of real time, moving its clock 0.2 s per 0.05 s."""
    for _ in range(int(seconds / 0.05)):
        clock.advance(0.2)
        await asyncio.sleep(0.05)
        if until is not None and until():
            return


async def test_eleven_bad_logins_from_one_ip_alert_once_then_resolve(
    live_server_factory: LiveServerFactory,
) -> None:
    """10 bad logins in a minute stay quiet; the 11th gives one AuthFailureBurstByIP alert
    for 127.0.0.1 (type security) in one signed webhook call; a minute later, with no more
    failures, one resolved call follows and nothing is active."""
    clock = FakeClock()
    async with run_receiver() as rx:
        alerts = {
            "evaluation_interval": 0.2,
            "group_wait": 0.2,
            "channels": [{"name": "hook", "kind": "webhook", "url": rx.url, "secret": SECRET}],
        }
        async with live_server_factory(clock=clock, alerts=alerts) as srv:
            await bad_logins(srv, 10)
            await run_for(clock, 1.0)
            assert notifications(rx, "AuthFailureBurstByIP") == []
            await bad_logins(srv, 1)
            await run_for(clock, 10.0, until=lambda: notifications(rx, "AuthFailureBurstByIP"))
            await run_for(clock, 0.5)
            [fired] = notifications(rx, "AuthFailureBurstByIP")
            assert fired["status"] == "firing" and fired["version"] == "4"
            [alert] = fired["alerts"]
            assert alert["labels"] == {
                "alertname": "AuthFailureBurstByIP",
                "severity": "high",
                "type": "security",
                "client_ip": "127.0.0.1",
            }
            assert float(alert["annotations"]["value"]) == 11.0
            assert "/api/v1/admin/chat/logs?since=" in alert["annotations"]["logs_url"]
            async with srv.http() as client:
                active = (await client.get(ALERTS, headers=srv.admin_headers())).json()
            by_ip = [a for a in active["active"] if a["labels"].get("client_ip") == "127.0.0.1"]
            assert [a["state"] for a in by_ip] == ["firing"]
            clock.advance(61)
            await run_for(
                clock, 10.0, until=lambda: len(notifications(rx, "AuthFailureBurstByIP")) > 1
            )
            await run_for(clock, 0.5)
            fired_again, resolved = notifications(rx, "AuthFailureBurstByIP")
            assert fired_again == fired
            assert resolved["status"] == "resolved"
            assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
            assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
            async with srv.http() as client:
                active = (await client.get(ALERTS, headers=srv.admin_headers())).json()
            assert active["active"] == []


async def test_broken_ai_upstream_fires_high_ai_error_rate_and_fixing_it_resolves(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """ai.provider=openai against the fake upstream answering 500: a few failed replies fire
    HighAIErrorRate (type ai, high) at the webhook receiver; with the upstream fixed, new
    successful replies in the 2 s window bring the rate under 20% and the resolution
    arrives. (``for`` 0s and ``min_samples`` 2 through alerts.rules, for the test.)"""
    fake_openai.behaviour = Behaviour(status=500)
    ai = {
        "provider": "openai",
        "base_url": fake_openai.url,
        "model": "m",
        "timeout": 2.0,
        "retry_attempts": 0,
        "circuit_failures": 0,
    }
    async with run_receiver() as rx:
        alerts = {
            "evaluation_interval": 0.2,
            "group_wait": 0.2,
            "channels": [{"name": "hook", "kind": "webhook", "url": rx.url, "secret": SECRET}],
            "rules": [{"name": "HighAIErrorRate", "for": "0s", "min_samples": 2}],
        }
        async with live_server_factory(
            ai=ai, alerts=alerts, metrics={"window": 2.0}, cache={"enabled": False}
        ) as srv:
            token, _ = await srv.guest()
            client = await open_chat(srv.ws_url, token)
            sent = 0

            async def ask(expect: str) -> None:
                nonlocal sent
                sent += 1
                frames = await client.ask(f"question number {sent}?", f"m{sent}")
                assert frames[-1]["type"] == expect, frames[-1]

            for _ in range(3):
                await ask("error")
            for _ in range(100):
                if notifications(rx, "HighAIErrorRate"):
                    break
                await asyncio.sleep(0.1)
            [fired] = notifications(rx, "HighAIErrorRate")
            assert fired["status"] == "firing"
            [alert] = fired["alerts"]
            assert (alert["labels"]["type"], alert["labels"]["severity"]) == ("ai", "high")
            assert float(alert["annotations"]["value"]) == 1.0

            fake_openai.behaviour = Behaviour(text="Working again.")
            for _ in range(60):  # a success every 0.25 s until the failures leave the window
                if len(notifications(rx, "HighAIErrorRate")) > 1:
                    break
                await ask("ai_message")
                await asyncio.sleep(0.25)
            await client.close()
            fired_again, resolved = notifications(rx, "HighAIErrorRate")
            assert fired_again == fired
            assert resolved["status"] == "resolved"
            assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]
