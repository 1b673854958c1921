"""``chatwatch erase --user ID``: erasure from the command line, with serve's settings."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatwatch.cli import app
from chatwatch.store.chat_store import ChatStore
from chatwatch.store.db import Database


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No outside CHATWATCH_* variable applies; the data dir is this test's tmp_path."""
    for name in list(os.environ):
        if name.upper().startswith("CHATWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATWATCH_SERVER__DATA_DIR", str(tmp_path))
    return tmp_path


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def seed(url: str, chats: dict[str, int]) -> None:
    """One session per user with the given number of messages, in the database at ``url``."""

    async def go() -> None:
        db = Database(url)
        await db.migrate()
        store = ChatStore(db)
        for user_id, n in chats.items():
            await store.create_session(f"s-{user_id}", user_id, "guest", 1_800_000_000.0)
            for i in range(n):
                await store.add_message(
                    session_id=f"s-{user_id}",
                    role="user",
                    correlation_id=f"c{i}",
                    content="hello",
                    now=1_800_000_000.0,
                )
        await db.dispose()

    asyncio.run(go())


def test_erase_prints_the_counts_and_spares_others(tmp_path: Path) -> None:
    """`erase --user` on the default SQLite store removes that user and prints the counts as
    JSON; run again it exits 1 (no such user); the other user's messages remain."""
    seed(f"sqlite+aiosqlite:///{tmp_path / 'chatwatch.db'}", {"guest-a": 3, "guest-b": 2})
    result = run("erase", "--user", "guest-a")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "user_id": "guest-a",
        "sessions": 1,
        "messages": 3,
        "log_records": 0,
    }
    again = run("erase", "--user", "guest-a")
    assert (again.exit_code, "no such user" in again.output) == (1, True)
    assert json.loads(run("erase", "--user", "guest-b").stdout)["messages"] == 2


def test_erase_reads_the_config_file_like_serve(tmp_path: Path) -> None:
    """`--config FILE` chooses the database, as for `serve`."""
    other = tmp_path / "elsewhere.db"
    seed(f"sqlite+aiosqlite:///{other}", {"guest-c": 1})
    config = tmp_path / "chatwatch.toml"
    config.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{other}"\n')
    assert run("erase", "--user", "guest-c").exit_code == 2  # no database in the default place
    result = run("erase", "--user", "guest-c", "--config", str(config))
    assert (result.exit_code, json.loads(result.stdout)["sessions"]) == (0, 1)


@pytest.mark.parametrize("user", ["", "x" * 65, "bad\x01id"])
def test_erase_refuses_an_id_no_user_can_have(user: str) -> None:
    """An empty, over-long or control-character id exits 2 naming user_id."""
    result = run("erase", "--user", user)
    assert (result.exit_code, "user_id" in result.output) == (2, True)


def test_erase_help() -> None:
    """`erase --help` documents --user and --config."""
    result = run("erase", "--help")
    assert (result.exit_code, "--user" in result.output, "--config" in result.output) == (
        0,
        True,
        True,
    )


def test_erase_without_the_servers_database_refuses_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a folder with no database (the wrong folder or settings), erase exits 2 and
    says where it looked, instead of creating an empty database and answering 'no such
    user' while the real data stays (found by a new-user review)."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.setenv("CHATWATCH_SERVER__DATA_DIR", str(empty / "var"))
    result = run("erase", "--user", "someone")
    assert result.exit_code == 2
    assert "no database at" in result.output
    assert not (empty / "var" / "chatwatch.db").exists()


def test_erase_from_the_cli_leaves_an_audit_record(tmp_path: Path) -> None:
    """A CLI erasure is an admin action like the API's: the store gets audit.user_erased
    naming the local user who ran it and the counts (before: no record at all)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'chatwatch.db'}"
    seed(url, {"guest-d": 2})
    assert run("erase", "--user", "guest-d").exit_code == 0

    async def audit_records() -> list[dict[str, Any]]:
        from sqlalchemy import select

        from chatwatch.store.log_tables import log_records

        db = Database(url)
        try:
            async with db.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(log_records.c.data).where(log_records.c.event == "audit.user_erased")
                    )
                ).all()
        finally:
            await db.dispose()
        return [json.loads(r.data) for r in rows]

    [record] = asyncio.run(audit_records())
    assert record["operator"].startswith("local-user:")
    assert (record["erased_user_id"], record["messages"]) == ("guest-d", 2)
