"""The alerts API of SPEC §6 on a real server: manual alerts, acknowledge, resolve,
history pages, rules CRUD with config rules read-only, silences, notifications; every bad
input a 400 naming the field, and every status it answers declared in the OpenAPI schema."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.alerts.receiver import Receiver, run_receiver
from tests.conftest import LiveServer, LiveServerFactory

ALERTS = "/api/v1/admin/chat/alerts"


def rule_body(name: str = "ApiRule", **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "signal": "error_rate",
        "op": ">",
        "threshold": 0.2,
        "for": "1m",
        "severity": "high",
        "type": "error",
        "summary": "s",
    }
    body.update(extra)
    return body


async def call(srv: LiveServer, method: str, path: str, **kw: Any) -> httpx.Response:
    async with srv.http() as client:
        return await client.request(method, ALERTS + path, headers=srv.admin_headers(), **kw)


async def test_alerts_need_an_admin(live_server: LiveServer) -> None:
    """No credentials: 401; a user token: 403; the admin: 200, nothing active, zero counts."""
    token, _ = await live_server.guest()
    async with live_server.http() as client:
        assert (await client.get(ALERTS)).status_code == 401
        r = await client.get(ALERTS, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
    r = await call(live_server, "GET", "")
    assert r.json() == {"active": [], "counts": {"low": 0, "medium": 0, "high": 0, "critical": 0}}


async def test_manual_alert_acknowledge_resolve_and_history(live_server: LiveServer) -> None:
    """POST raises a firing alert (201, again 200 with the same id), it is listed and
    counted, acknowledged, resolved (then 409), found by id and in history, newest first."""
    r = await call(
        live_server,
        "POST",
        "",
        json={
            "name": "Maintenance",
            "severity": "low",
            "type": "system",
            "summary": "db upgrade",
            "labels": {"db": "main"},
        },
    )
    assert r.status_code == 201, r.text
    alert = r.json()
    assert {k: alert[k] for k in ("state", "acknowledged", "ends_at", "manual")} == {
        "state": "firing",
        "acknowledged": False,
        "ends_at": None,
        "manual": True,
    }
    assert alert["labels"] == {
        "alertname": "Maintenance",
        "severity": "low",
        "type": "system",
        "db": "main",
    }
    assert alert["annotations"]["summary"] == "db upgrade" and alert["starts_at"].endswith("Z")
    again = await call(
        live_server,
        "POST",
        "",
        json={"name": "Maintenance", "severity": "low", "type": "system", "labels": {"db": "main"}},
    )
    assert (again.status_code, again.json()["id"]) == (200, alert["id"])
    listed = (await call(live_server, "GET", "")).json()
    assert [a["id"] for a in listed["active"]] == [alert["id"]] and listed["counts"]["low"] == 1
    acked = await call(live_server, "POST", f"/{alert['id']}/acknowledge")
    assert acked.status_code == 200 and acked.json()["acknowledged"] is True
    resolved = await call(live_server, "POST", f"/{alert['id']}/resolve")
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    assert (await call(live_server, "POST", f"/{alert['id']}/resolve")).status_code == 409
    assert (await call(live_server, "POST", f"/{alert['id']}/acknowledge")).status_code == 409
    assert (await call(live_server, "GET", f"/{alert['id']}")).json()["state"] == "resolved"
    for path in ("/nope", "/nope/acknowledge", "/nope/resolve"):
        method = "GET" if path == "/nope" else "POST"
        assert (await call(live_server, method, path)).status_code == 404
    assert (await call(live_server, "GET", "")).json()["active"] == []


async def test_history_pages_newest_first(live_server: LiveServer) -> None:
    """Five alerts read two per page: newest first, cursors chain, the last page has none."""
    ids = []
    for i in range(5):
        r = await call(live_server, "POST", "", json={"name": "Manual", "labels": {"n": str(i)}})
        ids.append(r.json()["id"])
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await call(live_server, "GET", "/history", params=params)).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ids[::-1] and cursor is None
    for params, name in [
        ({"limit": "x"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "9999999999999999999"}, "cursor"),  # was a 500 (SQLite OverflowError)
        ({"cursor": "²"}, "cursor"),
        ({"state": "bogus"}, "state"),
    ]:
        r = await call(live_server, "GET", "/history", params=params)
        assert r.status_code == 400 and r.json()["detail"].startswith(name), (params, r.text)


async def test_rules_crud_and_read_only_config_rules(
    live_server_factory: LiveServerFactory,
) -> None:
    """Defaults and config rules are listed read-only (PUT/DELETE 409 naming config); API
    rules are created (201), read, replaced, deleted (204), then 404; a taken name is 409."""
    config_rule = {
        "name": "ConfigRule",
        "signal": "active_connections",
        "op": ">",
        "threshold": 100,
    }
    async with live_server_factory(
        alerts={"rules": [config_rule, {"name": "LowCacheHitRate", "enabled": False}]}
    ) as srv:
        items = (await call(srv, "GET", "/rules")).json()["items"]
        by_name = {r["name"]: r for r in items}
        assert {
            "HighErrorRate",
            "LowConnectionSuccessRate",
            "SlowResponses",
            "LowCacheHitRate",
            "HighAICost",
            "AuthFailureBurst",
            "AuthFailureBurstByIP",
            "ConfigRule",
        } <= set(by_name)
        assert by_name["LowCacheHitRate"]["enabled"] is False
        assert (by_name["HighErrorRate"]["source"], by_name["ConfigRule"]["source"]) == (
            "default",
            "config",
        )
        assert (
            by_name["AuthFailureBurstByIP"]["by"] == ["client_ip"]
            and by_name["AuthFailureBurstByIP"]["for"] == "0s"
        )
        for name in ("HighErrorRate", "ConfigRule"):
            r = await call(srv, "PUT", f"/rules/{name}", json=rule_body(name))
            assert r.status_code == 409 and "config" in r.json()["detail"]
            r = await call(srv, "DELETE", f"/rules/{name}")
            assert r.status_code == 409 and "config" in r.json()["detail"]
            assert (await call(srv, "POST", "/rules", json=rule_body(name))).status_code == 409
        created = await call(srv, "POST", "/rules", json=rule_body(cooldown="1h30m"))
        assert created.status_code == 201, created.text
        assert created.json()["source"] == "api"
        assert created.json()["cooldown"] == "1h30m" and created.json()["read_only"] is False
        assert (await call(srv, "POST", "/rules", json=rule_body())).status_code == 409
        assert (await call(srv, "GET", "/rules/ApiRule")).json()["threshold"] == 0.2
        replaced = await call(srv, "PUT", "/rules/ApiRule", json=rule_body(threshold=0.3))
        assert replaced.status_code == 200 and replaced.json()["threshold"] == 0.3
        renamed = await call(srv, "PUT", "/rules/ApiRule", json=rule_body("Other"))
        assert renamed.status_code == 400 and renamed.json()["detail"].startswith("name")
        assert (await call(srv, "DELETE", "/rules/ApiRule")).status_code == 204
        for method in ("GET", "DELETE"):
            assert (await call(srv, method, "/rules/ApiRule")).status_code == 404
        assert (await call(srv, "PUT", "/rules/ApiRule", json=rule_body())).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"signal": "cpu_magic"}, "signal"),
        ({"op": "=="}, "op"),
        ({"threshold": -1}, "threshold"),
        ({"threshold": "lots"}, "threshold"),
        ({"for": "5x"}, "for"),
        ({"for": "-5m"}, "for"),
        ({"cooldown": "soon"}, "cooldown"),
        ({"severity": "apocalyptic"}, "severity"),
        ({"type": "weather"}, "type"),
        ({"name": "has space"}, "name"),
        ({"name": ""}, "name"),
        ({"labels": {"alertname": "x"}}, "labels"),
        ({"labels": {"bad-key": "x"}}, "labels"),
        ({"channels": ["nowhere"]}, "channels"),
        ({"by": ["user_id"]}, "by"),
        ({"resolve_threshold": 0.5}, "resolve_threshold"),
        ({"min_samples": -3}, "min_samples"),
        ({"escalate_after": "0s"}, "escalate_after"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_rule_fields_are_400_naming_the_field(
    live_server: LiveServer, change: dict[str, Any], field: str
) -> None:
    """Each bad field of a rule body is a 400 whose detail starts with that field's name."""
    r = await call(live_server, "POST", "/rules", json=rule_body() | change)
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(field), r.json()


