"""Every time, limit, cursor and ``after`` parameter over HTTP on the real app: a bad value
is a 400 naming the parameter, a value at the edge of the range is answered, none is a 500.

Runs the real server (``tests/conftest.py``) on SQLite and on PostgreSQL. Before the
fix, ``logs?since=1e10``, ``until=5e10``, ``since=9999-12-31T00:00:00Z``,
``since=0001-01-01T00:00:00Z``, ``since=99999999w``, a 19-digit cursor, ``limit=²``,
``logs/stats?until=5e10`` and a guest's ``messages?after=9223372036854775808`` were 500s
(OverflowError from SQLite), and an RFC 3339 time without a zone was a 400 in one API and
UTC in the other.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from tests.conftest import LiveServer, LiveServerFactory
from tests.e2e.client import open_chat
from tests.fakes.services import require_postgres

ADMIN = "/api/v1/admin/chat"
LONG = "9" * 5000


def cursor_of(payload: str) -> str:
    """A cursor as the log API encodes one, around any payload."""
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


BAD_TIMES = [
    "1e10",
    "5e10",
    "0001-01-01T00:00:00Z",
    "99999999w",
    "10000-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "1969-12-31T23:59:59Z",
    "2027-02-30T00:00:00Z",
    "-1",
    "-5m",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e309",
    " ",
    "\t",
    "١٢٣",
    "１２３",
    "²",
    "x" * 5000,
    LONG,
    "2027-01-15T08:00:00Z\x00",
]
# In range, so answered (200), or refused for another reason that still names the parameter
# (logs/stats: since in the future, or a range over 366 days).
EDGE_TIMES = [
    "9999-12-31T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "253402300799",
    "10000000000",
    "50000000000",
    "0",
    "1970-01-01T00:00:00Z",
    "2027-01-15T08:00:00",
]
BAD_COUNTS = [
    "²",
    "0",
    "-1",
    "1e3",
    "1.5",
    "nan",
    "inf",
    "1e309",
    " ",
    "١٠",
    "１０",
    "9223372036854775808",
    LONG,
]
BAD_CURSORS = [
    cursor_of("v1:9999999999999999999"),  # 19 digits, past a BIGINT
    cursor_of("v1:9223372036854775808"),
    cursor_of("v1:-1"),
    cursor_of("v1:²"),
    cursor_of("v1:" + "9" * 400),
    "x" * 5000,
    " ",
    "²",
]
BAD_AFTERS = [
    "9223372036854775808",
    "99999999999999999999999",
    "-1",
    "1e3",
    "nan",
    "inf",
    "²",
    "١",
    " ",
    LONG,
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, live_server_factory: LiveServerFactory
) -> AsyncIterator[LiveServer]:
    """The real app on SQLite, or on PostgreSQL."""
    if request.param == "sqlite":
        async with live_server_factory() as srv:
            yield srv
        return
    async with live_server_factory(database={"url": require_postgres()}) as srv:
        yield srv


async def test_every_bad_parameter_is_a_400_naming_it(server: LiveServer) -> None:
    """Each bad value of each parameter of metrics/history, logs, logs/stats and a session's
    messages is a 400 whose detail names the parameter; edge values are answered; empty
    values count as absent. All failures are collected and shown together."""
    token, _ = await server.guest()
    chat = await open_chat(server.ws_url, token)
    await chat.close()
    messages = f"/api/v1/chat/sessions/{chat.session_id}/messages"
    guest = {"Authorization": f"Bearer {token}"}
    admin = server.admin_headers()
    # (path, headers, parameter, bad values, edge values)
    cases: list[tuple[str, dict[str, str], str, list[str], list[str]]] = []
    for path in ("/metrics/history", "/logs", "/logs/stats"):
        for name in ("since", "until"):
            cases.append((ADMIN + path, admin, name, BAD_TIMES, EDGE_TIMES))
    cases += [
        (ADMIN + "/metrics/history", admin, "limit", [*BAD_COUNTS, "10001"], ["10000", "1"]),
        (ADMIN + "/logs", admin, "limit", [*BAD_COUNTS, "1001"], ["1000", "1"]),
        (ADMIN + "/logs", admin, "cursor", BAD_CURSORS, [cursor_of("v1:9223372036854775807")]),
        (messages, guest, "after", BAD_AFTERS, ["9223372036854775807", "0"]),
        (messages, guest, "limit", [*BAD_COUNTS, "1001"], ["1000", "1"]),
    ]
    failures: list[str] = []
    async with server.http() as client:
        for path, headers, name, bad, edge in cases:
            for value in bad:
                r = await client.get(path, params={name: value}, headers=headers)
                detail = r.json().get("detail") if r.status_code < 500 else None
                if r.status_code != 400 or name not in str(detail):
                    failures.append(f"{path}?{name}={value[:40]!r}: {r.status_code} {detail}")
            for value in edge:
                r = await client.get(path, params={name: value}, headers=headers)
                ok = r.status_code == 200 or (
                    r.status_code == 400 and name in str(r.json().get("detail"))
                )
                if not ok:
                    failures.append(f"{path}?{name}={value[:40]!r}: {r.status_code} {r.text}")
            r = await client.get(f"{path}?{name}=", headers=headers)
            if r.status_code != 200:
                failures.append(f"{path}?{name}= (empty): {r.status_code} {r.text}")
    assert not failures, "\n".join(failures)


async def test_times_without_a_zone_are_utc_in_every_admin_api(server: LiveServer) -> None:
    """One grammar: a zone-less RFC 3339 time is accepted by metrics/history, logs and
    logs/stats alike (metrics/history refused it before)."""
    async with server.http() as client:
        for path in ("/metrics/history", "/logs", "/logs/stats"):
            r = await client.get(
                ADMIN + path,
                params={"since": "2020-01-01T00:00:00"},
                headers=server.admin_headers(),
            )
            assert r.status_code == 200, (path, r.text)


async def test_history_times_are_rfc3339_utc(server: LiveServer) -> None:
    """A session's history gives created_at as RFC 3339 UTC, like every other JSON time
    (it was epoch seconds as a float)."""
    token, _ = await server.guest()
    chat = await open_chat(server.ws_url, token)
    await chat.ask("What services do you offer?", "m1")
    await chat.close()
    async with server.http() as client:
        r = await client.get(
            f"/api/v1/chat/sessions/{chat.session_id}/messages",
            headers={"Authorization": f"Bearer {token}"},
        )
    items = r.json()["items"]
    assert [i["role"] for i in items] == ["user", "assistant"]
    for item in items:
        assert isinstance(item["created_at"], str) and item["created_at"].endswith("Z")
        assert len(item["created_at"]) == len("2026-12-02T09:30:00.123456Z")
