"""The admin log endpoints: SPEC §5 shapes, combinable filters, 400 for every bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from chatwatch.api.admin_logs import build_admin_logs_router
from chatwatch.clock import FakeClock
from chatwatch.observe.logs.pipeline import LogMetrics
from chatwatch.observe.logs.store import LogStore
from tests.observe.logstore_fixtures import make_record, migrated_db, new_store

PREFIX = "/api/v1/admin/chat"


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when told."""
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[LogStore]:
    """A LogStore on a migrated SQLite database, holding a few records."""
    async with migrated_db("sqlite", tmp_path) as db:
        logstore = new_store(db, clock, LogMetrics(CollectorRegistry()))
        t = clock.time()
        logstore.submit(make_record("security.auth_failed", t - 30, level="warning"))
        logstore.submit(make_record("message.received", t - 20, correlation_id="abc123"))
        logstore.submit(make_record("ai.request.failed", t - 10, level="error", message="boom"))
        yield logstore
        await logstore.close()


@pytest.fixture
async def client(store: LogStore) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on an app with the router mounted under the admin prefix."""
    app = FastAPI()
    app.include_router(build_admin_logs_router(store), prefix=PREFIX)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_search_shape_newest_first(client: httpx.AsyncClient) -> None:
    """GET /logs gives items newest first and a null next_cursor on the last page."""
    r = await client.get(f"{PREFIX}/logs")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"items", "next_cursor"}
    assert [i["event"] for i in body["items"]] == [
        "ai.request.failed",
        "message.received",
        "security.auth_failed",
    ]
    assert body["next_cursor"] is None


async def test_empty_parameters_count_as_absent(client: httpx.AsyncClient) -> None:
    """The SPEC's template with every parameter empty is a plain search."""
    names = "q level component event user_id session_id correlation_id since until limit cursor"
    query = "&".join(f"{name}=" for name in names.split())
    r = await client.get(f"{PREFIX}/logs?{query}")
    assert r.status_code == 200
    assert len(r.json()["items"]) == 3


async def test_filters_and_pagination(client: httpx.AsyncClient) -> None:
    """Filters combine and the cursor leads to the next page."""
    r = await client.get(f"{PREFIX}/logs", params={"event": "security.*", "level": "warning"})
    assert [i["event"] for i in r.json()["items"]] == ["security.auth_failed"]
    r = await client.get(f"{PREFIX}/logs", params={"correlation_id": "abc123"})
    assert [i["event"] for i in r.json()["items"]] == ["message.received"]
    first = (await client.get(f"{PREFIX}/logs", params={"limit": "2"})).json()
    second = await client.get(
        f"{PREFIX}/logs", params={"limit": "2", "cursor": first["next_cursor"]}
    )
    assert [i["event"] for i in second.json()["items"]] == ["security.auth_failed"]
    r = await client.get(f"{PREFIX}/logs", params={"q": "boom", "since": "1m"})
    assert [i["event"] for i in r.json()["items"]] == ["ai.request.failed"]


@pytest.mark.parametrize(
    "q",
    [
        '"unclosed',
        "(open",
        "close)",
        "()",
        "AND OR",
        "a AND",
        "OR a",
        "NOT",
        "-",
        "*",
        "**",
        "NOT a",
        "a NOT NOT",
        "x" * 300,
        "bad\x00byte",
        "((((((((((deep))))))))))",
        '"..."',
        " ".join(["w"] * 40),
    ],
)
async def test_malformed_full_text_is_a_400(client: httpx.AsyncClient, q: str) -> None:
    """A malformed q is a 400 whose detail names q, never a 500."""
    r = await client.get(f"{PREFIX}/logs", params={"q": q})
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("q:")


@pytest.mark.parametrize("q", ["NEAR", "NEAR(a b)", "a OR b", "auth*", "col:umn", "'single'"])
async def test_fts_keywords_and_punctuation_are_plain_words(
    client: httpx.AsyncClient, q: str
) -> None:
    """FTS5 syntax like NEAR, ':' or quotes is searched as words, not interpreted."""
    r = await client.get(f"{PREFIX}/logs", params={"q": q})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"level": "loud"}, "level"),
        ({"event": "security.**"}, "event"),
        ({"event": "a b"}, "event"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2030-01-01T00:00:00Z", "until": "2029-01-01T00:00:00Z"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"user_id": "has space"}, "user_id"),
        ({"correlation_id": "x" * 200}, "correlation_id"),
        ({"component": "a/b"}, "component"),
        ({"colour": "red"}, "unknown parameter"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    client: httpx.AsyncClient, params: dict[str, str], names: str
) -> None:
    """Every bad parameter is a 400 whose detail names it."""
    r = await client.get(f"{PREFIX}/logs", params=params)
    assert r.status_code == 400
    assert names in r.json()["detail"]


async def test_repeated_parameter_is_a_400(client: httpx.AsyncClient) -> None:
    """A parameter given twice is ambiguous, so it is refused."""
    r = await client.get(f"{PREFIX}/logs?level=info&level=error")
    assert r.status_code == 400
    assert "level" in r.json()["detail"]


async def test_stats_shape(client: httpx.AsyncClient) -> None:
    """GET /logs/stats counts by level, component and family with error-rate buckets."""
    r = await client.get(f"{PREFIX}/logs/stats", params={"since": "1h"})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 3
    assert body["by_level"]["error"] == 1
    assert body["by_event_family"] == {"security": 1, "message": 1, "ai": 1}
    assert body["error_rate"]["overall"] == pytest.approx(1 / 3)
    assert body["error_rate"]["buckets"]


@pytest.mark.parametrize(
    "params",
    [{"since": "soon"}, {"until": "x"}, {"since": "1h", "until": "2h"}, {"bucket": "1m"}],
)
async def test_bad_stats_parameters_are_400(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    """Bad stats parameters are a 400 with a reason."""
    r = await client.get(f"{PREFIX}/logs/stats", params=params)
    assert r.status_code == 400
    assert r.json()["detail"]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(max_size=80))
async def test_any_query_text_is_200_or_400(client: httpx.AsyncClient, q: str) -> None:
    """Whatever q holds, the answer is a 200 or a 400, never a server error."""
    r = await client.get(f"{PREFIX}/logs", params={"q": q})
    assert r.status_code in (200, 400), (q, r.text)
