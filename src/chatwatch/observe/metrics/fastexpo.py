"""A faster rendering of prometheus_client's own exposition formats, byte for byte.

Most of ``generate_latest``'s time goes into formatting label sets that never change: sorting
and escaping them again for every series on every scrape. Here each series' line prefix is
built once — with prometheus_client's own escaping functions — and kept, and a line whose
value did not change since the last scrape is reused whole. Only the families of the client's
own metric classes (counter, gauge, histogram, summary) take this path, and only when no
sample carries a timestamp, an exemplar or a native histogram; everything else (other
collectors, multiprocess files) is rendered by prometheus_client itself, family by family.
Tests compare the output with ``generate_latest`` on many registries.

The prometheus_client internals read here (the OpenMetrics escaping helpers, the metric
wrappers' children) exist in the tested releases (see ``pyproject.toml``); when a release
lacks one, ``format_of`` says so and everything is rendered by the library's public encoders.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import exposition as text_format
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om_format
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["FastRenderer", "format_of", "internals_available", "registry_collectors"]

# The library leaves these untyped; typed aliases keep the calls below checked.
_float_text: Callable[[float], str] = floatToGoString
_text_latest: Callable[[Collector], bytes] = text_format.generate_latest
_om_latest: Callable[[Collector], bytes] = om_format.generate_latest
_FAST_TYPES = frozenset({"counter", "gauge", "histogram", "summary"})
_TEXT_SIDE_SUFFIXES = ("_created", "_gsum", "_gcount")
# The private (or recent) parts of the OpenMetrics encoder the fast path formats with.
_OM_INTERNALS = (
    "escape_metric_name",
    "escape_label_name",
    "_escape",
    "_is_legacy_labelname_rune",
    "ALLOWUTF8",
    "UNDERSCORES",
)
_ALLOWUTF8: Any = getattr(om_format, "ALLOWUTF8", None)
_UNDERSCORES: Any = getattr(om_format, "UNDERSCORES", None)


def internals_available() -> bool:
    """Whether this prometheus_client has every internal the fast path formats with."""
    return all(hasattr(om_format, name) for name in _OM_INTERNALS)


def format_of(encoder: Callable[..., bytes]) -> str | None:
    """``"text"`` or ``"openmetrics"`` when ``encoder`` (from ``choose_encoder``) renders that
    format with the default escaping and the fast path can reproduce it, else None (then only
    the library renders it)."""
    if not internals_available():
        return None
    func, kwargs = encoder, {}
    if isinstance(encoder, functools.partial):
        func, kwargs = encoder.func, dict(encoder.keywords)
    if kwargs.get("escaping", _UNDERSCORES) != _UNDERSCORES:
        return None
    if func is text_format.generate_latest:
        return "text"
    if func is om_format.generate_latest and kwargs.get("version", "1.0.0") == "1.0.0":
        return "openmetrics"
    return None


class _One(Collector):
    """A collector of one already-collected family, for rendering it alone."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def _library(metric: Metric, fmt: str) -> str:
    """One family rendered by prometheus_client itself."""
    if fmt == "text":
        return _text_latest(_One(metric)).decode()
    return _om_latest(_One(metric)).decode()[: -len("# EOF\n")]


def _label_text(labels: dict[str, str], fmt: str) -> str:
    if not labels:
        return ""
    # The text encoder passes False as the rune test, OpenMetrics the label-name one; with
    # ALLOWUTF8 neither is consulted, but each format's call is kept as its encoder makes it.
    rune: Any = False if fmt == "text" else om_format._is_legacy_labelname_rune
    parts = [
        f'{om_format.escape_label_name(k, _UNDERSCORES)}="{om_format._escape(v, _ALLOWUTF8, rune)}"'
        for k, v in sorted(labels.items())
    ]
    return "{" + ",".join(parts) + "}"


def _sample_name(name: str, fmt: str) -> str:
    if fmt == "text":
        return om_format.escape_metric_name(name, _UNDERSCORES)
    return om_format._escape(name, _UNDERSCORES, om_format._is_legacy_labelname_rune)


class _Series:
    """The cached lines of one series (one child): prefixes, last values, last lines."""

    __slots__ = ("lines", "names", "prefixes", "values")

    def __init__(self, names: tuple[str, ...], prefixes: list[str]) -> None:
        self.names = names
        self.prefixes = prefixes
        self.values: list[float | None] = [None] * len(prefixes)
        self.lines: list[str] = [""] * len(prefixes)


