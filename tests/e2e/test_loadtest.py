"""``chatwatch loadtest`` (SPEC §8) against a real server on a free port, and its command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from chatwatch.loadtest import (
    GuestLoginRefused,
    LoadReport,
    check_arguments,
    percentile,
    register,
    run_loadtest,
)
from tests.conftest import LiveServer, LiveServerFactory
from tests.fakes.openai_upstream import Behaviour, FakeOpenAI
from tests.fakes.services import unused_tcp_port

REPORT_KEYS = {
    "connections",
    "connections_failed",
    "sent",
    "replies",
    "lost",
    "errors",
    "throughput_per_second",
    "latency_ms",
    "duration_seconds",
    "cached",
}


def _app() -> typer.Typer:
    """A tiny CLI with just the loadtest command, registered the way cli.py does it."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Group callback, so ``loadtest`` is a sub-command as in ``chatwatch``."""

    register(app)
    return app


def _invoke(*args: str) -> Any:
    """The command in-process (for argument checks: no I/O, nothing else writes to stdout)."""
    return CliRunner().invoke(_app(), ["loadtest", *args])


# The same tiny CLI in a child process: its stdout holds only what the command printed (an
# in-process server's log lines cannot mix in) and its asyncio.run has a loop of its own.
_CLI_SCRIPT = (
    "import typer\n"
    "from chatwatch.loadtest import register\n"
    "app = typer.Typer()\n"
    "app.callback()(lambda: None)\n"
    "register(app)\n"
    "app()\n"
)


def _cli_command(*args: str) -> list[str]:
    return [sys.executable, "-c", _CLI_SCRIPT, "loadtest", *args]


def _cli_env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}