async def test_silences_create_list_end(live_server: LiveServer) -> None:
    """A silence is created (201), listed active, ended (204, then expired), unknown 404;
    bad matchers and end times are 400s naming the field."""
    body = {
        "matchers": [{"name": "alertname", "value": "Auth.*", "is_regex": True}],
        "ends_at": "2h",
        "comment": "deploy",
    }
    body["ends_at"] = "2000-01-01T00:00:00Z"  # in the past
    r = await call(live_server, "POST", "/silences", json=body)
    assert r.status_code == 400 and r.json()["detail"].startswith("ends_at")
    body["ends_at"] = "2h"  # a duration ends that far ahead (as amtool's --duration)
    r = await call(live_server, "POST", "/silences", json=body)
    assert r.status_code == 201, r.text
    two_hours = r.json()
    ends = datetime.fromisoformat(two_hours["ends_at"].replace("Z", "+00:00"))
    assert 7100 < (ends - datetime.now(UTC)).total_seconds() <= 7200
    assert (await call(live_server, "DELETE", f"/silences/{two_hours['id']}")).status_code == 204
    body["ends_at"] = "9999-01-01T00:00:00Z"
    r = await call(live_server, "POST", "/silences", json=body)
    assert r.status_code == 201, r.text
    silence = r.json()
    assert silence["state"] == "active" and silence["matchers"] == body["matchers"]
    assert silence["created_by"] == "admin"
    listed = (await call(live_server, "GET", "/silences")).json()["items"]
    assert [s["id"] for s in listed if s["state"] == "active"] == [silence["id"]]
    assert (await call(live_server, "DELETE", f"/silences/{silence['id']}")).status_code == 204
    states = {
        s["id"]: s["state"] for s in (await call(live_server, "GET", "/silences")).json()["items"]
    }
    assert states[silence["id"]] == "expired"
    assert (await call(live_server, "DELETE", "/silences/nope")).status_code == 404
    bad = [
        ({"matchers": []}, "matchers"),
        ({"matchers": [{"name": "1x", "value": "v"}]}, "matchers.0.name"),
        ({"matchers": [{"name": "a", "value": "(", "is_regex": True}]}, "matchers.0.value"),
        ({"matchers": [{"name": "a", "value": "(a+)+$", "is_regex": True}]}, "matchers.0.value"),
        ({"ends_at": "2001-01-01T00:00:00Z"}, "ends_at"),
        ({"ends_at": "tomorrow"}, "ends_at"),
        ({"ends_at": 1e300}, "ends_at"),
    ]
    for change, field in bad:
        r = await call(live_server, "POST", "/silences", json={**body, **change})
        assert r.status_code == 400 and r.json()["detail"].startswith(field), (change, r.text)


