"""The real ``chatwatch serve`` process: private data files, admin-token rotation without a
restart, and ``chatwatch token`` run from another folder (issues 7 and 8)."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.e2e.client import open_chat
from tests.e2e.test_process import CLEAN_EXIT, Served, _start

PRIVATE_FILES = ("secret", "admin_token", "chatwatch.db", "chatwatch.db-wal", "chatwatch.db-shm")


@contextmanager
def loose_umask() -> Iterator[None]:
    """Start children under the common umask 022, so that the server itself must tighten."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def chatwatch(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the chatwatch command in a child process (no CHATWATCH_* but those in ``env``)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CHATWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "chatwatch", *args],
        env={**full, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def chat_once(served: Served) -> None:
    """One guest asks one question (so the database and its WAL hold a chat)."""
    async with httpx.AsyncClient(base_url=served.url) as http:
        token = (await http.post("/api/v1/auth/guest")).json()["token"]
    client = await open_chat(served.ws_url, token)
    try:
        assert (await client.ask("What are your prices?"))[-1]["type"] == "ai_message"
    finally:
        await client.close()


def admin_status(served: Served, token: str) -> int:
    return httpx.get(
        served.url + "/api/v1/admin/chat/health",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).status_code


# --- private files ----------------------------------------------------------------------


async def test_a_new_data_dir_and_its_files_are_private(tmp_path: Path) -> None:
    """After a chat message on a fresh `serve` (test umask 022), the data dir is 0700 and the
    secret, admin token, database, -wal and -shm are 0600 (before: 0755 and 0644)."""
    data = tmp_path / "var"
    with loose_umask():
        served = _start(data)
    try:
        await chat_once(served)
        modes = {name: mode(data / name) for name in PRIVATE_FILES}
        dir_mode = mode(data)
    finally:
        code, err = await asyncio.to_thread(served.stop)
    assert code in CLEAN_EXIT, err
    assert (dir_mode, modes) == (0o700, dict.fromkeys(PRIVATE_FILES, 0o600))


async def test_an_existing_readable_install_is_fixed_at_start(tmp_path: Path) -> None:
    """A data dir left 0755 with 0644 files by an earlier version is 0700/0600 after the next
    start, and still serves its chats; the start says it made them private."""
    data = tmp_path / "var"
    with loose_umask():
        first = _start(data)
    await chat_once(first)
    await asyncio.to_thread(first.stop)
    data.chmod(0o755)
    for path in data.iterdir():
        path.chmod(0o644)
    with loose_umask():
        second = _start(data)
    try:
        await chat_once(second)
        modes = {name: mode(data / name) for name in PRIVATE_FILES}
        dir_mode = mode(data)
    finally:
        _, err = await asyncio.to_thread(second.stop)
    assert (dir_mode, modes) == (0o700, dict.fromkeys(PRIVATE_FILES, 0o600))
    assert "private" in err


async def test_multiprocess_metrics_files_are_private(tmp_path: Path) -> None:
    """With --workers 2 the multiprocess metrics directory is 0700 and its files 0600."""
    data = tmp_path / "var"
    with loose_umask():
        served = _start(data, "--workers", "2")
    try:
        await chat_once(served)
        metrics_dir = data / "prometheus"
        files = sorted(metrics_dir.iterdir())
        modes = (mode(metrics_dir), {mode(f) for f in files})
    finally:
        code, err = await asyncio.to_thread(served.stop)
    assert (code in CLEAN_EXIT, bool(files), modes) == (True, True, (0o700, {0o600})), err


# --- admin token rotation ---------------------------------------------------------------


def test_rotation_takes_effect_in_the_running_server(tmp_path: Path) -> None:
    """`chatwatch admin-token rotate` against a running server: the old token gets 401 at
    once, the new one 200, an admin JWT keeps working, and audit.admin_token_rotated is
    searchable (before: no rotate command; the token lived until a restart)."""
    served = _start(tmp_path)
    env = {"CHATWATCH_SERVER__DATA_DIR": str(tmp_path)}
    try:
        old = (tmp_path / "admin_token").read_text().strip()
        admin_jwt = chatwatch("token", "--user", "ops-bob", "--admin", env=env).stdout.strip()
        before = (admin_status(served, old), admin_status(served, admin_jwt))
        rotated = chatwatch("admin-token", "rotate", env=env)
        new = rotated.stdout.strip()
        after = (
            admin_status(served, old),
            admin_status(served, new),
            admin_status(served, admin_jwt),
        )
        r = httpx.get(
            served.url + "/api/v1/admin/chat/logs",
            params={"event": "audit.*"},
            headers={"Authorization": f"Bearer {new}"},
            timeout=10,
        )
        records = [i for i in r.json()["items"] if i["event"] == "audit.admin_token_rotated"]
    finally:
        served.stop()
    stored = (tmp_path / "admin_token").read_text().strip()
    assert (rotated.returncode, new != old, new == stored) == (0, True, True)
    assert (before, after) == ((200, 200), (401, 200, 200))
    assert [(rec["operator"].startswith("local-user:"), rec["path"]) for rec in records] == [
        (True, str((tmp_path / "admin_token").resolve()))
    ]


# --- token from another folder ----------------------------------------------------------


def test_token_from_another_folder_is_accepted_by_the_server(tmp_path: Path) -> None:
    """`serve` with a config file; `token --admin` run from another folder with the same
    CHATWATCH_CONFIG mints a JWT the server accepts, creating nothing in that folder."""
    data = tmp_path / "var"
    config = tmp_path / "chatwatch.toml"
    config.write_text(f'[server]\ndata_dir = "{data}"\n')
    served = _start(data, env={"CHATWATCH_CONFIG": str(config)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        done = chatwatch(
            "token",
            "--user",
            "ops",
            "--admin",
            env={"CHATWATCH_CONFIG": str(config)},
            cwd=elsewhere,
        )
        status = admin_status(served, done.stdout.strip())
    finally:
        served.stop()
    assert (done.returncode, status, list(elsewhere.iterdir())) == (0, 200, [])
