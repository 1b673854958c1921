"""The data directory and chatwatch's files in it are private (issue 8, finding 8)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatwatch.store.db import Database, sqlite_path
from chatwatch.store.permissions import private_umask, secure_data_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual 022 umask while the test runs, whatever it was before."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_an_existing_readable_install_is_tightened(tmp_path: Path) -> None:
    """A 0755 data dir with 0644 secret, token, database, -wal, -shm and metrics files
    (what earlier versions left) becomes 0700 with 0600 files."""
    data = tmp_path / "var"
    (data / "prometheus").mkdir(parents=True)
    data.chmod(0o755)
    (data / "prometheus").chmod(0o755)
    names = [
        "secret",
        "admin_token",
        "chatwatch.db",
        "chatwatch.db-wal",
        "chatwatch.db-shm",
        "prometheus/counter_1.db",
    ]
    for name in names:
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    done = secure_data_dir(data)
    assert (
        mode(data),
        mode(data / "prometheus"),
        [mode(data / n) for n in names],
        len(done.changed),
        done.failed,
    ) == (0o700, 0o700, [0o600] * len(names), len(names) + 2, [])


def test_a_missing_data_dir_is_created_private(tmp_path: Path, loose_umask: None) -> None:
    """Under umask 022 a new data dir is still created 0700."""
    data = tmp_path / "a" / "var"
    secure_data_dir(data)
    assert mode(data) == 0o700


def test_modes_are_tightened_never_widened(tmp_path: Path) -> None:
    """A 0400 secret stays 0400; a 0640 one loses only the group bit."""
    (tmp_path / "secret").write_text("x")
    (tmp_path / "secret").chmod(0o400)
    (tmp_path / "admin_token").write_text("x")
    (tmp_path / "admin_token").chmod(0o640)
    secure_data_dir(tmp_path)
    assert (mode(tmp_path / "secret"), mode(tmp_path / "admin_token")) == (0o400, 0o600)


def test_symlinks_and_other_files_are_left_alone(tmp_path: Path) -> None:
    """A symlinked secret's target and files chatwatch does not own by name are untouched."""
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    outside.chmod(0o644)
    data = tmp_path / "var"
    data.mkdir()
    (data / "secret").symlink_to(outside)
    (data / "notes.txt").write_text("x")
    (data / "notes.txt").chmod(0o644)
    secure_data_dir(data)
    assert (mode(outside), mode(data / "notes.txt")) == (0o644, 0o644)


def test_a_shared_sticky_directory_is_not_changed(tmp_path: Path) -> None:
    """A data_dir like /tmp (sticky, world-writable) keeps its mode: others depend on it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    secure_data_dir(shared)
    assert mode(shared) == 0o1777


def test_a_database_elsewhere_is_tightened_too(tmp_path: Path) -> None:
    """database.url pointing outside data_dir: that file and its -wal become 0600."""
    db = tmp_path / "elsewhere" / "chat.db"
    db.parent.mkdir()
    for path in (db, db.with_name("chat.db-wal")):
        path.write_text("x")
        path.chmod(0o644)
    secure_data_dir(tmp_path / "var", db)
    assert (mode(db), mode(db.with_name("chat.db-wal"))) == (0o600, 0o600)


async def test_sqlite_database_and_its_wal_are_private_under_a_loose_umask(
    tmp_path: Path, loose_umask: None
) -> None:
    """Under umask 022 the database, -wal and -shm SQLite creates are 0600 (before: 0644)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'chatwatch.db'}")
    try:
        await db.migrate()
        names = ["chatwatch.db", "chatwatch.db-wal", "chatwatch.db-shm"]
        async with db.engine.connect() as conn:  # WAL files exist while a connection is open
            await conn.exec_driver_sql("SELECT 1")
            modes = [mode(tmp_path / n) for n in names]
    finally:
        await db.dispose()
    assert modes == [0o600] * 3


def test_private_umask_returns_the_old_mask(loose_umask: None) -> None:
    """private_umask sets 077 and returns what was there (so callers could restore it)."""
    old = private_umask()
    now = os.umask(old)
    assert (old, now) == (0o022, 0o077)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite+aiosqlite:////abs/chat.db", Path("/abs/chat.db")),
        ("sqlite+aiosqlite:///rel/chat.db?timeout=5", Path("rel/chat.db")),
        ("sqlite+aiosqlite:///:memory:", None),
        ("postgresql+asyncpg://postgres@127.0.0.1/test", None),
    ],
)
def test_sqlite_path(url: str, path: Path | None) -> None:
    """The database file of a SQLite URL; None for memory and PostgreSQL."""
    assert sqlite_path(url) == path
