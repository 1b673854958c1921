"""prometheus_client multiprocess mode for ``chatwatch serve --workers N``.

Each worker writes its samples to memory-mapped files in one directory; a scrape answered by
any worker merges them (counters and histograms summed, gauges by their ``multiprocess_mode``).
prometheus_client picks its value storage when it is first imported, so the supervisor must
call ``prepare_multiprocess`` before any worker imports it. This module itself never imports
prometheus_client at import time for that reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import psutil

__all__ = [
    "MULTIPROC_ENV",
    "multiprocess_dir",
    "prepare_multiprocess",
    "reap_dead_workers",
    "worker_started",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def prepare_multiprocess(directory: Path) -> None:
    """Supervisor, once, before workers start: empty ``directory`` and point the env at it."""
    # Workers inherit the environment; prometheus_client reads it when first imported.
    directory.mkdir(parents=True, exist_ok=True)
    # Files left by an earlier run would be summed into this run's counters.
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory.resolve())


def multiprocess_dir() -> Path | None:
    """The multiprocess directory when multiprocess mode is on, else None."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def reap_dead_workers(directory: Path) -> list[int]:
    """Drop the live-gauge files of workers that are gone; returns the pids reaped."""
    # Their connections and tasks stop counting; their counters stay (totals never go down).
    from prometheus_client.multiprocess import mark_process_dead

    pids = set()
    for path in directory.glob("gauge_live*.db"):
        m = _LIVE_FILE.match(path.name)
        if m:
            pids.add(int(m.group(1)))
    dead = sorted(pid for pid in pids if pid != os.getpid() and not psutil.pid_exists(pid))
    for pid in dead:
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    return dead


def worker_started() -> None:
    """Worker, before any metric exists: clear stale live gauges of this pid, reap dead workers."""
    # A dead process may have had this pid; uvicorn's supervisor has no worker-exit hook.
    directory = multiprocess_dir()
    if directory is None:
        return
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(os.getpid(), str(directory))  # type: ignore[no-untyped-call]
    reap_dead_workers(directory)
