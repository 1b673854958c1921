"""The real ``chatwatch serve`` process: first start, token printing, SIGTERM, workers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.client import open_chat
from tests.fakes.services import unused_tcp_port


class Served:
    """A ``chatwatch serve`` child process on a free port."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, data_dir: Path) -> None:
        self.proc = proc
        self.port = port
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws/chat"

    def stop(self) -> tuple[int, str]:
        """SIGTERM, wait, and return (exit code, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err.decode(errors="replace")


# uvicorn re-raises the SIGTERM it handled once shutdown is complete, so a graceful stop
# ends "killed by SIGTERM" (what systemd and Kubernetes expect), or 0 when it ended itself.
CLEAN_EXIT = (0, -signal.SIGTERM)


def _start(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    port = unused_tcp_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWATCH_")}
    full_env.update(
        CHATWATCH_SERVER__PORT=str(port),
        CHATWATCH_SERVER__DATA_DIR=str(data_dir),
        CHATWATCH_SERVER__SHUTDOWN_GRACE="3",
        CHATWATCH_LOGGING__LEVEL="WARNING",
        **(env or {}),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatwatch", "serve", *args],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    served = Served(proc, port, data_dir)
    for _ in range(300):
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {served.stop()[1]}")
        try:
            if httpx.get(served.url + "/readyz", timeout=1).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        import time

        time.sleep(0.1)
    served.stop()
    raise AssertionError("server did not become ready in 30 s")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """One server process with default settings in a fresh data dir."""
    s = _start(tmp_path)
    yield s
    s.stop()


async def _guest(url: str) -> str:
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.post("/api/v1/auth/guest")
        token: str = r.json()["token"]
        return token


def test_first_start_prints_admin_token_once(tmp_path: Path) -> None:
    """The first start prints the generated admin token; the second does not repeat it."""
    first = _start(tmp_path)
    code, err = first.stop()
    token = (tmp_path / "admin_token").read_text().strip()
    assert code in CLEAN_EXIT
    assert token in err
    second = _start(tmp_path)
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        second.url + "/api/v1/admin/chat/broadcast", json={"message": "x"}, headers=headers
    )
    code, err = second.stop()
    assert r.status_code == 200
    assert token not in err
    assert "admin_token" in err


def test_token_command_mints_a_working_jwt(served: Served) -> None:
    """`chatwatch token --user alice` prints a JWT the server accepts (same data dir)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWATCH_")}
    env["CHATWATCH_SERVER__DATA_DIR"] = str(served.data_dir)
    out = subprocess.run(
        [sys.executable, "-m", "chatwatch", "token", "--user", "alice", "--admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    r = httpx.post(
        served.url + "/api/v1/admin/chat/broadcast",
        json={"message": "x"},
        headers={"Authorization": f"Bearer {out}"},
    )
    assert r.status_code == 200


async def test_sigterm_closes_sockets_with_1001(served: Served) -> None:
    """SIGTERM: open sockets get close code 1001 and the process exits 0."""
    client = await open_chat(served.ws_url, await _guest(served.url))
    frames = await client.ask("hello", "1")
    assert frames[-1]["type"] == "ai_message"
    served.proc.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv(wait=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    code, err = await asyncio.to_thread(served.stop)
    assert code in CLEAN_EXIT, err


def test_bad_config_stops_start_naming_the_key(tmp_path: Path) -> None:
    """A bad value (CHATWATCH_LIMITS__MESSAGES_PER_MINUTE=lots) stops start-up, naming it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWATCH_")}
    env.update(
        CHATWATCH_SERVER__DATA_DIR=str(tmp_path), CHATWATCH_LIMITS__MESSAGES_PER_MINUTE="lots"
    )
    done = subprocess.run(
        [sys.executable, "-m", "chatwatch", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "limits.messages_per_minute" in done.stderr


async def test_two_workers_serve_chat(tmp_path: Path) -> None:
    """`serve --workers 2` chats, /metrics sums both workers on every scrape, SIGTERM stops it."""
    s = _start(tmp_path, "--workers", "2")
    try:
        for i in range(6):
            client = await open_chat(s.ws_url, await _guest(s.url))
            assert (await client.ask("What are your prices?", str(i)))[-1]["type"] == "ai_message"
            await client.close()
        totals = set()
        async with httpx.AsyncClient(base_url=s.url) as http:
            for _ in range(6):  # new connections: the kernel spreads them over both workers
                http.headers["Connection"] = "close"
                text = (await http.get("/metrics")).text
                line = next(
                    ln
                    for ln in text.splitlines()
                    if ln.startswith('chat_messages_received_total{type="message"}')
                )
                totals.add(float(line.split()[-1]))
        assert totals == {6.0}
    finally:
        code, err = await asyncio.to_thread(s.stop)
    assert code in CLEAN_EXIT, err
