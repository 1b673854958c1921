"""Real backing services for tests: skip when absent locally, fail when absent in CI.

With ``CI=true`` a missing service is a failure, so a broken CI setup cannot turn into
a green run of skipped tests. ``TEST_REDIS_URL`` / ``TEST_POSTGRES_URL`` override the
default URLs (deliberately not ``CHATWATCH_*``: chatwatch rejects unknown variables
with its own prefix).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import socket
import threading
from urllib.parse import urlsplit

import pytest

__all__ = ["POSTGRES_URL", "REDIS_URL", "require_postgres", "require_redis", "unused_tcp_port"]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def _reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _require(name: str, url: str, default_port: int) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    if _reachable(host, port):
        return url
    reason = f"{name} is unreachable at {host}:{port}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true, so this test needs it)", pytrace=False)
    pytest.skip(reason)


def require_redis() -> str:
    """The test Redis URL; skips the test if Redis is down (fails it when CI=true)."""
    return _require("Redis", REDIS_URL, 6379)


_own_database: list[str] = []


def _in_thread(coro_factory: object) -> None:
    # Callers may be inside a running event loop: run the admin statement on a thread's own.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coro_factory())  # type: ignore[operator]
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]


def _admin(statement: str) -> None:
    import asyncpg

    async def execute() -> None:
        conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    _in_thread(execute)


def require_postgres() -> str:
    """A PostgreSQL database of this test run's own; skips the test if PostgreSQL is down
    (fails it when CI=true).

    Each run (a worktree, CI) gets a fresh database, dropped at exit, so runs at different
    migration heads never meet in one database.
    """
    url = _require("PostgreSQL", POSTGRES_URL, 5432)
    if not _own_database:
        name = f"chatwatch_test_{os.getpid()}_{secrets.token_hex(4)}"
        _admin(f'CREATE DATABASE "{name}"')
        atexit.register(_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        base, _, _ = url.rpartition("/")
        _own_database.append(f"{base}/{name}")
    return _own_database[0]


def unused_tcp_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
