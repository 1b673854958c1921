"""Hand-offs reach a person: a visitor's hand-off becomes one ``handoff`` notification at a
real webhook receiver, through the outbox (retried, one idempotency key), routed by ``types``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatwatch.alerts.handoff import conversation_url
from tests.alerts.receiver import Received, run_receiver
from tests.conftest import LiveServerFactory
from tests.e2e.client import open_chat

PUBLIC = "https://chat.example.test/base/"


async def wait_for(check: Callable[[], bool], seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)


def handoffs(requests: list[Received]) -> list[Received]:
    return [r for r in requests if r.json()["groupLabels"].get("alertname") == "HandoffRequested"]


async def test_a_handoff_reaches_the_handoff_channel_with_the_conversation_link(
    live_server_factory: LiveServerFactory,
) -> None:
    """An off-topic question makes the consultant offer a person; the channel with
    ``types = ["handoff"]`` gets one notification carrying the session's messages link,
    after a 500 once (retried with the same Idempotency-Key); the security-only channel
    gets nothing. Before the HandoffNotifier nothing arrived at all."""
    async with run_receiver() as people, run_receiver() as security:
        people.script = [(500, 0.0)]
        alerts = {
            "retry_initial": 0.05,
            "retry_max": 0.1,
            "channels": [
                {"name": "people", "kind": "webhook", "url": people.url, "types": ["handoff"]},
                {"name": "sec", "kind": "webhook", "url": security.url, "types": ["security"]},
            ],
        }
        async with live_server_factory(alerts=alerts, server={"public_url": PUBLIC}) as srv:
            token, user_id = await srv.guest()
            client = await open_chat(srv.ws_url, token)
            frames = await client.ask("What is the capital of Mongolia?")
            assert frames[-1]["type"] == "ai_message" and frames[-1]["handoff"] is True
            await wait_for(lambda: len(handoffs(people.requests)) >= 2)
            await asyncio.sleep(0.3)  # nothing more follows a delivered notification
            await client.close()
        first, second = handoffs(people.requests)
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
        body = second.json()
        assert body["status"] == "firing"
        [alert] = body["alerts"]
        link = conversation_url(PUBLIC, client.session_id)
        assert (
            link
            == f"https://chat.example.test/base/api/v1/chat/sessions/{client.session_id}/messages"
        )
        assert alert["labels"]["type"] == "handoff"
        assert alert["labels"]["session_id"] == client.session_id
        assert alert["annotations"]["conversation_url"] == link
        assert alert["annotations"]["user_id"] == user_id
        assert security.requests == []
