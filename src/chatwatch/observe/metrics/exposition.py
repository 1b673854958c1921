"""Rendering ``/metrics`` off the event loop, without starving it.

``generate_latest`` takes ~70 ms of pure Python for 10,000 series. On the event loop that would
stall every chat; in a plain thread it still competes for the GIL with the loop and the
database threads, each of which then waits up to the 5 ms switch interval whenever it wakes,
and the chat p99 pays. So, three things:

* the scrape runs in one dedicated thread, which gives the GIL up (``time.sleep(0)``) after
  every 0.1 ms of work, so no other thread waits much longer than that;
* the registry's own metric families are rendered by ``fastexpo.FastRenderer``, which keeps
  every series' formatted labels (and unchanged lines) between scrapes: ~3x less GIL time;
* the garbage collector is paused during a render, whose allocations all die with it.

The bytes are exactly what prometheus_client's encoders print (tests compare them).
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from chatwatch.observe.metrics.fastexpo import FastRenderer, format_of, registry_collectors
from chatwatch.observe.metrics.multiprocess import (
    multiprocess_dir,
    reap_dead_workers,
    worker_started,
)

__all__ = ["Exposition", "Scrape", "new_registry"]

# Samples handled between two looks at the clock (each costs ~10 us to render).
_STRIDE = 32
# Work between two GIL hand-overs: how long another thread (the loop, a database thread) may
# wait for the GIL during a scrape. A hand-over costs ~70 us (sleep(0) sleeps for the timer
# slack, which is what gives a waiting thread time to take the GIL). 0.1 ms keeps the chat's
# p99 where it is without scrapes (bench/bench_metrics.py) and costs the cached renderer
# ~40% of a render that is 3x cheaper than generate_latest; the library's own, slower
# encoders (multiprocess files, unusual Accept headers) hand over every 0.5 ms (~14%).
_SLICE_FAST = 0.0001
_SLICE_LIBRARY = 0.0005


def new_registry() -> CollectorRegistry:
    """A registry for this process's instruments, with the standard ``process_*`` metrics."""
    # Under multiprocess mode instruments write to the shared files, and process_* is added
    # at scrape time instead (see Exposition).
    worker_started()
    registry = CollectorRegistry()
    if multiprocess_dir() is None:
        ProcessCollector(registry=registry)
    return registry


class _Slicer:
    """Hands the GIL over once every ``slice`` seconds of work in this thread."""

    def __init__(self) -> None:
        self._since = time.perf_counter()
        self.slice = _SLICE_LIBRARY

    def maybe_hand_over(self) -> None:
        now = time.perf_counter()
        if now - self._since >= self.slice:
            # sleep(0) releases the GIL long enough for a waiting thread (the loop) to take it.
            time.sleep(0)
            self._since = time.perf_counter()


_slicer = threading.local()


def _thread_slicer() -> _Slicer:
    slicer: _Slicer | None = getattr(_slicer, "value", None)
    if slicer is None:
        slicer = _slicer.value = _Slicer()
    return slicer


def _maybe_hand_over() -> None:
    _thread_slicer().maybe_hand_over()


def _strides(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _STRIDE):
        if start:
            _maybe_hand_over()
        yield items[start : start + _STRIDE]


class _YieldingSamples(list[Any]):
    """A sample list whose iteration may hand the GIL over between strides of samples."""

    # Per-sample stepping stays in C (chain); only each stride resumes Python.

    def __iter__(self) -> Iterator[Any]:
        return chain.from_iterable(_strides(self))