async def _cli(*args: str) -> tuple[int, str, str]:
    """Run the command in a child process without blocking the live server's event loop."""
    proc = await asyncio.create_subprocess_exec(
        *_cli_command(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_cli_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _assert_consistent(report: LoadReport) -> None:
    assert report.sent == report.replies + report.lost
    assert report.ai_replies == len(report.latencies_ms)
    assert report.latencies_ms == sorted(report.latencies_ms)
    assert report.connections + report.connections_failed == report.connections_requested


async def test_every_message_gets_a_round_trip(live_server: LiveServer) -> None:
    """5 connections × 4 messages: 20 replies, none lost, 20 samples, ordered percentiles."""
    report = await run_loadtest(live_server.ws_url, connections=5, messages=4, timeout=10)
    _assert_consistent(report)
    assert (report.connections, report.connections_failed) == (5, 0)
    assert (report.sent, report.replies, report.ai_replies, report.lost) == (20, 20, 20, 0)
    assert report.errors == {}
    assert 0 <= report.cached <= 20
    lat = report.latency_summary()
    assert lat["count"] == 20
    assert all(isinstance(lat[k], float) for k in ("p50", "p95", "p99", "mean", "max"))
    p50, p95, p99 = report.latency(50), report.latency(95), report.latency(99)
    assert p50 is not None and p95 is not None and p99 is not None
    assert 0 < p50 <= p95 <= p99 <= report.latencies_ms[-1]
    assert report.duration_seconds > 0 and report.throughput_per_second > 0


async def test_rate_limited_error_frames_are_replies_not_lost(
    live_server_factory: LiveServerFactory,
) -> None:
    """The server's rate_limited error frames count as replies by code, never as lost."""
    async with live_server_factory(limits={"messages_per_minute": 2}) as srv:
        report = await run_loadtest(srv.ws_url, connections=2, messages=4, timeout=10)
    _assert_consistent(report)
    assert (report.sent, report.replies, report.lost) == (8, 8, 0)
    # A full bucket of 2 per connection; refilling one more takes 30 s.
    assert report.ai_replies == 4
    assert report.errors == {"rate_limited": 4}
    assert len(report.latencies_ms) == 4  # error frames are not round-trip samples


async def test_unanswered_messages_are_lost_and_duration_bounds_the_run(
    live_server_factory: LiveServerFactory, fake_openai: FakeOpenAI
) -> None:
    """A stalled AI: each reply times out and is lost; the run ends by duration + timeout."""
    fake_openai.behaviour = Behaviour(first_byte_delay=3.0)
    ai = {"provider": "openai", "base_url": fake_openai.url, "model": "m", "timeout": 10}
    async with live_server_factory(ai=ai) as srv:
        report = await run_loadtest(
            srv.ws_url, connections=2, messages=1000, duration=1.0, timeout=0.4
        )
    _assert_consistent(report)
    assert report.connections == 2
    assert report.sent >= 2 and report.replies == 0
    assert report.lost == report.sent
    assert report.sent < 2 * 1000
    assert report.latency_summary()["p99"] is None
    assert report.elapsed_seconds <= 1.0 + 0.4 + 0.5  # the hard bound, plus scheduling slack


async def test_rate_caps_the_sends(live_server: LiveServer) -> None:
    """--rate R with --duration S sends at most R×S + 1 messages across all connections."""
    report = await run_loadtest(
        live_server.ws_url, connections=3, messages=1000, rate=10, duration=0.5, timeout=10
    )
    _assert_consistent(report)
    assert 1 <= report.sent <= 10 * 0.5 + 1
    assert report.lost == 0


async def test_guest_login_refused_is_an_error_and_exit_2(
    live_server_factory: LiveServerFactory,
) -> None:
    """With guest login off the run refuses to start: GuestLoginRefused, and exit 2 in the CLI."""
    async with live_server_factory(auth={"guest_login": False}) as srv:
        with pytest.raises(GuestLoginRefused, match="HTTP 403"):
            await run_loadtest(srv.ws_url, connections=2, messages=1)
        code, _, err = await _cli("--url", srv.ws_url, "--connections", "2", "--messages", "1")
    assert code == 2
    assert "guest login refused" in err


async def test_unreachable_url_fails_every_connection() -> None:
    """Nothing listening: every connection fails (by reason), nothing is sent, nothing lost."""
    url = f"ws://127.0.0.1:{unused_tcp_port()}/ws/chat"
    report = await run_loadtest(url, connections=3, messages=2, timeout=5)
    _assert_consistent(report)
    assert (report.connections, report.connections_failed) == (0, 3)
    assert (report.sent, report.replies, report.lost) == (0, 0, 0)
    assert sum(report.errors.values()) == 3
    assert report.aborted is not None and "cannot reach" in report.aborted


def test_cli_unreachable_url_exits_1() -> None:
    """The command exits 1 when not a single connection could be made, and says why."""
    url = f"ws://127.0.0.1:{unused_tcp_port()}/ws/chat"
    args = ("--url", url, "--connections", "3", "--messages", "2", "--json")
    result = subprocess.run(
        _cli_command(*args), capture_output=True, text=True, env=_cli_env(), timeout=50
    )
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert (body["connections"], body["connections_failed"], body["sent"]) == (0, 3, 0)
    assert "no connection could be made" in result.stderr


async def test_cli_json_report_parses_with_every_key(live_server: LiveServer) -> None:
    """--json prints one JSON object with the documented keys; exit 0."""
    code, out, err = await _cli(
        "--url", live_server.ws_url, "--connections", "2", "--messages", "3", "--json"
    )
    assert code == 0, err
    body = json.loads(out)
    assert set(body) >= REPORT_KEYS
    assert (body["connections"], body["sent"], body["replies"], body["lost"]) == (2, 6, 6, 0)
    assert set(body["latency_ms"]) >= {"p50", "p95", "p99", "mean", "max"}
    assert body["errors"] == {}


async def test_cli_text_report_names_every_figure(live_server: LiveServer) -> None:
    """The human report shows connections, sent/replies/lost, throughput, p50/p95/p99, errors."""
    code, out, err = await _cli(
        "--url", live_server.ws_url, "--connections", "2", "--messages", "2"
    )
    assert code == 0, err
    for word in ("2 opened", "4 sent", "4 replies", "0 lost", "replies/s", "p50", "p95", "p99"):
        assert word in out
    assert "errors       none" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connections", "0"], "--connections must be between 1 and 10000"),
        (["--connections", "10001"], "--connections must be between 1 and 10000"),
        (["--messages", "0"], "--messages must be between 1 and 1000000"),
        (["--messages", "1000001"], "--messages must be between 1 and 1000000"),
        (["--rate", "0"], "--rate must be greater than 0"),
        (["--rate", "-3"], "--rate must be greater than 0"),
        (["--duration", "0"], "--duration must be greater than 0"),
        (["--timeout", "0"], "--timeout must be greater than 0"),
        (["--url", "http://127.0.0.1:8000/ws/chat"], "--url must be a ws:// or wss:// URL"),
        (["--url", "ws:///ws/chat"], "--url has no host"),
    ],
)
def test_cli_bad_arguments_exit_2_with_message(args: list[str], message: str) -> None:
    """An out-of-range argument exits 2 with a message naming the option, before any I/O."""
    base = {"--url": "ws://127.0.0.1:9/ws/chat", "--connections": "1", "--messages": "1"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = _invoke(*[part for pair in base.items() for part in pair])
    assert result.exit_code == 2
    assert message in result.stderr


async def test_api_rejects_bad_arguments() -> None:
    """run_loadtest raises ValueError for arguments the CLI would refuse."""
    with pytest.raises(ValueError, match="--connections"):
        await run_loadtest("ws://127.0.0.1:9/ws/chat", connections=0, messages=1)
    with pytest.raises(ValueError, match="ws:// or wss://"):
        check_arguments("https://example.com/ws/chat", 1, 1)


def test_percentiles_are_exact_nearest_rank() -> None:
    """Percentiles are samples, by nearest rank: p50 of 1..100 is 50, p99 is 99, p100 is 100."""
    samples = [float(v) for v in range(1, 101)]
    assert (percentile(samples, 50), percentile(samples, 99), percentile(samples, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