async def test_failed_notifications_are_listed(live_server_factory: LiveServerFactory) -> None:
    """A receiver answering 400: the manual alert's notification is failed and listed by
    ``/notifications?state=failed`` with the reason."""
    async with run_receiver(Receiver(default=400)) as rx:
        channels = [{"name": "hook", "kind": "webhook", "url": rx.url}]
        async with live_server_factory(
            alerts={"channels": channels, "group_wait": 0, "evaluation_interval": 0.1}
        ) as srv:
            alert = (await call(srv, "POST", "", json={"name": "Manual"})).json()
            for _ in range(100):
                page = (await call(srv, "GET", "/notifications", params={"state": "failed"})).json()
                if page["items"]:
                    break
                await asyncio.sleep(0.05)
            [item] = page["items"]
            assert item["alert_ids"] == [alert["id"]] and "HTTP 400" in item["last_error"]
            assert item["channel"] == "hook" and item["attempts"] == 1
            r = await call(srv, "GET", "/notifications", params={"state": "lost"})
            assert r.status_code == 400 and r.json()["detail"].startswith("state")


JUNK_BODIES: list[Any] = [
    None,
    "not json",
    [],
    {},
    {"name": 5},
    {"name": "x" * 5000},
    {"matchers": "x"},
    {"signal": None, "op": [], "threshold": {}},
    {"a": {"b": {"c": [1, 2, {"d": None}]}}},
]


async def test_every_answer_is_declared_in_the_schema(live_server: LiveServer) -> None:
    """Junk bodies and ids at every alerts operation: never a 500, and every status
    answered is declared for that operation in the OpenAPI schema (what schemathesis checks)."""
    async with live_server.http() as client:
        schema = (await client.get("/api/openapi.json")).json()
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        if path.startswith(ALERTS)
        for method, op in item.items()
    ]
    assert len(operations) >= 14
    undeclared = []
    for path, method, op in operations:
        concrete = (
            path.replace("{alert_id}", "zz")
            .replace("{name}", "HighErrorRate")
            .replace("{silence_id}", "zz")
        )
        bodies = JUNK_BODIES if "requestBody" in op else [None]
        for body in bodies:
            for auth in (True, False):
                headers = live_server.admin_headers() if auth else {}
                kw: dict[str, Any] = {"headers": headers, "params": {"limit": "-1"}}
                if isinstance(body, str):
                    kw["content"] = body
                elif body is not None:
                    kw["json"] = body
                async with live_server.http() as client:
                    r = await client.request(method.upper(), concrete, **kw)
                if str(r.status_code) not in op["responses"]:
                    undeclared.append((method, path, r.status_code, r.text[:100]))
    assert undeclared == []
