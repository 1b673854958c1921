"""Admin actions leave audit.* records naming the operator (issue 8, finding 10)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from chatwatch.api.audit import AuditAction, audit, operator_fields
from chatwatch.auth import Principal
from tests.conftest import LiveServer


async def audit_records(server: LiveServer, event: str = "audit.*") -> list[dict[str, Any]]:
    """The stored records of ``event`` (a family with ``.*``), newest first, via the API."""
    async with server.http() as http:
        r = await http.get(
            "/api/v1/admin/chat/logs", params={"event": event}, headers=server.admin_headers()
        )
    assert r.status_code == 200
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_broadcast_by_an_admin_jwt_is_audited_with_its_subject(
    live_server: LiveServer,
) -> None:
    """A broadcast made with an admin JWT for 'ops-alice' leaves audit.broadcast naming
    ops-alice, her IP and the request's correlation id, found with event=audit.* even
    though logging.level is WARNING (before: no record of who broadcast)."""
    jwt = live_server.services.auth.mint("ops-alice", "admin")
    async with live_server.http() as http:
        r = await http.post(
            "/api/v1/admin/chat/broadcast",
            json={"message": "Maintenance at noon"},
            headers={"Authorization": f"Bearer {jwt}", "X-Correlation-ID": "audit-test-1"},
        )
    assert r.status_code == 200
    [record] = await audit_records(live_server)
    assert {k: record.get(k) for k in ("event", "operator", "operator_via", "client_ip")} == {
        "event": "audit.broadcast",
        "operator": "ops-alice",
        "operator_via": "jwt",
        "client_ip": "127.0.0.1",
    }
    assert (record["correlation_id"], record["recipients"], record["message_chars"]) == (
        "audit-test-1",
        0,
        len("Maintenance at noon"),
    )
    assert "Maintenance" not in str(record)  # the notice's text is not copied into logs


async def test_metrics_reset_with_the_admin_token_names_admin_token(
    live_server: LiveServer,
) -> None:
    """POST metrics/reset with the shared token leaves audit.metrics_reset by 'admin-token'."""
    async with live_server.http() as http:
        r = await http.post("/api/v1/admin/chat/metrics/reset", headers=live_server.admin_headers())
    assert r.status_code == 200
    [record] = await audit_records(live_server, "audit.metrics_reset")
    assert (record["operator"], record["operator_via"], record["reset_at"]) == (
        "admin-token",
        "admin_token",
        r.json()["reset_at"],
    )


async def test_refused_admin_actions_leave_no_audit_record(live_server: LiveServer) -> None:
    """A broadcast refused (401 without credentials, 400 for a bad body) is not audited."""
    async with live_server.http() as http:
        unauthenticated = await http.post("/api/v1/admin/chat/broadcast", json={"message": "x"})
        bad = await http.post(
            "/api/v1/admin/chat/broadcast", json={}, headers=live_server.admin_headers()
        )
    assert (unauthenticated.status_code, bad.status_code) == (401, 400)
    assert await audit_records(live_server) == []


def _request(principal: Principal | None) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [],
        "client": ("203.0.113.9", 5000),
        "state": {"correlation_id": "c-1"},
    }
    request = Request(scope)
    if principal is not None:
        request.state.principal = principal
    return request


def test_operator_fields_of_a_request_principal_and_name() -> None:
    """A request gives its admin, IP and correlation id; a Principal or a name give who."""
    admin = Principal(user_id="ops", role="admin", via="jwt")
    assert [
        operator_fields(_request(admin)),
        operator_fields(_request(None)),
        operator_fields(admin),
        operator_fields("local-user:root"),
    ] == [
        {
            "operator": "ops",
            "operator_via": "jwt",
            "client_ip": "203.0.113.9",
            "correlation_id": "c-1",
        },
        {
            "operator": "unauthenticated",
            "operator_via": "none",
            "client_ip": "203.0.113.9",
            "correlation_id": "c-1",
        },
        {"operator": "ops", "operator_via": "jwt"},
        {"operator": "local-user:root", "operator_via": "cli"},
    ]


@pytest.mark.parametrize("action", ["", "audit.x", "a b", "x" * 65])
def test_bad_action_names_are_refused(action: str) -> None:
    """Action names are 1-64 of [a-z0-9_], so that the event is audit.<one word>."""
    with pytest.raises(ValueError):
        audit("someone", action)


def test_actions_are_single_words() -> None:
    """Every AuditAction is a valid action name."""
    assert all(a.value.replace("_", "").isalnum() for a in AuditAction)


async def test_alert_actions_are_audited_with_the_operator(live_server: LiveServer) -> None:
    """Raising, acknowledging and resolving an alert and creating a rule and a silence with
    an admin JWT for 'ops-bob' each leave their audit.* record naming ops-bob."""
    jwt = live_server.services.auth.mint("ops-bob", "admin")
    headers = {"Authorization": f"Bearer {jwt}"}
    base = "/api/v1/admin/chat/alerts"
    async with live_server.http() as http:
        raised = await http.post(
            base,
            json={"name": "Maintenance", "severity": "low", "type": "system", "summary": "x"},
            headers=headers,
        )
        assert raised.status_code == 201
        alert_id = raised.json()["id"]
        for action in ("acknowledge", "resolve"):
            r = await http.post(f"{base}/{alert_id}/{action}", headers=headers)
            assert r.status_code == 200
        rule = {"name": "ManyMessages", "signal": "messages_per_second", "op": ">", "threshold": 5}
        assert (await http.post(f"{base}/rules", json=rule, headers=headers)).status_code == 201
        silence = {
            "matchers": [{"name": "alertname", "value": "ManyMessages"}],
            "ends_at": "2999-01-01T00:00:00Z",
            "comment": "quiet",
        }
        assert (
            await http.post(f"{base}/silences", json=silence, headers=headers)
        ).status_code == 201
    records = await audit_records(live_server)
    assert {r["event"] for r in records} == {
        "audit.alert_raised",
        "audit.alert_acknowledged",
        "audit.alert_resolved",
        "audit.rule_created",
        "audit.silence_created",
    }
    assert {r["operator"] for r in records} == {"ops-bob"}
