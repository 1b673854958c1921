"""Claim (issue 4): logging an event through chatwatch's whole pipeline runs at no less
than 0.7x the events/s of structlog's own fast configuration writing the same events.

Baseline: structlog's documented fast set-up (``merge_contextvars``, ``add_log_level``,
``format_exc_info``, ``TimeStamper(fmt="iso", utc=True)``, orjson ``JSONRenderer``,
``BytesLoggerFactory``, filtering bound logger, cached) writing to a file.
Ours: ``configure_logging`` (contextvars, stamp, redaction and bounding, metrics count,
hand-off to a real ``LogStore`` queue, orjson) writing to a file.
Both log the same events with the same context, in alternating rounds, in one run.

Usage: ``python bench/bench_logging.py [--events N] [--rounds R]``; prints events/s of
each and the ratio, and exits 1 when the ratio is below 0.7.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import structlog
from prometheus_client import CollectorRegistry

from chatwatch.clock import SystemClock
from chatwatch.config import LoggingSettings
from chatwatch.correlation import new_correlation_id
from chatwatch.observe.context import bind_connection, bind_message, clear_context
from chatwatch.observe.logs.pipeline import LogMetrics, configure_logging
from chatwatch.observe.logs.store import LogStore
from chatwatch.store.db import Database

TARGET = 0.7


def _events(log: Any, n: int, store: LogStore | None = None) -> None:
    """What a chat message causes, five records per message, with a new correlation id each.

    With ``store``, its queue is emptied every 100 messages, as its writer task would:
    the queue stays as small as in production instead of growing for the whole run.
    """
    for i in range(n // 5):
        if store is not None and i % 100 == 0:
            store._queue.clear()
        bind_message(new_correlation_id())
        log.info("message.received", type="message", size_bytes=120 + i % 50)
        log.info("ai.request.started", provider="openai", model="gpt-4o-mini", context_messages=6)
        log.info(
            "ai.request.completed",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=310,
            output_tokens=95,
            cost_usd=0.000103,
            duration_ms=812.4,
            cached=False,
        )
        log.info("message.sent", type="ai_message", size_bytes=480)
        if i % 10 == 0:
            log.warning(
                "security.auth_failed",
                detail="invalid token on /ws/chat?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
            )
        else:
            log.info("http.request", method="GET", path="/api/v1/chat/sessions", status=200)


def _bind() -> None:
    clear_context()
    bind_connection(
        connection_id="c-5f0a6c2e9b1d4e7f8a9b0c1d",
        user_id="guest-8e2f4a6b1c3d",
        session_id="s-1a2b3c4d5e6f7a8b9c0d1e2f",
        client_ip="203.0.113.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari",
    )


def _baseline(path: Path) -> Any:
    structlog.reset_defaults()
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(path.open("ab")),
    )
    return structlog.get_logger()


def _ours(path: Path, store: LogStore, metrics: LogMetrics) -> Any:
    structlog.reset_defaults()
    configure_logging(LoggingSettings(), stream=path.open("ab"), sink=store.submit, metrics=metrics)
    return structlog.get_logger()


def _rate(log: Any, n: int, store: LogStore | None = None) -> float:
    _bind()
    _events(log, 50, store)  # warm caches and the cached logger
    start = time.perf_counter()
    _events(log, n, store)
    return n / (time.perf_counter() - start)


def main() -> int:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base_file, our_file = Path(tmp) / "baseline.log", Path(tmp) / "ours.log"
        db = Database(f"sqlite+aiosqlite:///{tmp}/unused.db")  # the queue is what is measured
        metrics = LogMetrics(CollectorRegistry())
        store = LogStore(db, SystemClock(), queue_size=10_000, batch_size=500, metrics=metrics)
        baseline_rates, our_rates = [], []
        for _ in range(args.rounds):
            baseline_rates.append(_rate(_baseline(base_file), args.events))
            our_rates.append(_rate(_ours(our_file, store, metrics), args.events, store))
        structlog.reset_defaults()
        base, ours = statistics.median(baseline_rates), statistics.median(our_rates)
        ratio = ours / base
        dropped = metrics.dropped._value.get()
        print(f"structlog fast config : {base:10,.0f} events/s (median of {args.rounds})")
        print(f"chatwatch pipeline    : {ours:10,.0f} events/s (median of {args.rounds})")
        print(f"ratio                 : {ratio:.2f}  (target >= {TARGET})")
        print(f"records queued for the store: every one ({dropped:.0f} dropped)")
        line = our_file.read_bytes().splitlines()[-1]
        print(f"sample record: {line.decode()[:300]}")
    return 0 if ratio >= TARGET and dropped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