class _Cooperative(Collector):
    """A view of a registry whose ``collect()`` yields the GIL while it works."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        """Every metric family, built and then iterated with regular GIL hand-overs."""
        collectors = registry_collectors(self._registry)
        if collectors is None:
            for metric in self._registry.collect():
                yield self._cooperative(metric)
            return
        for collector in collectors:
            built = self._build(collector) if isinstance(collector, MetricWrapperBase) else None
            if built is not None:
                yield self._cooperative(built)
            else:
                for metric in collector.collect():
                    yield self._cooperative(metric)

    @classmethod
    def _build(cls, wrapper: MetricWrapperBase) -> Metric | None:
        """The wrapper's family built in strides, or None if this release lacks an internal
        it reads (then its public ``collect()`` builds it)."""
        try:
            return cls._build_in_strides(wrapper)
        except AttributeError:
            return None

    @staticmethod
    def _build_in_strides(wrapper: MetricWrapperBase) -> Metric:
        # What MetricWrapperBase.collect() does, with a chance to hand over every stride.
        metric: Metric = wrapper._get_metric()  # type: ignore[no-untyped-call]
        name = wrapper._name
        samples = wrapper._samples()
        out = metric.samples
        while True:
            stride = list(islice(samples, _STRIDE))
            out.extend([Sample(name + s[0], *s[1:]) for s in stride])
            if len(stride) < _STRIDE:
                return metric
            _maybe_hand_over()

    @staticmethod
    def _cooperative(metric: Metric) -> Metric:
        metric.samples = _YieldingSamples(metric.samples)
        return metric


@dataclass(frozen=True, slots=True)
class Scrape:
    """One rendered scrape."""

    body: bytes
    content_type: str
    content_encoding: str | None


class Exposition:
    """Renders a registry (or every worker's files) in its own thread, as ``Accept`` asks."""

    def __init__(self, registry: CollectorRegistry, *, mp_dir: Path | None = None) -> None:
        self._mp_dir = mp_dir if mp_dir is not None else multiprocess_dir()
        if self._mp_dir is not None:
            source = CollectorRegistry()
            MultiProcessCollector(source, path=str(self._mp_dir))  # type: ignore[no-untyped-call]
            # process_* of the worker that answers: the files hold no process metrics.
            ProcessCollector(registry=source)
        else:
            source = registry
        self._source = source
        self._view = _Cooperative(source)
        self._fast = FastRenderer(_maybe_hand_over)
        # One thread: concurrent scrapes queue up instead of multiplying GIL contention.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-scrape")

    @property
    def multiprocess(self) -> bool:
        """True when scrapes merge the files of several workers."""
        return self._mp_dir is not None

    def render(self, accept: str | None = None, accept_encoding: str | None = None) -> Scrape:
        """Render now, in the calling thread."""
        if self._mp_dir is not None:
            reap_dead_workers(self._mp_dir)
        encoder, content_type = choose_encoder(accept or "")
        fmt = format_of(encoder)
        collectors = registry_collectors(self._source) if self._mp_dir is None else None
        # A render allocates container objects per series, nearly all freed when it ends; with
        # the collector on, that churn triggers collections mid-render, and a full one holds
        # the GIL for tens of milliseconds — the very stall this module avoids. Net of the
        # render, allocations barely change, so pausing the collector defers next to no work.
        collecting = gc.isenabled()
        gc.disable()
        fast = fmt is not None and collectors is not None
        _thread_slicer().slice = _SLICE_FAST if fast else _SLICE_LIBRARY
        try:
            if fmt is not None and collectors is not None:
                body = self._fast.render(collectors, fmt)
            else:
                body = encoder(self._view)
        finally:
            if collecting:
                gc.enable()
        if accept_encoding and _accepts_gzip(accept_encoding):
            return Scrape(gzip.compress(body, compresslevel=1), content_type, "gzip")
        return Scrape(body, content_type, None)

    async def scrape(self, accept: str | None = None, accept_encoding: str | None = None) -> Scrape:
        """Render in the scrape thread; the event loop only waits for the result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.render, accept, accept_encoding)

    def close(self) -> None:
        """Stop the scrape thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``q=0`` refuses it)."""
    for part in header.split(","):
        token, *params = (p.strip() for p in part.split(";"))
        if token.lower() != "gzip":
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        return q > 0
    return False
