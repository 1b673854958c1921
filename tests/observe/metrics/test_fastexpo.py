"""The cached renderer prints exactly what prometheus_client prints, scrape after scrape."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as om_latest
from prometheus_client.registry import Collector

from chatwatch.observe.metrics.exposition import Exposition
from chatwatch.observe.metrics.fastexpo import FastRenderer, registry_collectors

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


class _Custom(Collector):
    """A hand-written collector with fixed figures."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("t_custom", "Custom.", value=2.5)


NASTY = ["plain", 'quo"te', "back\\slash", "new\nline", "ünïcödé", "", "a,b=c", "{x}"]


def build(
    seed: int,
) -> tuple[CollectorRegistry, Counter, Gauge, Histogram, Summary, Counter, Gauge]:
    """A registry with every metric class, odd label values, docs and units."""
    rng = random.Random(seed)
    r = CollectorRegistry()
    c = Counter(
        "t_things", 'Things with "quotes" and \\ back\nslashes.', ["kind", "zone"], registry=r
    )
    g = Gauge("t_level", "A level.", ["kind"], registry=r, unit="bytes")
    h = Histogram("t_wait_seconds", "Waits.", ["kind"], buckets=(0.1, 1, 10), registry=r)
    s = Summary("t_size", "Sizes.", ["kind"], registry=r)
    plain = Counter("t_plain", "No labels.", registry=r)
    lone = Gauge("t_lone", "No labels either.", registry=r)
    Info("t_build", "Build info.", registry=r).info({"version": "1.2.3"})
    Enum("t_state", "State.", states=["up", "down"], registry=r).state("down")
    r.register(_Custom())  # a collector that is no metric class: rendered by the library
    Gauge("t_empty", "A family with no children yet.", ["x"], registry=r)
    for _ in range(60):
        k = rng.choice(NASTY)
        c.labels(k, rng.choice(NASTY)).inc(rng.random() * 10)
        g.labels(k).set(rng.choice([0.0, -1.5, 1e21, 3.0, float("inf")]))
        h.labels(k).observe(rng.random() * 20)
        s.labels(k).observe(rng.random())
    plain.inc(3)
    lone.set(-0.25)
    return r, c, g, h, s, plain, lone


def both(expo: Exposition, registry: CollectorRegistry) -> None:
    """Assert text and OpenMetrics renders equal the library's, bytes for bytes."""
    assert expo.render().body == generate_latest(registry)
    assert expo.render(OPENMETRICS).body == om_latest(registry)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_identical_to_prometheus_client_across_scrapes(seed: int):
    """Identical on a first scrape, after values change, and after new series appear."""
    registry, c, g, h, s, plain, lone = build(seed)
    expo = Exposition(registry, mp_dir=None)
    both(expo, registry)
    both(expo, registry)  # all lines cached now
    c.labels("plain", "plain").inc(2)
    g.labels("new kind").set(7)
    h.labels("plain").observe(0.05)
    s.labels("plain").observe(4)
    plain.inc()
    lone.set(float("nan"))
    both(expo, registry)
    g.remove("new kind")
    both(expo, registry)
    expo.close()


def test_exemplars_fall_back_to_the_library():
    """A family carrying an exemplar is printed by prometheus_client itself."""
    registry = CollectorRegistry()
    c = Counter("t_hits", "Hits.", ["a"], registry=registry)
    c.labels("x").inc(1, exemplar={"trace_id": "abc"})
    expo = Exposition(registry)
    both(expo, registry)
    assert b'# {trace_id="abc"}' in expo.render(OPENMETRICS).body


def test_unregistered_families_leave_the_cache():
    """A family unregistered between scrapes is neither printed nor kept."""
    registry = CollectorRegistry()
    gone = Gauge("t_gone", "Gone soon.", registry=registry)
    Gauge("t_stays", "Stays.", registry=registry).set(1)
    renderer = FastRenderer()
    collectors = registry_collectors(registry)
    assert collectors is not None
    assert b"t_gone" in renderer.render(collectors, "text")
    registry.unregister(gone)
    collectors = registry_collectors(registry)
    assert collectors is not None
    assert renderer.render(collectors, "text") == generate_latest(registry)
    assert len(renderer._cache["text"]) == 1


def test_missing_encoder_internals_fall_back_to_the_library(monkeypatch: pytest.MonkeyPatch):
    """Without an OpenMetrics internal the fast path reads, the library renders everything.

    Simulates a prometheus_client release without ``_is_legacy_labelname_rune`` (as 0.22 and
    older): the bytes stay exactly the library's and the fast renderer is not used.
    """
    from types import SimpleNamespace

    from prometheus_client.openmetrics import exposition as om_format

    from chatwatch.observe.metrics import fastexpo

    registry, *_ = build(7)
    # The module as fastexpo sees it, without the helper (the library keeps its own).
    older = {k: v for k, v in vars(om_format).items() if k != "_is_legacy_labelname_rune"}
    monkeypatch.setattr(fastexpo, "om_format", SimpleNamespace(**older))
    assert not fastexpo.internals_available()
    expo = Exposition(registry, mp_dir=None)
    both(expo, registry)
    assert expo._fast._cache == {"text": {}, "openmetrics": {}}  # never took the fast path
    expo.close()


def test_a_wrapper_missing_an_internal_is_rendered_by_the_library(
    monkeypatch: pytest.MonkeyPatch,
):
    """A metric family whose wrapper lacks an internal the fast path reads is printed by the
    library, the others still by the fast path, and the whole is byte-identical."""
    registry = CollectorRegistry()
    odd = Counter("t_odd", "Odd one.", ["a"], registry=registry)
    odd.labels("x").inc()
    Gauge("t_fine", "Fine.", registry=registry).set(3)
    renderer = FastRenderer()
    real_family = renderer._family

    def family(wrapper: Any, *args: Any) -> bool:
        if wrapper is odd:
            raise AttributeError("_metrics")  # as a release without that attribute would
        return real_family(wrapper, *args)

    monkeypatch.setattr(renderer, "_family", family)
    collectors = registry_collectors(registry)
    assert collectors is not None
    assert renderer.render(collectors, "text") == generate_latest(registry)
    assert len(renderer._cache["text"]) == 1  # only t_fine went the fast way
