"""Multiprocess mode: two real worker processes, one scrape that sums them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from chatwatch.observe.metrics.exposition import Exposition
from chatwatch.observe.metrics.multiprocess import (
    MULTIPROC_ENV,
    prepare_multiprocess,
    reap_dead_workers,
)

ROOT = Path(__file__).resolve().parents[3]

WORKER = textwrap.dedent(
    """
    import sys
    from chatwatch.clock import SystemClock
    from chatwatch.config import MetricsSettings
    from chatwatch.events import EventBus, attach
    from chatwatch.observe.metrics.exposition import new_registry
    from chatwatch.observe.metrics.recorder import ChatMetrics
    from tests.observe import factory as f
    from tests.observe.live import LiveChat

    name = sys.argv[1]
    bus = EventBus()
    live = LiveChat(bus, SystemClock())
    attach(bus, ChatMetrics(new_registry(), SystemClock(), MetricsSettings(), live=live.hub))
    live.open(name + "-a", name + "-u1", name + "-s1")
    live.open(name + "-b", name + "-u2", name + "-s2")
    for _ in range(3):
        bus.emit(f.received())
    bus.emit(f.ai_done(tokens=(10, 5), cost=0.25))
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text scrape by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def start_worker(name: str, mp_dir: Path) -> subprocess.Popen[str]:
    """A worker process that records some events and waits for a line on stdin."""
    env = {**os.environ, MULTIPROC_ENV: str(mp_dir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop_worker(proc: subprocess.Popen[str]) -> None:
    """Let the worker exit and reap it."""
    proc.communicate("\n", timeout=30)  # also closes the pipes


def test_prepare_empties_the_directory_and_sets_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stale files from an earlier run are removed and the workers' variable is set."""
    # Set first, so that monkeypatch takes the variable away again after the test.
    monkeypatch.setenv(MULTIPROC_ENV, "unset-by-the-test")
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    prepare_multiprocess(tmp_path)
    assert os.environ[MULTIPROC_ENV] == str(tmp_path.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_scrape_sums_workers_and_drops_dead_workers_live_gauges(tmp_path: Path) -> None:
    """Counters sum over both workers; live gauges sum over live workers only."""
    mp_dir = tmp_path / "mp"
    mp_dir.mkdir()
    workers = [start_worker("w1", mp_dir), start_worker("w2", mp_dir)]
    try:
        expo = Exposition(CollectorRegistry(), mp_dir=mp_dir)
        got = samples(expo.render().body)
        assert got[("chat_messages_received_total", (("type", "message"),))] == 6
        assert got[("chat_connections_opened_total", ())] == 4
        assert got[("chat_connections_active", ())] == 4
        assert got[("chat_active_users", ())] == 4
        assert got[("chat_active_sessions", ())] == 4
        labels = (("model", "gpt-4o-mini"), ("provider", "openai"), ("type", "output"))
        assert got[("chat_ai_tokens_total", labels)] == 10
        cost = (("model", "gpt-4o-mini"), ("provider", "openai"))
        assert got[("chat_ai_cost_usd_total", cost)] == 0.5
        count = ("chat_ai_request_duration_seconds_count", cost)
        assert got[count] == 2
        stop_worker(workers.pop())
        got = samples(expo.render().body)  # the scrape reaps the dead worker first
        assert got[("chat_connections_active", ())] == 2
        assert got[("chat_active_sessions", ())] == 2
        assert got[("chat_messages_received_total", (("type", "message"),))] == 6
        expo.close()
    finally:
        for proc in workers:
            stop_worker(proc)


def test_reap_ignores_live_processes(tmp_path: Path) -> None:
    """Only files of pids that no longer exist are reaped."""
    (tmp_path / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    (tmp_path / f"gauge_livesum_{dead_pid}.db").write_bytes(b"")
    assert reap_dead_workers(tmp_path) == [dead_pid]
    assert (tmp_path / f"gauge_livesum_{os.getpid()}.db").exists()
