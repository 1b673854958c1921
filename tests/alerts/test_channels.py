"""Slack, Teams and email channels against real loopback receivers: bodies in each
service's documented shape, and email over SMTP with STARTTLS and login (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import re
import shutil
import ssl
import subprocess
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from chatwatch.alerts.channels import DeliveryError, build_channel
from chatwatch.alerts.channels.teams import ADAPTIVE_CARD_CONTENT_TYPE
from chatwatch.config import AlertChannelSettings
from tests.alerts.receiver import run_receiver
from tests.alerts.test_delivery import notification
from tests.fakes.services import unused_tcp_port

HEX_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
# Adaptive Card TextBlock colours (adaptivecards.io schema 1.4, "Colors").
CARD_COLOURS = {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}
CARD_ELEMENTS = {"TextBlock", "FactSet"}


async def post_through(kind: str, n: Any) -> dict[str, Any]:
    """Send ``n`` through a channel of ``kind`` to a real receiver; the JSON it got."""
    async with run_receiver() as rx:
        channel = build_channel(AlertChannelSettings(name=kind, kind=kind, url=rx.url))
        try:
            await channel.send(n)
        finally:
            await channel.aclose()
    [req] = rx.requests
    assert req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == n.id
    body: dict[str, Any] = req.json()
    return body


async def test_slack_incoming_webhook_message() -> None:
    """Slack: ``text`` fallback plus an attachment with a hex severity colour, a title
    linking to the alert, the alert lines and short fields (Slack's documented shape)."""
    body = await post_through("slack", notification(alerts=1))
    assert set(body) == {"text", "attachments"}
    assert body["text"] == "[FIRING:1] [high] AuthFailureBurstByIP"
    [att] = body["attachments"]
    assert HEX_COLOUR.match(att["color"])
    assert att["title_link"] == "http://chat.example/api/v1/admin/chat/alerts/a0"
    assert "client_ip=203.0.113.0" in att["text"]
    assert all(set(f) == {"title", "value", "short"} for f in att["fields"])
    assert isinstance(att["ts"], int) and att["fallback"]


async def test_slack_resolved_is_green_and_escapes_markup() -> None:
    """A resolved group is green; ``<``, ``>`` and ``&`` from labels are escaped."""
    n = notification(alerts=2, status="resolved")
    n.alerts[0].labels["client_ip"] = "<b>&"  # type: ignore[index]
    body = await post_through("slack", n)
    att = body["attachments"][0]
    assert att["color"] == "#2EB886"
    assert "&lt;b&gt;&amp;" in att["text"] and "<b>" not in att["text"]
    assert att["title_link"].endswith("/api/v1/admin/chat/alerts")


async def test_slack_lists_at_most_twenty_alerts() -> None:
    """30 alerts: 20 listed, then "… and 10 more" — one message."""
    body = await post_through("slack", notification(alerts=30))
    text = body["attachments"][0]["text"]
    assert text.count("firing: ") == 20 and "… and 10 more" in text


async def test_teams_adaptive_card() -> None:
    """Teams: a ``message`` with one Adaptive Card attachment (schema 1.4) whose elements
    and colours are of the card schema and whose action opens the alert."""
    body = await post_through("teams", notification(alerts=3))
    assert body["type"] == "message"
    [att] = body["attachments"]
    assert att["contentType"] == ADAPTIVE_CARD_CONTENT_TYPE and att["contentUrl"] is None
    card = att["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert {e["type"] for e in card["body"]} <= CARD_ELEMENTS
    assert all(e.get("color", "Default") in CARD_COLOURS for e in card["body"])
    assert card["body"][0]["text"] == "[FIRING:3] [high] AuthFailureBurstByIP"
    facts = next(e for e in card["body"] if e["type"] == "FactSet")["facts"]
    assert {"title": "severity", "value": "high"} in facts
    [action] = card["actions"]
    assert action["type"] == "Action.OpenUrl" and action["url"].startswith("http://chat.example/")


# --- email ----------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.messages.append(
            email.message_from_bytes(envelope.original_content or envelope.content)
        )
        return "250 OK"


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A TLS context with a fresh self-signed certificate (openssl), or skip."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def email_settings(port: int, **extra: Any) -> AlertChannelSettings:
    return AlertChannelSettings(
        name="mail",
        kind="email",
        smtp_host="127.0.0.1",
        smtp_port=port,
        from_addr="alerts@chat.example",
        to=["ops@chat.example", "oncall@chat.example"],
        **extra,
    )


async def test_email_subject_plain_and_html() -> None:
    """Email: subject with severity and rule, a plain part and an HTML part, the
    idempotency key as header and Message-ID, sent to every recipient."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=unused_tcp_port())
    controller.start()
    try:
        n = notification(alerts=2)
        channel = build_channel(email_settings(controller.port))
        await channel.send(n)
    finally:
        controller.stop()
    [msg] = inbox.messages
    assert msg["Subject"] == "[FIRING:2] [high] AuthFailureBurstByIP"
    assert msg["Idempotency-Key"] == n.id and msg["Message-ID"] == f"<{n.id}@chatwatch>"
    assert sorted(inbox.envelopes[0].rcpt_tos) == ["oncall@chat.example", "ops@chat.example"]
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in msg.walk()
        if not p.is_multipart()
    }
    assert set(parts) == {"text/plain", "text/html"}
    assert "client_ip=203.0.113.1" in parts["text/plain"]
    assert '<a href="http://chat.example/api/v1/admin/chat/alerts/a1">' in parts["text/html"]


async def test_email_starttls_and_login(tmp_path: Path) -> None:
    """STARTTLS then AUTH LOGIN with the configured user: the server saw TLS and the login."""
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=unused_tcp_port(),
        tls_context=self_signed(tmp_path),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        channel = build_channel(
            email_settings(
                controller.port,
                starttls=True,
                tls_verify=False,
                username="alerts",
                password="s3cret",
            )
        )
        await channel.send(notification())
    finally:
        controller.stop()
    assert logins == [(b"alerts", b"s3cret")]
    assert len(inbox.messages) == 1


class Refusing(Inbox):
    """A server that refuses every message for good (550)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "550 5.7.1 message refused"


async def test_email_permanent_refusal_is_not_retryable() -> None:
    """An SMTP 5xx answer is permanent: retrying the same message cannot succeed."""
    controller = Controller(Refusing(), hostname="127.0.0.1", port=unused_tcp_port())
    controller.start()
    try:
        with pytest.raises(DeliveryError) as err:
            await build_channel(email_settings(controller.port)).send(notification())
    finally:
        controller.stop()
    assert err.value.retryable is False and "550" in str(err.value)


async def test_email_server_down_is_retryable() -> None:
    """No SMTP server: a retryable DeliveryError (the outbox will try again)."""
    channel = build_channel(email_settings(unused_tcp_port()), timeout=2.0)
    with pytest.raises(DeliveryError) as err:
        await asyncio.wait_for(channel.send(notification()), 10)
    assert err.value.retryable is True
