"""How long an alert condition takes to reach a webhook receiver (issue 9's latency claim).

A real chatwatch server and a real webhook receiver on loopback; 11 bad logins from one
address make ``AuthFailureBurstByIP`` true at once (``for: 0s``). The time from the 11th bad
login to the receiver's first request must stay within one evaluation interval plus
``group_wait`` plus 1 s. Each round uses a fresh server and data directory.

    python bench/bench_alert_latency.py [--rounds 3] [--interval 2] [--group-wait 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from chatwatch.app import build_app
from chatwatch.config import Settings
from chatwatch.server import ChatwatchServer, install_log_filters, uvicorn_config

ADMIN = "bench-admin-token-0123456789"


class Receiver:
    """Records when each webhook request arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.arrived = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.arrivals.append(time.perf_counter())
        self.arrived.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def serve(server: uvicorn.Server) -> tuple[asyncio.Task[None], int]:
    task = asyncio.create_task(server.serve())
    for _ in range(3000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    return task, server.servers[0].sockets[0].getsockname()[1]


async def one_round(interval: float, group_wait: float) -> float:
    """Seconds from the 11th bad login to the webhook's first request."""
    receiver = Receiver()
    rx = uvicorn.Server(uvicorn.Config(receiver, port=0, log_config=None, lifespan="off"))
    rx_task, rx_port = await serve(rx)
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            server={"port": 0, "data_dir": Path(data_dir)},
            auth={"admin_token": ADMIN, "jwt_secret": "bench-jwt-secret-0123456789abcdef"},
            logging={"level": "ERROR", "store": False},
            alerts={
                "evaluation_interval": interval,
                "group_wait": group_wait,
                "channels": [
                    {"name": "hook", "kind": "webhook", "url": f"http://127.0.0.1:{rx_port}/"}
                ],
            },
        )
        built = build_app(settings)
        server = ChatwatchServer(uvicorn_config(built.asgi, settings), built.services)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task, port = await serve(server)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                bad = {"Authorization": "Bearer not-the-token-0123456789"}
                for _ in range(10):
                    await http.get("/api/v1/admin/chat/alerts", headers=bad)
                await asyncio.sleep(interval * 1.5)  # ten are below the threshold: quiet
                started = time.perf_counter()
                await http.get("/api/v1/admin/chat/alerts", headers=bad)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(receiver.arrived.wait(), interval + group_wait + 10)
        finally:
            server.should_exit = True
            await task
            rx.should_exit = True
            await rx_task
    if not receiver.arrivals:
        raise SystemExit("FAIL: no notification reached the receiver")
    return receiver.arrivals[0] - started


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--group-wait", type=float, default=1.0)
    args = parser.parse_args()
    install_log_filters()
    bound = args.interval + args.group_wait + 1.0
    took = [await one_round(args.interval, args.group_wait) for _ in range(args.rounds)]
    worst = max(took)
    print(
        f"condition → webhook: median {statistics.median(took):.2f} s, worst {worst:.2f} s "
        f"(bound: interval {args.interval:g} s + group_wait {args.group_wait:g} s + 1 s "
        f"= {bound:g} s) — {'PASS' if worst <= bound else 'FAIL'}"
    )
    return 0 if worst <= bound else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