class FastRenderer:
    """Renders a registry in text or OpenMetrics format, caching per-series line prefixes."""

    def __init__(self, hand_over: Callable[[], None] = lambda: None, stride: int = 32) -> None:
        self._hand_over = hand_over
        self._stride = stride
        # Per format, per metric object: its header and its series by label values.
        self._cache: dict[str, dict[int, tuple[Any, str, str, dict[tuple[str, ...], _Series]]]] = {
            "text": {},
            "openmetrics": {},
        }

    def render(self, collectors: list[Collector], fmt: str) -> bytes:
        """The exposition of ``collectors`` (a registry's, in its order) in ``fmt``."""
        out: list[str] = []
        seen: dict[int, tuple[Any, str, str, dict[tuple[str, ...], _Series]]] = {}
        for collector in collectors:
            fast = (
                isinstance(collector, MetricWrapperBase)
                and getattr(collector, "_type", None) in _FAST_TYPES
            )
            if fast and self._fast_family(collector, fmt, out, seen):  # type: ignore[arg-type]
                continue
            for metric in collector.collect():
                out.append(_library(metric, fmt))
                self._hand_over()
        self._cache[fmt] = seen  # families no longer registered are forgotten
        if fmt == "openmetrics":
            out.append("# EOF\n")
        return "".join(out).encode("utf-8")

    def _fast_family(
        self,
        wrapper: MetricWrapperBase,
        fmt: str,
        out: list[str],
        seen: dict[int, tuple[Any, str, str, dict[tuple[str, ...], _Series]]],
    ) -> bool:
        """``_family``, or False when a wrapper internal it reads is missing in this release."""
        try:
            return self._family(wrapper, fmt, out, seen)
        except AttributeError:
            # ``_family`` appends to ``out`` only once it has every line, so nothing is half
            # written: the library renders this family instead.
            return False

    def _family(
        self,
        wrapper: MetricWrapperBase,
        fmt: str,
        out: list[str],
        seen: dict[int, tuple[Any, str, str, dict[tuple[str, ...], _Series]]],
    ) -> bool:
        """Append one wrapper's family; False (nothing appended) if it needs the library."""
        cached = self._cache[fmt].get(id(wrapper))
        if cached is None or cached[0] is not wrapper:
            metric: Metric = wrapper._get_metric()  # type: ignore[no-untyped-call]
            head, side_head = self._headers(metric, fmt)
            cached = (wrapper, head, side_head, {})
        _, head, side_head, series = cached
        fresh: dict[tuple[str, ...], _Series] = {}
        lines: list[str] = [head]
        side: list[str] = []
        base = wrapper._name
        children: list[tuple[tuple[str, ...], Any]]
        names: tuple[str, ...] = tuple(wrapper._labelnames)
        if names and not wrapper._labelvalues:  # a parent: one child per label set
            with wrapper._lock:
                children = [(tuple(k), c) for k, c in wrapper._metrics.items()]
        else:
            children, names = [((), wrapper)], ()
        text = fmt == "text"
        for n, (values, child) in enumerate(children, 1):
            samples = child._samples()
            entry = series.get(values)
            if entry is None or len(entry.names) != len(samples):
                entry = self._series(base, names, values, samples, fmt)
            known, last, cached_lines, prefixes = (
                entry.names,
                entry.values,
                entry.lines,
                entry.prefixes,
            )
            for i, s in enumerate(samples):
                if s[3] is not None or s[4] is not None:
                    return False  # timestamps and exemplars: the library's job
                if s[0] != known[i]:  # a child whose samples changed shape: start it afresh
                    entry = self._series(base, names, values, samples, fmt)
                    known, last, cached_lines, prefixes = (
                        entry.names,
                        entry.values,
                        entry.lines,
                        entry.prefixes,
                    )
                value = s[2]
                line = cached_lines[i]
                if value != last[i] or not line:
                    last[i] = value
                    line = cached_lines[i] = prefixes[i] + _float_text(value) + "\n"
                if text and s[0] in _TEXT_SIDE_SUFFIXES:
                    side.append(line)
                else:
                    lines.append(line)
            fresh[values] = entry
            if n % self._stride == 0:
                self._hand_over()
        out.extend(lines)
        if side:
            out.append(side_head)
            out.extend(side)
        seen[id(wrapper)] = (wrapper, head, side_head, fresh)
        return True

    @staticmethod
    def _headers(metric: Metric, fmt: str) -> tuple[str, str]:
        """The HELP/TYPE(/UNIT) lines of a family, and (text) of its ``_created`` section."""
        if fmt == "text":
            name = metric.name + ("_total" if metric.type == "counter" else "")
            doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            esc = om_format.escape_metric_name(name, _UNDERSCORES)
            created = om_format.escape_metric_name(metric.name + "_created", _UNDERSCORES)
            head = f"# HELP {esc} {doc}\n# TYPE {esc} {metric.type}\n"
            return head, f"# HELP {created} {doc}\n# TYPE {created} gauge\n"
        esc = om_format.escape_metric_name(metric.name, _UNDERSCORES)
        doc = om_format._escape(
            metric.documentation, _ALLOWUTF8, om_format._is_legacy_labelname_rune
        )
        head = f"# HELP {esc} {doc}\n# TYPE {esc} {metric.type}\n"
        if metric.unit:
            head += f"# UNIT {esc} {metric.unit}\n"
        return head, ""

    @staticmethod
    def _series(
        base: str, names: tuple[str, ...], values: tuple[str, ...], samples: Any, fmt: str
    ) -> _Series:
        """Prefixes for one child's samples, exactly as the library would print them."""
        prefixes = []
        for s in samples:
            labels = dict(zip(names, values, strict=True))
            labels.update(s[1])
            prefixes.append(_sample_name(base + s[0], fmt) + _label_text(labels, fmt) + " ")
        return _Series(tuple(s[0] for s in samples), prefixes)


def registry_collectors(registry: CollectorRegistry) -> list[Collector] | None:
    """The registry's collectors in its order, or None if it cannot list them."""
    lock = getattr(registry, "_lock", None)
    names = getattr(registry, "_collector_to_names", None)
    if lock is None or names is None or getattr(registry, "_target_info", None):
        return None
    with lock:
        return list(names)
